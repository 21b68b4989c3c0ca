"""decode_to_dict: characteristic lookup and the JSON-ready field names other parts of Vigil rely on."""

from __future__ import annotations

import json
import re
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    CrcMismatchError,
    InvalidUuidError,
    TruncatedError,
    UnknownCharacteristicError,
)
from firmware_bridge.registry import DECODERS, decode_to_dict

from .strategies import (
    SETTINGS,
    cgm_feature_payloads,
    cgm_payloads,
    cgm_status_payloads,
    heart_rate_payloads,
    session_run_time_payloads,
    session_start_time_payloads,
)

HR = bytes.fromhex("1e5532002100")


@pytest.mark.parametrize(
    "characteristic",
    [
        "2A37",
        "2a37",
        "0x2A37",
        "0x2a37",
        "00002a37-0000-1000-8000-00805f9b34fb",
        "00002A37-0000-1000-8000-00805F9B34FB",
    ],
)
def test_characteristic_spellings(characteristic: str) -> None:
    assert decode_to_dict(characteristic, HR)["hr_bpm"] == 85


def test_heart_rate_dict() -> None:
    assert decode_to_dict("2A37", HR) == {
        "hr_bpm": 85,
        "sensor_contact": "detected",
        "energy_expended_kj": 50,
        "rr_intervals_s": [33 / 1024],
    }


@pytest.mark.parametrize(
    ("flags", "contact"),
    [(0x00, "unsupported"), (0x02, "unsupported"), (0x04, "not_detected"), (0x06, "detected")],
)
def test_heart_rate_contact_strings_and_absent_fields(flags: int, contact: str) -> None:
    assert decode_to_dict("2A37", bytes([flags, 61])) == {
        "hr_bpm": 61,
        "sensor_contact": contact,
        "energy_expended_kj": None,
        "rr_intervals_s": [],
    }


def test_battery_dict() -> None:
    assert decode_to_dict("2a19", b"\x4b") == {"battery_pct": 75}


def _cgm_record(flags: int, glucose: int, *fields: bytes) -> bytes:
    body = struct.pack("<BHH", flags, glucose, 42) + b"".join(fields)
    return bytes([len(body) + 1]) + body


def test_cgm_single_record_dict() -> None:
    assert decode_to_dict("2AA7", _cgm_record(0x00, 0x0061)) == {
        "glucose_mg_dl": 97.0,
        "time_offset_min": 42,
        "trend_mg_dl_per_min": None,
        "quality_pct": None,
        "crc_ok": None,
        "status_annunciation": [],
        "special_values": {},
    }


def test_cgm_several_records() -> None:
    payload = _cgm_record(0x00, 0x0061) + _cgm_record(0x80, 0xF3CF, b"\x02")
    result = decode_to_dict("2AA7", payload)
    assert list(result) == ["records"]
    records = result["records"]
    assert isinstance(records, list)
    assert [r["glucose_mg_dl"] for r in records] == [97.0, 97.5]
    assert records[1]["status_annunciation"] == ["device_battery_low"]


def test_cgm_crc_ok_and_crc_error() -> None:
    roche = bytes.fromhex("0d4373002c010324001a003e04")
    assert decode_to_dict("2AA7", roche)["crc_ok"] is True
    with pytest.raises(CrcMismatchError):
        decode_to_dict("2AA7", roche[:-1] + b"\x00")


def test_cgm_special_values_are_null_with_their_meaning_alongside() -> None:
    payload = _cgm_record(0x03, 0x07FE, b"\xff\x07", b"\x00\x08")  # glucose +INF, trend NaN, quality NRes
    result = decode_to_dict("2AA7", payload)
    assert (result["glucose_mg_dl"], result["trend_mg_dl_per_min"], result["quality_pct"]) == (
        None,
        None,
        None,
    )
    assert result["special_values"] == {
        "glucose_mg_dl": "+inf",
        "trend_mg_dl_per_min": "nan",
        "quality_pct": "nres",
    }
    json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("characteristic", ["2A2B", "2A18", "180D", "0000"])
def test_characteristics_without_a_codec(characteristic: str) -> None:
    with pytest.raises(UnknownCharacteristicError) as caught:
        decode_to_dict(characteristic, b"\x01")
    assert type(caught.value) is UnknownCharacteristicError
    assert caught.value.characteristic == characteristic
    assert caught.value.data == b"\x01"


@pytest.mark.parametrize("characteristic", ["6e400003-b5a3-f393-e0a9-e50e24dcca9e", "heart", "2A3", ""])
def test_text_that_is_no_sig_uuid(characteristic: str) -> None:
    with pytest.raises(InvalidUuidError) as caught:
        decode_to_dict(characteristic, b"\x01")
    assert isinstance(caught.value, UnknownCharacteristicError)
    assert caught.value.data == b"\x01"


def test_errors_from_codecs_pass_through() -> None:
    with pytest.raises(TruncatedError):
        decode_to_dict("2A37", b"")


