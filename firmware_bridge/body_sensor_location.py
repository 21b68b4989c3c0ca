"""Body Sensor Location (0x2A38), Heart Rate Service 1.0 section 3.2: one uint8, where the sensor is worn.

    0 Other, 1 Chest, 2 Wrist, 3 Finger, 4 Hand, 5 Ear Lobe, 6 Foot; 7-255 reserved for future use

A reserved code raises ``ReservedValueError``: the Core Specification lets a sender never use a reserved value
and tells a receiver to treat one as erroneous. (Reserved *bits* in flag fields are different: those are
ignored, see ``heart_rate``.) The decoded value is a ``BodySensorLocation``; its ``int`` is the wire code.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from firmware_bridge.errors import BytesLike, EncodeError, OverlongError, ReservedValueError, TruncatedError

CHARACTERISTIC = "2A38"

_LOCATION = struct.Struct("<B")


class BodySensorLocation(IntEnum):
    """The location codes the specification defines."""

    OTHER = 0
    CHEST = 1
    WRIST = 2
    FINGER = 3
    HAND = 4
    EAR_LOBE = 5
    FOOT = 6


def decode_body_sensor_location(data: BytesLike) -> BodySensorLocation:
    """Decode a Body Sensor Location read."""
    data = bytes(data)
    if len(data) < _LOCATION.size:
        raise TruncatedError(CHARACTERISTIC, data, "empty payload: no location", offset=0)
    if len(data) > _LOCATION.size:
        raise OverlongError(
            CHARACTERISTIC, data, f"{len(data) - _LOCATION.size} trailing bytes after the location", offset=1
        )
    (code,) = _LOCATION.unpack(data)
    try:
        return BodySensorLocation(code)
    except ValueError:
        raise ReservedValueError(CHARACTERISTIC, data, f"location code {code} is reserved", offset=0) from None


def encode_body_sensor_location(location: BodySensorLocation) -> bytes:
    """Encode a Body Sensor Location value; ``EncodeError`` for a code the specification does not define."""
    if isinstance(location, bool) or not isinstance(location, int) or location not in set(BodySensorLocation):
        raise EncodeError(CHARACTERISTIC, b"", f"{location!r} is not a defined body sensor location")
    return _LOCATION.pack(int(location))
