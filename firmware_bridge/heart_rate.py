"""Heart Rate Measurement (0x2A37), Heart Rate Service 1.0 section 3.1.

    octet 0        Flags
                     bit 0     Heart Rate Value Format: 0 = uint8, 1 = uint16
                     bits 1-2  Sensor Contact Status: 0 or 1 = not supported, 2 = supported but no contact,
                               3 = supported and contact detected
                     bit 3     Energy Expended present (uint16, kJ; 0xFFFF = "reached the maximum")
                     bit 4     RR-Interval present (one or more uint16, 1/1024 s, oldest first)
                     bits 5-7  reserved for future use
    then           Heart Rate Measurement Value, uint8 or uint16 (bpm)
    then           Energy Expended, uint16 (if bit 3)
    then           RR-Intervals, uint16 each, to the end of the payload (if bit 4)

Choices where the specification leaves room, each kept so that ``encode(decode(b)) == b``:

* Reserved flag bits 5-7 are ignored on receipt, as the Core Specification's "reserved for future use"
  convention says (sender sets them to 0, receiver ignores them), and kept in ``ignored_flag_bits``.
  Contact value 1 (status bit set, supported bit clear) means "not supported"; its bit 1 is kept there too.
* RR bit set with no RR values is accepted (``rr_intervals == ()``): Polar straps send ``10 28`` when no
  beat fell in the last second. ``rr_intervals`` is ``None`` when the bit is clear.
* An odd number of bytes after the RR bit is a truncated RR interval (``TruncatedError``); bytes after the
  last field when the RR bit is clear are ``OverlongError``.

There is no length limit: with the default ATT MTU a notification holds at most 9 RR intervals (uint8 value,
no energy), but larger MTUs allow more and the decoder takes all that are there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError, TruncatedError

CHARACTERISTIC = "2A37"

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
RR_TICKS_PER_SECOND = 1024


class HeartRateFlags(IntFlag):
    """The Flags octet."""

    VALUE_FORMAT_UINT16 = 0x01
    SENSOR_CONTACT_STATUS = 0x02
    SENSOR_CONTACT_SUPPORTED = 0x04
    ENERGY_EXPENDED_PRESENT = 0x08
    RR_INTERVAL_PRESENT = 0x10


RESERVED_FLAG_BITS = 0xE0
IGNORABLE_FLAG_BITS = RESERVED_FLAG_BITS | int(HeartRateFlags.SENSOR_CONTACT_STATUS)


class HeartRateValueFormat(IntEnum):
    """Width of the heart rate value on the wire (flag bit 0)."""

    UINT8 = 0
    UINT16 = 1


class SensorContact(Enum):
    """Sensor Contact Status (flag bits 1-2)."""

    UNSUPPORTED = "unsupported"
    NOT_DETECTED = "not_detected"
    DETECTED = "detected"


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One Heart Rate Measurement notification.

    ``rr_intervals`` holds raw 1/1024 s ticks, oldest first; ``None`` means the RR bit was clear, ``()``
    that it was set with no values. ``ignored_flag_bits`` holds flag bits that carry no meaning (reserved
    bits 5-7, and bit 1 when contact is unsupported) so the bytes can be reproduced exactly.
    """

    hr_bpm: int
    value_format: HeartRateValueFormat = HeartRateValueFormat.UINT8
    sensor_contact: SensorContact = SensorContact.UNSUPPORTED
    energy_expended_kj: int | None = None
    rr_intervals: tuple[int, ...] | None = None
    ignored_flag_bits: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.value_format, HeartRateValueFormat):
            raise EncodeError(CHARACTERISTIC, b"", f"value_format {self.value_format!r} is not a HeartRateValueFormat")
        if not isinstance(self.sensor_contact, SensorContact):
            raise EncodeError(CHARACTERISTIC, b"", f"sensor_contact {self.sensor_contact!r} is not a SensorContact")
        limit = 0xFF if self.value_format is HeartRateValueFormat.UINT8 else 0xFFFF
        if not _is_uint(self.hr_bpm, limit):
            raise EncodeError(CHARACTERISTIC, b"", f"hr_bpm {self.hr_bpm!r} does not fit {self.value_format.name}")
        if self.energy_expended_kj is not None and not _is_uint(self.energy_expended_kj, 0xFFFF):
            raise EncodeError(CHARACTERISTIC, b"", f"energy_expended_kj {self.energy_expended_kj!r} not uint16")
        if self.rr_intervals is not None:
            if not isinstance(self.rr_intervals, tuple):
                raise EncodeError(CHARACTERISTIC, b"", "rr_intervals must be a tuple or None")
            for ticks in self.rr_intervals:
                if not _is_uint(ticks, 0xFFFF):
                    raise EncodeError(CHARACTERISTIC, b"", f"RR interval {ticks!r} not uint16 ticks")
        bits = self.ignored_flag_bits
        if not _is_uint(bits, 0xFF) or bits & ~IGNORABLE_FLAG_BITS:
            raise EncodeError(
                CHARACTERISTIC, b"", f"ignored_flag_bits 0x{bits:02X} outside 0x{IGNORABLE_FLAG_BITS:02X}"
            )
        if bits & _CONTACT_STATUS_BIT and self.sensor_contact is not SensorContact.UNSUPPORTED:
            raise EncodeError(CHARACTERISTIC, b"", "contact status bit is meaningful once contact is supported")

    @property
    def rr_intervals_s(self) -> tuple[float, ...]:
        """RR intervals in seconds (exact: ticks / 1024), oldest first; empty when none were sent."""
        return tuple(ticks / RR_TICKS_PER_SECOND for ticks in self.rr_intervals or ())

    @property
    def flags(self) -> int:
        """The Flags octet this measurement encodes to."""
        flags = self.ignored_flag_bits
        if self.value_format is HeartRateValueFormat.UINT16:
            flags |= HeartRateFlags.VALUE_FORMAT_UINT16
        if self.sensor_contact is not SensorContact.UNSUPPORTED:
            flags |= HeartRateFlags.SENSOR_CONTACT_SUPPORTED
        if self.sensor_contact is SensorContact.DETECTED:
            flags |= HeartRateFlags.SENSOR_CONTACT_STATUS
        if self.energy_expended_kj is not None:
            flags |= HeartRateFlags.ENERGY_EXPENDED_PRESENT
        if self.rr_intervals is not None:
            flags |= HeartRateFlags.RR_INTERVAL_PRESENT
        return int(flags)


