"""decode_to_dict: characteristic lookup and the JSON-ready field names other parts of Vigil rely on."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given

from firmware_bridge.errors import (
    CrcMismatchError,
    InvalidUuidError,
    TruncatedError,
    UnknownCharacteristicError,
)
from firmware_bridge.registry import DECODERS, decode_to_dict

from .strategies import SETTINGS, cgm_payloads, heart_rate_payloads

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


@pytest.mark.parametrize("characteristic", ["2A38", "2AA8", "180D", "0000"])
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
    assert set(DECODERS) == {"2A37", "2A19", "2AA7"}
    with pytest.raises(TypeError):
        DECODERS["2A38"] = DECODERS["2A37"]  # type: ignore[index]


@SETTINGS
@given(heart_rate_payloads())
def test_heart_rate_dicts_are_strict_json(payload: bytes) -> None:
    json.dumps(decode_to_dict("2A37", payload), allow_nan=False)


@SETTINGS
@given(cgm_payloads())
def test_cgm_dicts_are_strict_json(payload: bytes) -> None:
    json.dumps(decode_to_dict("2AA7", payload), allow_nan=False)
