"""Body Sensor Location (0x2A38) and Heart Rate Control Point (0x2A39): one-octet HRS characteristics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.body_sensor_location import (
    BodySensorLocation,
    decode_body_sensor_location,
    encode_body_sensor_location,
)
from firmware_bridge.errors import CodecError, EncodeError, OverlongError, ReservedValueError, TruncatedError
from firmware_bridge.heart_rate_control_point import (
    HeartRateControlOpCode,
    decode_heart_rate_control_point,
    encode_heart_rate_control_point,
)

from .strategies import SETTINGS


@pytest.mark.parametrize(
    ("code", "location"),
    [
        (0, BodySensorLocation.OTHER),
        (1, BodySensorLocation.CHEST),
        (2, BodySensorLocation.WRIST),
        (3, BodySensorLocation.FINGER),
        (4, BodySensorLocation.HAND),
        (5, BodySensorLocation.EAR_LOBE),
        (6, BodySensorLocation.FOOT),
    ],
)
def test_every_defined_location(code: int, location: BodySensorLocation) -> None:
    decoded = decode_body_sensor_location(bytes([code]))
    assert decoded is location
    assert encode_body_sensor_location(decoded) == bytes([code])


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        (b"", TruncatedError, 0),
        (b"\x01\x00", OverlongError, 1),
        (b"\x07", ReservedValueError, 0),
        (b"\xff", ReservedValueError, 0),
    ],
)
def test_bad_locations(payload: bytes, error: type[CodecError], offset: int) -> None:
    with pytest.raises(error) as caught:
        decode_body_sensor_location(bytearray(payload))
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2A38", payload, offset)


@pytest.mark.parametrize("location", [7, -1, True, "chest", 1.0])
def test_undefined_locations_cannot_be_encoded(location: object) -> None:
    with pytest.raises(EncodeError):
        encode_body_sensor_location(location)  # type: ignore[arg-type]


@SETTINGS
@given(st.integers(0, 255))
def test_every_location_byte_decodes_and_round_trips_or_is_reserved(code: int) -> None:
    if code <= 6:
        assert encode_body_sensor_location(decode_body_sensor_location(bytes([code]))) == bytes([code])
    else:
        with pytest.raises(ReservedValueError):
            decode_body_sensor_location(bytes([code]))


# ---- Heart Rate Control Point --------------------------------------------------------------------------


def test_reset_energy_expended() -> None:
    assert encode_heart_rate_control_point() == b"\x01"
    assert decode_heart_rate_control_point(b"\x01") is HeartRateControlOpCode.RESET_ENERGY_EXPENDED


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [(b"", TruncatedError, 0), (b"\x01\x01", OverlongError, 1), (b"\x00", ReservedValueError, 0)],
)
def test_bad_control_point_writes(payload: bytes, error: type[CodecError], offset: int) -> None:
    with pytest.raises(error) as caught:
        decode_heart_rate_control_point(payload)
    assert type(caught.value) is error
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2A39", payload, offset)


@pytest.mark.parametrize("op_code", [0, 2, True, None])
def test_undefined_control_point_values_cannot_be_encoded(op_code: object) -> None:
    with pytest.raises(EncodeError):
        encode_heart_rate_control_point(op_code)  # type: ignore[arg-type]


@SETTINGS
@given(st.integers(0, 255))
def test_only_0x01_is_a_control_point_value(code: int) -> None:
    if code == 1:
        assert encode_heart_rate_control_point(decode_heart_rate_control_point(bytes([code]))) == b"\x01"
    else:
        with pytest.raises(ReservedValueError):
            decode_heart_rate_control_point(bytes([code]))