def _is_uint(value: object, limit: int) -> bool:
    return type(value) is int and 0 <= value <= limit


_FORMAT_BIT = int(HeartRateFlags.VALUE_FORMAT_UINT16)
_CONTACT_STATUS_BIT = int(HeartRateFlags.SENSOR_CONTACT_STATUS)
_CONTACT_SUPPORTED_BIT = int(HeartRateFlags.SENSOR_CONTACT_SUPPORTED)
_ENERGY_BIT = int(HeartRateFlags.ENERGY_EXPENDED_PRESENT)
_RR_BIT = int(HeartRateFlags.RR_INTERVAL_PRESENT)
_FORMATS = (HeartRateValueFormat.UINT8, HeartRateValueFormat.UINT16)


def decode_heart_rate_measurement(data: BytesLike) -> HeartRateMeasurement:
    """Decode a Heart Rate Measurement notification."""
    data = bytes(data)
    if not data:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no Flags octet", offset=0)
    # The flags as a plain int: IntFlag arithmetic costs more than the rest of the decode (issue 8's profile).
    flags = data[0]
    offset = 1

    value_format = _FORMATS[flags & _FORMAT_BIT]
    field = _U16 if value_format is HeartRateValueFormat.UINT16 else _U8
    hr_bpm = _read(field, data, offset, "heart rate value")
    offset += field.size

    energy: int | None = None
    if flags & _ENERGY_BIT:
        energy = _read(_U16, data, offset, "Energy Expended")
        offset += _U16.size

    rr: tuple[int, ...] | None = None
    remaining = len(data) - offset
    if flags & _RR_BIT:
        if remaining % _U16.size:
            raise TruncatedError(
                CHARACTERISTIC,
                data,
                f"{remaining} bytes of RR intervals: the last one is cut short",
                offset=offset,
            )
        rr = struct.unpack_from(f"<{remaining // _U16.size}H", data, offset)
    elif remaining:
        raise OverlongError(CHARACTERISTIC, data, f"{remaining} trailing bytes after the last field", offset=offset)

    if flags & _CONTACT_SUPPORTED_BIT:
        contact = SensorContact.DETECTED if flags & _CONTACT_STATUS_BIT else SensorContact.NOT_DETECTED
        ignored = flags & RESERVED_FLAG_BITS
    else:
        contact = SensorContact.UNSUPPORTED
        ignored = flags & IGNORABLE_FLAG_BITS

    return HeartRateMeasurement(
        hr_bpm=hr_bpm,
        value_format=value_format,
        sensor_contact=contact,
        energy_expended_kj=energy,
        rr_intervals=rr,
        ignored_flag_bits=ignored,
    )


def encode_heart_rate_measurement(measurement: HeartRateMeasurement) -> bytes:
    """Encode a Heart Rate Measurement notification."""
    m = measurement
    field = _U16 if m.value_format is HeartRateValueFormat.UINT16 else _U8
    parts = [_U8.pack(m.flags), field.pack(m.hr_bpm)]
    if m.energy_expended_kj is not None:
        parts.append(_U16.pack(m.energy_expended_kj))
    if m.rr_intervals:
        parts.append(struct.pack(f"<{len(m.rr_intervals)}H", *m.rr_intervals))
    return b"".join(parts)


def _read(field: struct.Struct, data: bytes, offset: int, name: str) -> int:
    if len(data) < offset + field.size:
        raise TruncatedError(
            CHARACTERISTIC, data, f"{name} needs {field.size} bytes, {len(data) - offset} left", offset=offset
        )
    (value,) = field.unpack_from(data, offset)
    return int(value)
