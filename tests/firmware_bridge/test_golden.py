"""Golden payloads from real devices and reference test suites (tests/fixtures/gatt_golden.json)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware_bridge import errors
from firmware_bridge.battery import decode_battery_level, encode_battery_level
from firmware_bridge.body_sensor_location import decode_body_sensor_location, encode_body_sensor_location
from firmware_bridge.cgm import decode_cgm_measurement, encode_cgm_measurement
from firmware_bridge.cgm_feature import decode_cgm_feature, encode_cgm_feature
from firmware_bridge.cgm_session import (
    decode_cgm_session_run_time,
    decode_cgm_session_start_time,
    encode_cgm_session_run_time,
    encode_cgm_session_start_time,
)
from firmware_bridge.cgm_status import decode_cgm_status, encode_cgm_status
from firmware_bridge.device_information import DeviceInfoField, decode_device_info_string, encode_device_info_string
from firmware_bridge.heart_rate import decode_heart_rate_measurement, encode_heart_rate_measurement
from firmware_bridge.heart_rate_control_point import decode_heart_rate_control_point, encode_heart_rate_control_point
from firmware_bridge.registry import decode_to_dict
from firmware_bridge.uuids import short_uuid

GOLDEN = json.loads((Path(__file__).parents[1] / "fixtures" / "gatt_golden.json").read_text(encoding="utf-8"))

ROUND_TRIPS: dict[str, Callable[[bytes], bytes]] = {
    "2A37": lambda data: encode_heart_rate_measurement(decode_heart_rate_measurement(data)),
    "2A38": lambda data: encode_body_sensor_location(decode_body_sensor_location(data)),
    "2A39": lambda data: encode_heart_rate_control_point(decode_heart_rate_control_point(data)),
    "2A19": lambda data: encode_battery_level(decode_battery_level(data)),
    "2AA7": lambda data: encode_cgm_measurement(decode_cgm_measurement(data)),
    "2AA8": lambda data: encode_cgm_feature(decode_cgm_feature(data)),
    "2AA9": lambda data: encode_cgm_status(decode_cgm_status(data)),
    "2AAA": lambda data: encode_cgm_session_start_time(decode_cgm_session_start_time(data)),
    "2AAB": lambda data: encode_cgm_session_run_time(decode_cgm_session_run_time(data)),
}


def _device_info_round_trip(field: DeviceInfoField) -> Callable[[bytes], bytes]:
    return lambda data: encode_device_info_string(decode_device_info_string(field, data))


ROUND_TRIPS.update({field.characteristic: _device_info_round_trip(field) for field in DeviceInfoField})

# The Device Information strings share one codec: golden vectors for some of them cover it.
CODEC_OF = {key: "device_information" if int(key, 16) in set(DeviceInfoField) else key for key in ROUND_TRIPS}


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [vector["id"] for vector in vectors]


def test_every_vector_names_its_source() -> None:
    for vector in GOLDEN["vectors"] + GOLDEN["errors"]:
        assert vector["source"].strip(), vector["id"]
        assert vector["note"].strip(), vector["id"]
    assert len(set(_ids(GOLDEN["vectors"] + GOLDEN["errors"]))) == len(GOLDEN["vectors"]) + len(GOLDEN["errors"])


def test_golden_set_covers_every_codec() -> None:
    covered = {short_uuid(v["characteristic"]) for v in GOLDEN["vectors"]}
    assert covered <= set(ROUND_TRIPS)
    assert {CODEC_OF[key] for key in covered} == set(CODEC_OF.values())


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=_ids(GOLDEN["vectors"]))
def test_golden_decodes_to_expected(vector: dict[str, Any]) -> None:
    assert decode_to_dict(vector["characteristic"], bytes.fromhex(vector["hex"])) == vector["expected"]


@pytest.mark.parametrize("vector", GOLDEN["vectors"], ids=_ids(GOLDEN["vectors"]))
def test_golden_re_encodes_to_the_same_bytes(vector: dict[str, Any]) -> None:
    payload = bytes.fromhex(vector["hex"])
    assert ROUND_TRIPS[short_uuid(vector["characteristic"])](payload) == payload


@pytest.mark.parametrize("vector", GOLDEN["errors"], ids=_ids(GOLDEN["errors"]))
def test_golden_errors(vector: dict[str, Any]) -> None:
    expected = getattr(errors, vector["error"])
    payload = bytes.fromhex(vector["hex"])
    with pytest.raises(expected) as caught:
        decode_to_dict(vector["characteristic"], payload)
    assert type(caught.value) is expected
    assert caught.value.data == payload
    assert caught.value.characteristic == short_uuid(vector["characteristic"])
