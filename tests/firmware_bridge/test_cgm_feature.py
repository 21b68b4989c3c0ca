"""CGM Feature (0x2AA8)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.cgm_feature import (
    CgmFeature,
    CgmFeatureFlags,
    CgmSampleLocation,
    CgmType,
    decode_cgm_feature,
    encode_cgm_feature,
    feature_names,
)
from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    CodecError,
    CrcMismatchError,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)

from .strategies import CGM_SAMPLE_LOCATION_CODES, CGM_TYPE_CODES, SETTINGS, cgm_feature_payloads

# Nordic Android-BLE-Common-Library CGMFeatureDataCallbackTest: features 0b1_1001_1110_0110_1110, arterial
# plasma at the finger, E2E-CRC 0xC18A.
NORDIC_WITH_CRC = bytes.fromhex("6e9e01168ac1")
NORDIC_WITHOUT_CRC = bytes.fromhex("6e8e0116ffff")


def _payload(features: int, type_location: int, crc: int | None = None) -> bytes:
    body = features.to_bytes(3, "little") + bytes([type_location])
    if crc is None:
        crc = e2e_crc(body) if features & 0x1000 else 0xFFFF
    return body + struct.pack("<H", crc)


def test_nordic_vector_with_crc() -> None:
    feature = decode_cgm_feature(NORDIC_WITH_CRC)
    assert feature.e2e_crc_supported
    assert feature.cgm_type is CgmType.ARTERIAL_PLASMA
    assert feature.sample_location is CgmSampleLocation.FINGER
    assert CgmFeatureFlags.CALIBRATION_SUPPORTED not in feature.features
    assert CgmFeatureFlags.CGM_QUALITY_SUPPORTED in feature.features
    assert int(feature.features) == 0b1_1001_1110_0110_1110
    assert encode_cgm_feature(feature) == NORDIC_WITH_CRC


def test_without_e2e_crc_the_field_is_0xffff() -> None:
    feature = decode_cgm_feature(NORDIC_WITHOUT_CRC)
    assert not feature.e2e_crc_supported
    assert encode_cgm_feature(feature) == NORDIC_WITHOUT_CRC


def test_names_of_the_set_bits_with_reserved_bits_kept() -> None:
    payload = _payload(0x801001, 0x59)  # calibration, E2E-CRC, reserved bit 23; ISF, subcutaneous
    feature = decode_cgm_feature(payload)
    assert feature.feature_names() == ["calibration_supported", "e2e_crc_supported", "reserved_bit_23"]
    assert feature_names(0) == []
    assert (feature.cgm_type, feature.sample_location) == (
        CgmType.INTERSTITIAL_FLUID,
        CgmSampleLocation.SUBCUTANEOUS_TISSUE,
    )
    assert encode_cgm_feature(feature) == payload


def _check(payload: bytes, error: type[CodecError], offset: int) -> CodecError:
    with pytest.raises(error) as caught:
        decode_cgm_feature(payload)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2AA8", payload, offset)
    return caught.value


@pytest.mark.parametrize("cut", range(6))
def test_truncated(cut: int) -> None:
    _check(NORDIC_WITH_CRC[:cut], TruncatedError, cut)


def test_overlong() -> None:
    _check(NORDIC_WITH_CRC + b"\x00", OverlongError, 6)


def test_wrong_crc() -> None:
    error = _check(bytes.fromhex("6e9e0116afbe"), CrcMismatchError, 4)
    assert isinstance(error, CrcMismatchError)
    assert (error.received, error.computed) == (0xBEAF, 0xC18A)


@pytest.mark.parametrize("position", range(4))
def test_any_corrupted_octet_fails_the_crc(position: int) -> None:
    payload = bytearray(NORDIC_WITH_CRC)
    payload[position] ^= 0x40  # leaves bit 12 (E2E-CRC Supported) alone
    _check(bytes(payload), CrcMismatchError, 4)


def test_crc_field_must_be_0xffff_without_e2e_crc() -> None:
    _check(bytes.fromhex("6e8e0116afbe"), ReservedValueError, 4)
    _check(_payload(0x000000, 0x11, crc=e2e_crc(bytes.fromhex("00000011"))), ReservedValueError, 4)


@pytest.mark.parametrize("type_location", [0x10, 0x1B, 0x1F, 0x01, 0x61, 0xE1])
def test_reserved_type_or_location(type_location: int) -> None:
    _check(_payload(0, type_location), ReservedValueError, 3)
    _check(_payload(0x1000, type_location), ReservedValueError, 3)  # with a valid CRC too


@pytest.mark.parametrize(
    "kwargs",
    [
        {"features": 1 << 24, "cgm_type": 1, "sample_location": 1},
        {"features": -1, "cgm_type": 1, "sample_location": 1},
        {"features": 0, "cgm_type": 0, "sample_location": 1},
        {"features": 0, "cgm_type": 11, "sample_location": 1},
        {"features": 0, "cgm_type": 1, "sample_location": 6},
        {"features": 0, "cgm_type": True, "sample_location": 1},
        {"features": "0", "cgm_type": 1, "sample_location": 1},
    ],
)
def test_unencodable_features_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        CgmFeature(**kwargs)  # type: ignore[arg-type]


def test_plain_ints_become_enum_types() -> None:
    feature = CgmFeature(0x1000, 9, 5)  # type: ignore[arg-type]
    assert isinstance(feature.features, CgmFeatureFlags)
    assert feature.cgm_type is CgmType.INTERSTITIAL_FLUID
    assert feature.sample_location is CgmSampleLocation.SUBCUTANEOUS_TISSUE


@SETTINGS
@given(cgm_feature_payloads())
def test_decode_encode_round_trip(payload: bytes) -> None:
    assert encode_cgm_feature(decode_cgm_feature(payload)) == payload


@SETTINGS
@given(st.integers(0, 0xFFFFFF), st.sampled_from(CGM_TYPE_CODES), st.sampled_from(CGM_SAMPLE_LOCATION_CODES))
def test_encode_decode_round_trip(features: int, cgm_type: int, location: int) -> None:
    feature = CgmFeature(CgmFeatureFlags(features), CgmType(cgm_type), CgmSampleLocation(location))
    assert decode_cgm_feature(encode_cgm_feature(feature)) == feature
