"""Heart Rate Control Point (0x2A39), Heart Rate Service 1.0 section 3.3: one uint8 a client writes.

    0x01 Reset Energy Expended: the sensor sets its Energy Expended (in 0x2A37) back to 0
    0x00, 0x02-0xFF reserved for future use

A strap answers any other value with the ATT error 0x80 "Control Point Not Supported"; the decoder (used by
the simulated strap to parse a write) raises ``ReservedValueError`` for it. The agent encodes the write.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError, ReservedValueError, TruncatedError

CHARACTERISTIC = "2A39"

_OP_CODE = struct.Struct("<B")


class HeartRateControlOpCode(IntEnum):
    """The values the specification defines."""

    RESET_ENERGY_EXPENDED = 0x01


def decode_heart_rate_control_point(data: BytesLike) -> HeartRateControlOpCode:
    """Decode a Heart Rate Control Point write."""
    data = bytes(data)
    if len(data) < _OP_CODE.size:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no control point value", offset=0)
    if len(data) > _OP_CODE.size:
        raise OverlongError(
            CHARACTERISTIC, data, f"{len(data) - _OP_CODE.size} trailing bytes after the value", offset=1
        )
    (code,) = _OP_CODE.unpack(data)
    try:
        return HeartRateControlOpCode(code)
    except ValueError:
        raise ReservedValueError(
            CHARACTERISTIC, data, f"control point value 0x{code:02X} is reserved", offset=0
        ) from None


def encode_heart_rate_control_point(
    op_code: HeartRateControlOpCode = HeartRateControlOpCode.RESET_ENERGY_EXPENDED,
) -> bytes:
    """Encode a Heart Rate Control Point write (by default: reset Energy Expended)."""
    if isinstance(op_code, bool) or not isinstance(op_code, int) or op_code not in set(HeartRateControlOpCode):
        raise EncodeError(CHARACTERISTIC, b"", f"{op_code!r} is not a defined heart rate control point value")
    return _OP_CODE.pack(int(op_code))
