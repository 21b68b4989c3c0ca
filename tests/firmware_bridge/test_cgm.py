"""CGM Measurement (0x2AA7)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given

from firmware_bridge.cgm import (
    CalTempOctet,
    CgmMeasurementFlags,
    CgmMeasurementRecord,
    SensorStatusAnnunciation,
    StatusOctet,
    WarningOctet,
    annunciation_names,
    decode_cgm_measurement,
    encode_cgm_measurement,
    encode_cgm_record,
)
from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    CodecError,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    ReservedValueError,
    SizeMismatchError,
    TruncatedError,
)
from firmware_bridge.sfloat import SFloat, SpecialValue

from .strategies import SETTINGS, cgm_payloads, cgm_records

# Roche CGMS test device, https://github.com/nordicsemi/Android-nRF-Connect/issues/174
ROCHE = bytes.fromhex("0d4373002c010324001a003e04")


def _record(flags: int, *fields: bytes, crc: bool = False, glucose: int = 0x0061, offset: int = 10) -> bytes:
    """A record laid out by hand: Size, Flags, Glucose, Time Offset, fields..., [E2E-CRC]."""
    body = struct.pack("<BHH", flags, glucose, offset) + b"".join(fields)
    size = 1 + len(body) + (2 if crc else 0)
    record = bytes([size]) + body
    return record + struct.pack("<H", e2e_crc(record)) if crc else record


def test_minimal_record() -> None:
    (record,) = decode_cgm_measurement(_record(0x00))
    assert record == CgmMeasurementRecord(glucose=SFloat(97, 0), time_offset_min=10)
    assert (record.size, record.has_crc, record.glucose_mg_dl) == (6, False, 97.0)
    assert (record.trend_mg_dl_per_min, record.quality_pct) == (None, None)


def test_record_with_everything() -> None:
    payload = _record(0xE3, b"\x21", b"\x04", b"\x80", b"\xf1\xff", b"\xe5\xf3", crc=True)
    (record,) = decode_cgm_measurement(payload)
    assert record.status == StatusOctet.SESSION_STOPPED | StatusOctet.GENERAL_DEVICE_FAULT
    assert record.cal_temp == CalTempOctet.CALIBRATION_RECOMMENDED
    assert record.warning == WarningOctet.RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS
    assert record.trend_mg_dl_per_min == -1.5  # 0xFFF1: exponent -1, mantissa -15
    assert record.quality_pct == 99.7
    assert record.has_crc
    assert record.size == 15
    assert encode_cgm_record(record) == payload


@pytest.mark.parametrize(
    ("flags", "octets", "expected"),
    [
        # Status (bit 7) first, then Cal/Temp (bit 6), then Warning (bit 5): the 24-bit annunciation's
        # octets least significant first, each only when present.
        (0x80, b"\x02", {"status": 0x02}),
        (0x40, b"\x02", {"cal_temp": 0x02}),
        (0x20, b"\x02", {"warning": 0x02}),
        (0xA0, b"\x01\x10", {"status": 0x01, "warning": 0x10}),
        (0x60, b"\x01\x10", {"cal_temp": 0x01, "warning": 0x10}),
        (0xC0, b"\x01\x10", {"status": 0x01, "cal_temp": 0x10}),
        (0xE0, b"\x01\x02\x04", {"status": 0x01, "cal_temp": 0x02, "warning": 0x04}),
    ],
)
def test_annunciation_octet_order(flags: int, octets: bytes, expected: dict[str, int]) -> None:
    (record,) = decode_cgm_measurement(_record(flags, octets))
    assert {name: getattr(record, name) for name in ("status", "cal_temp", "warning")} == {
        "status": expected.get("status"),
        "cal_temp": expected.get("cal_temp"),
        "warning": expected.get("warning"),
    }


def test_present_zero_octet_is_not_absent() -> None:
    payload = _record(0x80, b"\x00")
    (record,) = decode_cgm_measurement(payload)
    assert record.status == 0
    assert record.status is not None
    assert encode_cgm_record(record) == payload


def test_annunciation_as_one_24_bit_flag() -> None:
    (record,) = decode_cgm_measurement(_record(0xE0, b"\x02", b"\x14", b"\x81"))
    annunciation = record.annunciation
    assert int(annunciation) == 0x811402
    assert SensorStatusAnnunciation.DEVICE_BATTERY_LOW in annunciation
    assert SensorStatusAnnunciation.SENSOR_TEMPERATURE_TOO_HIGH in annunciation
    assert SensorStatusAnnunciation.RESULT_HIGHER_THAN_DEVICE_CAN_PROCESS in annunciation
    assert SensorStatusAnnunciation.SESSION_STOPPED not in annunciation
    assert record.status_names() == annunciation_names(annunciation)
    assert annunciation_names(annunciation) == [
        "device_battery_low",
        "calibration_recommended",
        "sensor_temperature_too_high",
        "result_lower_than_patient_low_level",
        "result_higher_than_device_can_process",
    ]


def test_reserved_annunciation_bits_are_kept_and_named() -> None:
    payload = _record(0xC0, b"\xc1", b"\x40")
    (record,) = decode_cgm_measurement(payload)
    assert annunciation_names(record.annunciation) == [
        "session_stopped",
        "reserved_bit_6",
        "reserved_bit_7",
        "reserved_bit_14",
    ]
    assert encode_cgm_record(record) == payload


def test_reserved_flag_bits_do_not_change_the_layout() -> None:
    payload = _record(0x1C | 0x01, b"\x0a\x00")  # reserved bits 2-4 plus Trend
    (record,) = decode_cgm_measurement(payload)
    assert record.reserved_flag_bits == 0x1C
    assert record.trend == SFloat(10, 0)
    assert encode_cgm_record(record) == payload


def test_several_records_in_one_notification() -> None:
    payload = _record(0x00, offset=5) + ROCHE + _record(0x80, b"\x01", crc=True, offset=7)
    records = decode_cgm_measurement(payload)
    assert [r.time_offset_min for r in records] == [5, 300, 7]
    assert [r.has_crc for r in records] == [False, True, True]
    assert encode_cgm_measurement(records) == payload


def test_crc_presence_is_read_from_size() -> None:
    without = _record(0x03, b"\x24\x00", b"\x1a\x00")
    with_crc = _record(0x03, b"\x24\x00", b"\x1a\x00", crc=True)
    assert decode_cgm_measurement(without)[0].has_crc is False
    assert decode_cgm_measurement(with_crc)[0].has_crc is True
    assert len(with_crc) == len(without) + 2


def test_special_glucose_values_decode() -> None:
    (record,) = decode_cgm_measurement(_record(0x00, glucose=0x07FE))
    assert record.glucose.special is SpecialValue.POSITIVE_INFINITY


# ---- malformed input --------------------------------------------------------------------------------------


def _check(payload: bytes, error: type[CodecError], offset: int | None, **kwargs: bool) -> CodecError:
    with pytest.raises(error) as caught:
        decode_cgm_measurement(payload, **kwargs)
    assert type(caught.value) is error
    assert caught.value.characteristic == "2AA7"
    assert caught.value.data == payload
    assert caught.value.reason
    assert caught.value.offset == offset
    return caught.value


def test_empty_payload() -> None:
    _check(b"", TruncatedError, 0)


@pytest.mark.parametrize("size", [0, 1, 5, 7, 9, 255])
def test_size_that_fits_neither_layout(size: int) -> None:
    payload = bytes([size]) + _record(0x00)[1:] + b"\x00" * 4
    _check(payload, SizeMismatchError, 0)


def test_size_disagreeing_with_flags_in_the_second_record() -> None:
    second = bytearray(_record(0x01, b"\x01\x00"))
    second[0] = 6  # Size 6 but Trend announced: 8 or 10
    _check(_record(0x00) + bytes(second), SizeMismatchError, 6)


@pytest.mark.parametrize("cut", range(1, 15))
def test_truncated_record(cut: int) -> None:
    full = _record(0xE3, b"\x01", b"\x02", b"\x03", b"\x04\x00", b"\x05\x00", crc=True)
    _check(full[:cut], TruncatedError, 0)


def test_trailing_byte_after_a_record() -> None:
    _check(_record(0x00) + b"\x06", TruncatedError, 6)


def test_wrong_crc() -> None:
    payload = bytearray(ROCHE)
    payload[-1] ^= 0x01
    error = _check(bytes(payload), CrcMismatchError, 11)
    assert isinstance(error, CrcMismatchError)
    assert (error.received, error.computed) == (0x053E, 0x043E)


@pytest.mark.parametrize("position", range(2, len(ROCHE)))
def test_any_corrupted_byte_after_the_flags_fails_the_crc(position: int) -> None:
    payload = bytearray(ROCHE)
    payload[position] ^= 0x5A
    _check(bytes(payload), CrcMismatchError, 11)


def test_missing_crc_when_required() -> None:
    _check(_record(0x00), CrcMissingError, 0, require_crc=True)
    _check(ROCHE + _record(0x00), CrcMissingError, len(ROCHE), require_crc=True)
    assert decode_cgm_measurement(ROCHE, require_crc=True)[0].has_crc


@pytest.mark.parametrize(("flags", "fields", "offset"), [(0x00, (), 2), (0x01, (b"\x01\x08",), 6)])
def test_reserved_sfloat_is_rejected(flags: int, fields: tuple[bytes, ...], offset: int) -> None:
    glucose = 0x0801 if not fields else 0x0061
    _check(_record(flags, *fields, glucose=glucose), ReservedValueError, offset)


# ---- construction -----------------------------------------------------------------------------------------


def test_plain_ints_become_flag_types() -> None:
    record = CgmMeasurementRecord(glucose=SFloat(97, 0), time_offset_min=0, status=2)  # type: ignore[arg-type]
    assert isinstance(record.status, StatusOctet)
    assert record.flags == CgmMeasurementFlags.STATUS_OCTET_PRESENT


@pytest.mark.parametrize(
    "kwargs",
    [
        {"glucose": 97},
        {"glucose": SFloat(97, 0), "time_offset_min": 0x10000},
        {"glucose": SFloat(97, 0), "status": 256},
        {"glucose": SFloat(97, 0), "warning": True},
        {"glucose": SFloat(97, 0), "trend": 1.5},
        {"glucose": SFloat(97, 0), "has_crc": 1},
        {"glucose": SFloat(97, 0), "reserved_flag_bits": 0x20},
    ],
)
def test_unencodable_records_are_refused(kwargs: dict[str, object]) -> None:
    kwargs.setdefault("time_offset_min", 0)
    with pytest.raises(EncodeError):
        CgmMeasurementRecord(**kwargs)  # type: ignore[arg-type]


def test_encoding_no_records_is_refused() -> None:
    with pytest.raises(EncodeError):
        encode_cgm_measurement([])


# ---- properties -------------------------------------------------------------------------------------------


@SETTINGS
@given(cgm_payloads())
def test_encode_decode_round_trip(payload: bytes) -> None:
    assert encode_cgm_measurement(decode_cgm_measurement(payload)) == payload


@SETTINGS
@given(cgm_records())
def test_decode_encode_round_trip(record: CgmMeasurementRecord) -> None:
    assert decode_cgm_measurement(encode_cgm_record(record)) == (record,)


@SETTINGS
@given(cgm_payloads(crc=True))
def test_records_with_crc_satisfy_require_crc(payload: bytes) -> None:
    assert all(record.has_crc for record in decode_cgm_measurement(payload, require_crc=True))
