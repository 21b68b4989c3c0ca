"""CGM Status (0x2AA9)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.cgm import SensorStatusAnnunciation
from firmware_bridge.cgm_status import CgmStatus, decode_cgm_status, encode_cgm_status
from firmware_bridge.errors import (
    CodecError,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    OverlongError,
    TruncatedError,
)

from .strategies import SETTINGS, cgm_status_payloads

# Nordic Android-BLE-Common-Library CGMStatusDataCallbackTest.
ALL_FLAGS_WITH_CRC = bytes.fromhex("05003f3fffa7e0")  # offset 5, every defined annunciation bit, E2E-CRC
THREE_FLAGS = bytes.fromhex("0600010101")  # offset 6, session stopped + time sync required + below patient low


def test_without_crc() -> None:
    status = decode_cgm_status(THREE_FLAGS)
    assert status == CgmStatus(
        6,
        SensorStatusAnnunciation.SESSION_STOPPED
        | SensorStatusAnnunciation.TIME_SYNCHRONIZATION_REQUIRED
        | SensorStatusAnnunciation.RESULT_LOWER_THAN_PATIENT_LOW_LEVEL,
    )
    assert status.status_names() == [
        "session_stopped",
        "time_synchronization_required",
        "result_lower_than_patient_low_level",
    ]
    assert encode_cgm_status(status) == THREE_FLAGS


def test_with_crc_and_every_flag() -> None:
    status = decode_cgm_status(ALL_FLAGS_WITH_CRC)
    assert status.has_crc
    assert status.time_offset_min == 5
    assert int(status.annunciation) == 0xFF3F3F
    assert len(status.status_names()) == 20
    assert encode_cgm_status(status) == ALL_FLAGS_WITH_CRC


def test_octet_order_status_cal_temp_warning() -> None:
    status = decode_cgm_status(bytes.fromhex("0000020480"))  # offset 0; Status 02, Cal/Temp 04, Warning 80
    assert status.status_names() == [
        "device_battery_low",
        "calibration_recommended",
        "result_higher_than_device_can_process",
    ]


def test_reserved_annunciation_bits_are_kept() -> None:
    payload = bytes.fromhex("0000c0c000")
    status = decode_cgm_status(payload)
    assert status.status_names() == ["reserved_bit_6", "reserved_bit_7", "reserved_bit_14", "reserved_bit_15"]
    assert encode_cgm_status(status) == payload


def _check(payload: bytes, error: type[CodecError], offset: int, **kwargs: bool) -> CodecError:
    with pytest.raises(error) as caught:
        decode_cgm_status(payload, **kwargs)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2AA9", payload, offset)
    return caught.value


@pytest.mark.parametrize("cut", range(5))
def test_truncated_fields(cut: int) -> None:
    _check(THREE_FLAGS[:cut], TruncatedError, cut)


def test_one_octet_of_crc_is_truncated() -> None:
    _check(ALL_FLAGS_WITH_CRC[:6], TruncatedError, 5)


def test_overlong() -> None:
    _check(ALL_FLAGS_WITH_CRC + b"\x00", OverlongError, 7)


def test_wrong_crc() -> None:
    error = _check(bytes.fromhex("0600010101a7e0"), CrcMismatchError, 5)
    assert isinstance(error, CrcMismatchError)
    assert error.received == 0xE0A7


def test_crc_required() -> None:
    _check(THREE_FLAGS, CrcMissingError, 5, require_crc=True)
    assert decode_cgm_status(ALL_FLAGS_WITH_CRC, require_crc=True).has_crc


@pytest.mark.parametrize(
    "kwargs",
    [
        {"time_offset_min": -1},
        {"time_offset_min": 0x10000},
        {"time_offset_min": 1, "annunciation": 1 << 24},
        {"time_offset_min": 1, "annunciation": True},
        {"time_offset_min": 1, "has_crc": 1},
    ],
)
def test_unencodable_status_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        CgmStatus(**kwargs)  # type: ignore[arg-type]


@SETTINGS
@given(cgm_status_payloads())
def test_decode_encode_round_trip(payload: bytes) -> None:
    assert encode_cgm_status(decode_cgm_status(payload)) == payload


@SETTINGS
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFF), st.booleans())
def test_encode_decode_round_trip(offset: int, bits: int, has_crc: bool) -> None:
    status = CgmStatus(offset, SensorStatusAnnunciation(bits), has_crc)
    assert decode_cgm_status(encode_cgm_status(status), require_crc=has_crc) == status
