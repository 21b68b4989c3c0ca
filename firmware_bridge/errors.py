"""The firmware bridge's exception tree.

    CodecError                        root: bytes from (or for) firmware that a codec will not accept
    ├── TruncatedError                the payload ends before a field its flags or Size byte announce
    ├── OverlongError                 bytes are left over after the last field (trailing bytes)
    ├── SizeMismatchError             a CGM record's Size byte fits neither its flags nor flags + E2E-CRC
    ├── CrcError                      the CGMS E2E-CRC does not protect the record as it must
    │   ├── CrcMismatchError          the record carries a CRC and it is wrong
    │   └── CrcMissingError           a CRC is required (E2E-CRC supported) but the record has none
    ├── ReservedValueError            a value the specification reserves or forbids (battery 101 %,
    │                                 the SFLOAT/FLOAT "reserved for future use" code, ...)
    ├── EncodeError (+ ValueError)    a value that cannot be put on the wire (raised by encoders and by
    │                                 the measurement dataclasses' own validation, never by decoders)
    └── UnknownCharacteristicError    no codec for this characteristic
        └── InvalidUuidError (+ ValueError)
                                      the text is not a Bluetooth SIG UUID at all (not 16-bit, not on
                                      the SIG base UUID 0000xxxx-0000-1000-8000-00805f9b34fb)

Every error carries ``characteristic`` (the 16-bit UUID as upper-case hex, e.g. ``"2A37"``; empty when a
codec such as SFLOAT is used on its own; for ``InvalidUuidError`` the text that could not be parsed),
``data`` (the complete payload as received, ``b""`` for encode errors), ``reason`` (what is wrong, in
words) and ``offset`` (the byte offset the problem was found at, or ``None``). Callers branch on the class,
never on the message text.

Decoders raise only these: never ``IndexError``, ``struct.error`` or a bare ``ValueError``.
"""

from __future__ import annotations

from typing import TypeAlias

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""What decoders accept: bleak hands notifications over as ``bytearray``."""


class CodecError(Exception):
    """Root of every error the firmware bridge raises on purpose."""

    def __init__(self, characteristic: str, data: BytesLike, reason: str, *, offset: int | None = None) -> None:
        self.characteristic = characteristic
        self.data = bytes(data)
        self.reason = reason
        self.offset = offset
        where = f" at offset {offset}" if offset is not None else ""
        label = characteristic or "codec"
        super().__init__(f"{label}: {reason}{where} (data={self.data.hex() or 'empty'})")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.characteristic, self.data, self.reason, self.offset, {}))


class TruncatedError(CodecError):
    """The payload ends before a field that its flags or Size byte announce."""


class OverlongError(CodecError):
    """Bytes are left over after the last field the flags announce."""


class SizeMismatchError(CodecError):
    """A CGM record's Size byte agrees with neither its flags nor its flags plus an E2E-CRC."""


class CrcError(CodecError):
    """The CGMS E2E-CRC does not protect a record as it must."""


class CrcMismatchError(CrcError):
    """A record carries an E2E-CRC that does not match its contents.

    ``received`` is the CRC on the wire, ``computed`` the CRC of the bytes it covers.
    """

    def __init__(
        self,
        characteristic: str,
        data: BytesLike,
        reason: str,
        *,
        received: int,
        computed: int,
        offset: int | None = None,
    ) -> None:
        self.received = received
        self.computed = computed
        super().__init__(characteristic, data, reason, offset=offset)

    def __reduce__(self) -> tuple[object, ...]:
        extra = {"received": self.received, "computed": self.computed}
        return (_rebuild, (type(self), self.characteristic, self.data, self.reason, self.offset, extra))


class CrcMissingError(CrcError):
    """An E2E-CRC is required (the sensor's CGM Feature says it supports E2E-CRC) but is absent."""


class ReservedValueError(CodecError):
    """A field holds a value that the specification reserves for future use or forbids."""


class EncodeError(CodecError, ValueError):
    """A value cannot be represented on the wire; ``data`` is empty."""


class UnknownCharacteristicError(CodecError):
    """No codec is registered for this characteristic."""


class InvalidUuidError(UnknownCharacteristicError, ValueError):
    """The text is not a Bluetooth SIG UUID; ``characteristic`` holds the text as given."""


def _rebuild(
    cls: type[CodecError],
    characteristic: str,
    data: bytes,
    reason: str,
    offset: int | None,
    extra: dict[str, int],
) -> CodecError:
    # Keeps the errors picklable (multiprocessing, logging queues) despite their keyword-only fields.
    return cls(characteristic, data, reason, offset=offset, **extra)
