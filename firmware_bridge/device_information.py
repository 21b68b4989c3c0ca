"""Device Information Service 1.1 strings: Manufacturer Name 0x2A29, Model Number 0x2A24, Serial Number 0x2A25,
Hardware Revision 0x2A27, Firmware Revision 0x2A26, Software Revision 0x2A28.

Each value is a UTF-8 string ("utf8s") filling the whole attribute: no length prefix, no terminator, and an
empty string is valid. An attribute value is at most 512 octets (Core Specification, Vol 3, Part F, 3.2.9),
so a longer payload is ``OverlongError``.

Invalid UTF-8 is not an error. These strings only name and describe a device; refusing a CGM because its
firmware revision holds a Latin-1 byte, or because a read cut a multi-byte character in two, would lose more
than it protects. So ``DeviceInfoString`` keeps the bytes exactly as received (``raw``, which is what
encodes back), ``text`` decodes them with each invalid sequence replaced by U+FFFD, and ``utf8_valid`` says
whether any replacement happened. Trailing NUL octets, which C firmware sometimes sends as a terminator, are
left out of ``text`` (they stay in ``raw``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError
from firmware_bridge.uuids import hex16

MAX_ATTRIBUTE_OCTETS = 512


class DeviceInfoField(IntEnum):
    """The Device Information strings Vigil reads; the value is the characteristic UUID."""

    MODEL_NUMBER = 0x2A24
    SERIAL_NUMBER = 0x2A25
    FIRMWARE_REVISION = 0x2A26
    HARDWARE_REVISION = 0x2A27
    SOFTWARE_REVISION = 0x2A28
    MANUFACTURER_NAME = 0x2A29

    @property
    def characteristic(self) -> str:
        """The 16-bit UUID as upper-case hex, e.g. ``"2A29"``."""
        return hex16(self.value)

    @property
    def json_name(self) -> str:
        """The JSON field name, e.g. ``"manufacturer_name"``."""
        return self.name.lower()


@dataclass(frozen=True)
class DeviceInfoString:
    """One Device Information string, exactly as received."""

    field: DeviceInfoField
    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.field, DeviceInfoField):
            raise EncodeError("", b"", f"field {self.field!r} is not a DeviceInfoField")
        if not isinstance(self.raw, bytes):
            raise EncodeError(self.field.characteristic, b"", "raw must be bytes")
        if len(self.raw) > MAX_ATTRIBUTE_OCTETS:
            raise EncodeError(
                self.field.characteristic, b"", f"{len(self.raw)} octets exceed the {MAX_ATTRIBUTE_OCTETS}-octet limit"
            )

    @classmethod
    def from_text(cls, field: DeviceInfoField, text: str) -> DeviceInfoString:
        """The string as a device would send it: ``text`` in UTF-8."""
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise EncodeError(field.characteristic, b"", f"text is not encodable as UTF-8: {exc.reason}") from exc
        return cls(field, raw)

    @property
    def text(self) -> str:
        """The text, invalid UTF-8 replaced by U+FFFD and trailing NULs dropped."""
        return self.raw.rstrip(b"\x00").decode("utf-8", errors="replace")

    @property
    def utf8_valid(self) -> bool:
        """False when the bytes are not valid UTF-8 (``text`` then holds replacement characters)."""
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


def decode_device_info_string(field: DeviceInfoField, data: BytesLike) -> DeviceInfoString:
    """Decode a Device Information string read from ``field``'s characteristic."""
    data = bytes(data)
    if len(data) > MAX_ATTRIBUTE_OCTETS:
        raise OverlongError(
            field.characteristic,
            data,
            f"{len(data)} octets: longer than any attribute value ({MAX_ATTRIBUTE_OCTETS})",
            offset=MAX_ATTRIBUTE_OCTETS,
        )
    return DeviceInfoString(field, data)


def encode_device_info_string(value: DeviceInfoString) -> bytes:
    """The bytes of a Device Information string (``raw``)."""
    if not isinstance(value, DeviceInfoString):
        raise EncodeError("", b"", f"{value!r} is not a DeviceInfoString")
    return value.raw
