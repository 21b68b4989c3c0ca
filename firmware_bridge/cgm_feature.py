"""CGM Feature (0x2AA8), Continuous Glucose Monitoring Service 1.0.2: what a CGM sensor supports.

    CGM Feature               24 bit  feature flags, least significant octet first; bits 17-23 reserved
    CGM Type-Sample Location  8 bit   Type in bits 0-3, Sample Location in bits 4-7
    E2E-CRC                   uint16  always present: the E2E-CRC of the four octets before it when E2E-CRC
                                      Supported (bit 12) is set, else 0xFFFF

The payload is always 6 octets. The E2E-CRC Supported bit matters beyond this characteristic: it makes the
E2E-CRC mandatory in CGM Measurement, Status, Session Start/Run Time and the control points, so a link
passes ``feature.e2e_crc_supported`` on as ``require_crc``.

Receiving, per the specification and the Core Specification's conventions:

* With E2E-CRC supported a wrong CRC is ``CrcMismatchError``. Without it the field "shall be set to 0xFFFF";
  any other value is ``ReservedValueError`` (a sensor that computes a CRC without announcing support is not
  following the specification, and Nordic's reference parser rejects it too).
* Reserved feature bits 17-23 are ignored and kept in ``features`` for exact re-encoding.
* A reserved Type (0, 11-15) or Sample Location (0, 6-14) is ``ReservedValueError``: a receiver treats a
  reserved value as erroneous.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    BytesLike,
    CrcMismatchError,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)

CHARACTERISTIC = "2AA8"

_FEATURE = struct.Struct("<HBBH")  # CGM Feature bits 0-15, bits 16-23, Type-Sample Location, E2E-CRC
CRC_NOT_SUPPORTED = 0xFFFF
"""The E2E-CRC field's value when the sensor does not support E2E-CRC."""


class CgmFeatureFlags(IntFlag):
    """The 24-bit CGM Feature field (bits 17-23 reserved)."""

    CALIBRATION_SUPPORTED = 1 << 0
    PATIENT_HIGH_LOW_ALERTS_SUPPORTED = 1 << 1
    HYPO_ALERTS_SUPPORTED = 1 << 2
    HYPER_ALERTS_SUPPORTED = 1 << 3
    RATE_OF_INCREASE_DECREASE_ALERTS_SUPPORTED = 1 << 4
    DEVICE_SPECIFIC_ALERT_SUPPORTED = 1 << 5
    SENSOR_MALFUNCTION_DETECTION_SUPPORTED = 1 << 6
    SENSOR_TEMPERATURE_HIGH_LOW_DETECTION_SUPPORTED = 1 << 7
    SENSOR_RESULT_HIGH_LOW_DETECTION_SUPPORTED = 1 << 8
    LOW_BATTERY_DETECTION_SUPPORTED = 1 << 9
    SENSOR_TYPE_ERROR_DETECTION_SUPPORTED = 1 << 10
    GENERAL_DEVICE_FAULT_SUPPORTED = 1 << 11
    E2E_CRC_SUPPORTED = 1 << 12
    MULTIPLE_BOND_SUPPORTED = 1 << 13
    MULTIPLE_SESSIONS_SUPPORTED = 1 << 14
    CGM_TREND_INFORMATION_SUPPORTED = 1 << 15
    CGM_QUALITY_SUPPORTED = 1 << 16


class CgmType(IntEnum):
    """CGM Type (low nibble): what the sensor measures in."""

    CAPILLARY_WHOLE_BLOOD = 1
    CAPILLARY_PLASMA = 2
    VENOUS_WHOLE_BLOOD = 3
    VENOUS_PLASMA = 4
    ARTERIAL_WHOLE_BLOOD = 5
    ARTERIAL_PLASMA = 6
    UNDETERMINED_WHOLE_BLOOD = 7
    UNDETERMINED_PLASMA = 8
    INTERSTITIAL_FLUID = 9
    CONTROL_SOLUTION = 10


class CgmSampleLocation(IntEnum):
    """CGM Sample Location (high nibble)."""

    FINGER = 1
    ALTERNATE_SITE_TEST = 2
    EARLOBE = 3
    CONTROL_SOLUTION = 4
    SUBCUTANEOUS_TISSUE = 5
    NOT_AVAILABLE = 15


