"""CGM Status (0x2AA9), Continuous Glucose Monitoring Service 1.0.2: the sensor's current annunciations.

    Time Offset  uint16  minutes since the Session Start Time
    CGM Status   24 bit  the Sensor Status Annunciation, always all three octets: Status (bits 0-7),
                         Cal/Temp (bits 8-15), Warning (bits 16-23), least significant octet first
    E2E-CRC      uint16  only when the sensor supports E2E-CRC

The fields have fixed sizes, so the length tells whether the E2E-CRC is there: 5 octets without, 7 with (then
it must match). Other lengths are ``TruncatedError`` or ``OverlongError`` (see ``crc.read_optional_crc``).
Reserved annunciation bits are kept, and named ``reserved_bit_N`` (``cgm.annunciation_names``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from firmware_bridge.cgm import SensorStatusAnnunciation, annunciation_names
from firmware_bridge.crc import CRC_STRUCT, e2e_crc, read_optional_crc
from firmware_bridge.errors import BytesLike, EncodeError

CHARACTERISTIC = "2AA9"

_STATUS = struct.Struct("<HHB")  # Time Offset, annunciation bits 0-15, annunciation bits 16-23
MAX_ANNUNCIATION = 0xFFFFFF
NO_ANNUNCIATION = SensorStatusAnnunciation(0)


@dataclass(frozen=True)
class CgmStatus:
    """One CGM Status value. ``has_crc``: whether it carried (or will be encoded with) an E2E-CRC."""

    time_offset_min: int
    annunciation: SensorStatusAnnunciation = NO_ANNUNCIATION
    has_crc: bool = False

    def __post_init__(self) -> None:
        if type(self.time_offset_min) is not int or not 0 <= self.time_offset_min <= 0xFFFF:
            raise EncodeError(CHARACTERISTIC, b"", f"time_offset_min {self.time_offset_min!r} not uint16")
        bits = self.annunciation
        if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits <= MAX_ANNUNCIATION:
            raise EncodeError(CHARACTERISTIC, b"", f"annunciation {bits!r} not a 24-bit value")
        object.__setattr__(self, "annunciation", SensorStatusAnnunciation(int(bits)))
        if type(self.has_crc) is not bool:
            raise EncodeError(CHARACTERISTIC, b"", "has_crc must be a bool")

    def status_names(self) -> list[str]:
        """Names of the set annunciation bits (see ``cgm.annunciation_names``)."""
        return annunciation_names(self.annunciation)


def decode_cgm_status(data: BytesLike, *, require_crc: bool = False) -> CgmStatus:
    """Decode a CGM Status read; with ``require_crc`` a value without an E2E-CRC is ``CrcMissingError``."""
    data = bytes(data)
    has_crc = read_optional_crc(CHARACTERISTIC, data, _STATUS.size, require_crc=require_crc)
    time_offset, low, high = _STATUS.unpack_from(data)
    return CgmStatus(time_offset, SensorStatusAnnunciation(low | high << 16), has_crc)


def encode_cgm_status(status: CgmStatus) -> bytes:
    """Encode a CGM Status value, with an E2E-CRC when ``status.has_crc``."""
    bits = int(status.annunciation)
    encoded = _STATUS.pack(status.time_offset_min, bits & 0xFFFF, bits >> 16)
    return encoded + CRC_STRUCT.pack(e2e_crc(encoded)) if status.has_crc else encoded
