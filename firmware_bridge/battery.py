"""Battery Level (0x2A19), Battery Service 1.0 section 3.1: one uint8, the charge in percent, 0-100.

Values 101-255 are not defined by the specification and raise ``ReservedValueError``: a battery reading of
200 % is a broken device, not a full battery. The level is a plain ``int``.
"""

from __future__ import annotations

import struct

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError, ReservedValueError, TruncatedError

CHARACTERISTIC = "2A19"
MAX_PERCENT = 100

_LEVEL = struct.Struct("<B")


def decode_battery_level(data: BytesLike) -> int:
    """Decode a Battery Level read or notification into the percentage."""
    data = bytes(data)
    if len(data) < _LEVEL.size:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no battery level", offset=0)
    if len(data) > _LEVEL.size:
        raise OverlongError(
            CHARACTERISTIC,
            data,
            f"{len(data) - _LEVEL.size} trailing bytes after the level",
            offset=_LEVEL.size,
        )
    (percent,) = _LEVEL.unpack(data)
    if percent > MAX_PERCENT:
        raise ReservedValueError(CHARACTERISTIC, data, f"battery level {percent} is above {MAX_PERCENT} %", offset=0)
    return int(percent)


def encode_battery_level(percent: int) -> bytes:
    """Encode a Battery Level value; ``EncodeError`` outside 0-100."""
    if type(percent) is not int or not 0 <= percent <= MAX_PERCENT:
        raise EncodeError(CHARACTERISTIC, b"", f"battery level {percent!r} outside 0..{MAX_PERCENT}")
    return _LEVEL.pack(percent)