MAX_FEATURES = 0xFFFFFF
_TYPES = frozenset(int(member) for member in CgmType)
_LOCATIONS = frozenset(int(member) for member in CgmSampleLocation)


def feature_names(features: int) -> list[str]:
    """Lower-case names of the set feature bits, lowest first; reserved bits appear as ``reserved_bit_N``."""
    return [_FEATURE_NAMES.get(1 << bit, f"reserved_bit_{bit}") for bit in range(24) if features >> bit & 1]


_FEATURE_NAMES = {int(member): name.lower() for name, member in CgmFeatureFlags.__members__.items()}


@dataclass(frozen=True)
class CgmFeature:
    """The CGM Feature value. The E2E-CRC field is not stored: it follows from ``e2e_crc_supported``."""

    features: CgmFeatureFlags
    cgm_type: CgmType
    sample_location: CgmSampleLocation

    def __post_init__(self) -> None:
        features = self.features
        if isinstance(features, bool) or not isinstance(features, int) or not 0 <= features <= MAX_FEATURES:
            raise EncodeError(CHARACTERISTIC, b"", f"features {features!r} not a 24-bit value")
        object.__setattr__(self, "features", CgmFeatureFlags(int(features)))
        for name, kind, defined in (("cgm_type", CgmType, _TYPES), ("sample_location", CgmSampleLocation, _LOCATIONS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value not in defined:
                raise EncodeError(CHARACTERISTIC, b"", f"{name} {value!r} is not a defined {kind.__name__}")
            object.__setattr__(self, name, kind(int(value)))

    @property
    def e2e_crc_supported(self) -> bool:
        """Whether every CGM characteristic of this sensor must carry an E2E-CRC."""
        return CgmFeatureFlags.E2E_CRC_SUPPORTED in self.features

    def feature_names(self) -> list[str]:
        """Names of the set feature bits (see ``feature_names``)."""
        return feature_names(self.features)


def decode_cgm_feature(data: BytesLike) -> CgmFeature:
    """Decode a CGM Feature read."""
    data = bytes(data)
    if len(data) < _FEATURE.size:
        raise TruncatedError(
            CHARACTERISTIC, data, f"{len(data)} bytes, CGM Feature has {_FEATURE.size}", offset=len(data)
        )
    if len(data) > _FEATURE.size:
        raise OverlongError(
            CHARACTERISTIC, data, f"{len(data) - _FEATURE.size} trailing bytes after the E2E-CRC", offset=_FEATURE.size
        )
    low, high, type_location, received = _FEATURE.unpack(data)
    features = low | high << 16
    crc_offset = _FEATURE.size - 2
    if features & CgmFeatureFlags.E2E_CRC_SUPPORTED:
        computed = e2e_crc(data[:crc_offset])
        if received != computed:
            raise CrcMismatchError(
                CHARACTERISTIC,
                data,
                f"E2E-CRC 0x{received:04X} does not match the feature's 0x{computed:04X}",
                received=received,
                computed=computed,
                offset=crc_offset,
            )
    elif received != CRC_NOT_SUPPORTED:
        raise ReservedValueError(
            CHARACTERISTIC,
            data,
            f"E2E-CRC field 0x{received:04X} must be 0xFFFF when E2E-CRC is not supported",
            offset=crc_offset,
        )
    type_code, location_code = type_location & 0x0F, type_location >> 4
    if type_code not in _TYPES:
        raise ReservedValueError(CHARACTERISTIC, data, f"CGM Type {type_code} is reserved", offset=3)
    if location_code not in _LOCATIONS:
        raise ReservedValueError(CHARACTERISTIC, data, f"CGM Sample Location {location_code} is reserved", offset=3)
    return CgmFeature(CgmFeatureFlags(features), CgmType(type_code), CgmSampleLocation(location_code))


def encode_cgm_feature(feature: CgmFeature) -> bytes:
    """Encode a CGM Feature value, with its E2E-CRC (or 0xFFFF when E2E-CRC is not supported)."""
    features = int(feature.features)
    type_location = int(feature.cgm_type) | int(feature.sample_location) << 4
    body = _FEATURE.pack(features & 0xFFFF, features >> 16, type_location, 0)[:-2]
    crc = e2e_crc(body) if feature.e2e_crc_supported else CRC_NOT_SUPPORTED
    return _FEATURE.pack(features & 0xFFFF, features >> 16, type_location, crc)