def test_registry_is_read_only_and_complete() -> None:
    # At least these; the control points (2A52, 2AAC) join them from their own modules.
    assert set(DECODERS) >= {
        "2A37", "2A38", "2A39", "2A19", "2A24", "2A25", "2A26", "2A27", "2A28", "2A29",
        "2AA7", "2AA8", "2AA9", "2AAA", "2AAB",
    }  # fmt: skip
    assert all(re.fullmatch("[0-9A-F]{4}", key) for key in DECODERS)
    with pytest.raises(TypeError):
        DECODERS["2A18"] = DECODERS["2A37"]  # type: ignore[index]


@pytest.mark.parametrize(("payload", "code", "name"), [(b"\x01", 1, "chest"), (b"\x05", 5, "ear_lobe")])
def test_body_sensor_location_dict(payload: bytes, code: int, name: str) -> None:
    assert decode_to_dict("2A38", payload) == {"body_sensor_location": code, "body_sensor_location_name": name}


def test_heart_rate_control_point_dict() -> None:
    assert decode_to_dict("2A39", b"\x01") == {"op_code": 1, "op_code_name": "reset_energy_expended"}


@pytest.mark.parametrize(
    ("characteristic", "name"),
    [
        ("2A29", "manufacturer_name"),
        ("2A24", "model_number"),
        ("2A25", "serial_number"),
        ("2A27", "hardware_revision"),
        ("2A26", "firmware_revision"),
        ("2A28", "software_revision"),
    ],
)
def test_device_information_dicts(characteristic: str, name: str) -> None:
    assert decode_to_dict(characteristic, b"V1.05") == {name: "V1.05", "utf8_valid": True}
    assert decode_to_dict(characteristic, b"V1.0\xe9") == {name: "V1.0\ufffd", "utf8_valid": False}


def test_cgm_feature_dict() -> None:
    body = bytes.fromhex("01100059")  # calibration + E2E-CRC supported; interstitial fluid, subcutaneous tissue
    assert decode_to_dict("2AA8", body + struct.pack("<H", e2e_crc(body))) == {
        "features": ["calibration_supported", "e2e_crc_supported"],
        "cgm_type": 9,
        "cgm_type_name": "interstitial_fluid",
        "sample_location": 5,
        "sample_location_name": "subcutaneous_tissue",
        "e2e_crc_supported": True,
        "crc_ok": True,
    }
    assert decode_to_dict("2AA8", bytes.fromhex("00000059ffff"))["crc_ok"] is None


def test_cgm_status_dict() -> None:
    assert decode_to_dict("2AA9", bytes.fromhex("2a00020000")) == {
        "time_offset_min": 42,
        "status_annunciation": ["device_battery_low"],
        "crc_ok": None,
    }


def test_cgm_session_start_time_dict() -> None:
    payload = struct.pack("<HBBBBBbB", 2026, 1, 16, 1, 10, 0, -20, 0)  # UTC-5:00, standard time
    assert decode_to_dict("2AAA", payload) == {
        "session_start_time": "2026-01-16T01:10:00-05:00",
        "year": 2026,
        "month": 1,
        "day": 16,
        "hours": 1,
        "minutes": 10,
        "seconds": 0,
        "time_zone_min": -300,
        "dst_offset_min": 0,
        "crc_ok": None,
    }
    unknown = decode_to_dict("2AAA", struct.pack("<HBBBBBbB", 0, 0, 0, 1, 10, 0, -128, 255))
    assert unknown["session_start_time"] is None
    assert [unknown[k] for k in ("year", "month", "day", "time_zone_min", "dst_offset_min")] == [None] * 5
    naive = decode_to_dict("2AAA", struct.pack("<HBBBBBbB", 2026, 1, 16, 1, 10, 0, -128, 0))
    assert naive["session_start_time"] == "2026-01-16T01:10:00"


def test_cgm_session_run_time_dict() -> None:
    assert decode_to_dict("2AAB", struct.pack("<H", 336)) == {"session_run_time_h": 336, "crc_ok": None}
    with_crc = struct.pack("<H", 336) + struct.pack("<H", e2e_crc(struct.pack("<H", 336)))
    assert decode_to_dict("2AAB", with_crc) == {"session_run_time_h": 336, "crc_ok": True}


@SETTINGS
@given(heart_rate_payloads())
def test_heart_rate_dicts_are_strict_json(payload: bytes) -> None:
    json.dumps(decode_to_dict("2A37", payload), allow_nan=False)


@SETTINGS
@given(cgm_payloads())
def test_cgm_dicts_are_strict_json(payload: bytes) -> None:
    json.dumps(decode_to_dict("2AA7", payload), allow_nan=False)


@SETTINGS
@given(
    st.one_of(
        st.tuples(st.just("2AA8"), cgm_feature_payloads()),
        st.tuples(st.just("2AA9"), cgm_status_payloads()),
        st.tuples(st.just("2AAA"), session_start_time_payloads()),
        st.tuples(st.just("2AAB"), session_run_time_payloads()),
        st.tuples(st.sampled_from(["2A24", "2A25", "2A26", "2A27", "2A28", "2A29"]), st.binary(max_size=64)),
    )
)
def test_new_cgm_and_device_information_dicts_are_strict_json(case: tuple[str, bytes]) -> None:
    characteristic, payload = case
    json.dumps(decode_to_dict(characteristic, payload), allow_nan=False)
