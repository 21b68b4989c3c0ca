"""Device Information strings (0x2A24-0x2A29): UTF-8, kept byte for byte, invalid UTF-8 replaced not refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.device_information import (
    MAX_ATTRIBUTE_OCTETS,
    DeviceInfoField,
    DeviceInfoString,
    decode_device_info_string,
    encode_device_info_string,
)
from firmware_bridge.errors import EncodeError, OverlongError

from .strategies import SETTINGS


@pytest.mark.parametrize(
    ("field", "characteristic", "json_name"),
    [
        (DeviceInfoField.MANUFACTURER_NAME, "2A29", "manufacturer_name"),
        (DeviceInfoField.MODEL_NUMBER, "2A24", "model_number"),
        (DeviceInfoField.SERIAL_NUMBER, "2A25", "serial_number"),
        (DeviceInfoField.HARDWARE_REVISION, "2A27", "hardware_revision"),
        (DeviceInfoField.FIRMWARE_REVISION, "2A26", "firmware_revision"),
        (DeviceInfoField.SOFTWARE_REVISION, "2A28", "software_revision"),
    ],
)
def test_fields(field: DeviceInfoField, characteristic: str, json_name: str) -> None:
    assert (field.characteristic, field.json_name) == (characteristic, json_name)


def test_plain_ascii() -> None:
    value = decode_device_info_string(DeviceInfoField.MANUFACTURER_NAME, bytearray(b"Tacx"))
    assert (value.text, value.utf8_valid, value.raw) == ("Tacx", True, b"Tacx")
    assert encode_device_info_string(value) == b"Tacx"


def test_multibyte_utf8() -> None:
    raw = "Gerät ♥".encode()
    value = decode_device_info_string(DeviceInfoField.MODEL_NUMBER, raw)
    assert (value.text, value.utf8_valid) == ("Gerät ♥", True)


def test_empty_string_is_valid() -> None:
    value = decode_device_info_string(DeviceInfoField.SERIAL_NUMBER, b"")
    assert (value.text, value.utf8_valid, encode_device_info_string(value)) == ("", True, b"")


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"V1.0\xe9", "V1.0\ufffd"),  # Latin-1 e-acute
        ("Gerät".encode()[:4], "Ger\ufffd"),  # a read that cut a two-octet character in half
        (b"\xff\xfe", "\ufffd\ufffd"),
    ],
)
def test_invalid_utf8_is_replaced_and_kept(raw: bytes, text: str) -> None:
    value = decode_device_info_string(DeviceInfoField.FIRMWARE_REVISION, raw)
    assert (value.text, value.utf8_valid) == (text, False)
    assert encode_device_info_string(value) == raw


def test_trailing_nuls_are_left_out_of_the_text_only() -> None:
    value = decode_device_info_string(DeviceInfoField.MANUFACTURER_NAME, b"Nordic\x00\x00")
    assert (value.text, value.utf8_valid, encode_device_info_string(value)) == ("Nordic", True, b"Nordic\x00\x00")


def test_longer_than_an_attribute_value() -> None:
    decode_device_info_string(DeviceInfoField.MODEL_NUMBER, b"x" * MAX_ATTRIBUTE_OCTETS)
    payload = b"x" * (MAX_ATTRIBUTE_OCTETS + 1)
    with pytest.raises(OverlongError) as caught:
        decode_device_info_string(DeviceInfoField.MODEL_NUMBER, payload)
    assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2A24", payload, 512)


def test_from_text() -> None:
    assert DeviceInfoString.from_text(DeviceInfoField.MODEL_NUMBER, "T1994").raw == b"T1994"
    with pytest.raises(EncodeError):
        DeviceInfoString.from_text(DeviceInfoField.MODEL_NUMBER, "\ud800")
    with pytest.raises(EncodeError):
        DeviceInfoString.from_text(DeviceInfoField.MODEL_NUMBER, "x" * (MAX_ATTRIBUTE_OCTETS + 1))


@pytest.mark.parametrize("kwargs", [{"field": 0x2A29, "raw": b""}, {"field": DeviceInfoField.MODEL_NUMBER, "raw": "x"}])
def test_invalid_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        DeviceInfoString(**kwargs)  # type: ignore[arg-type]


@SETTINGS
@given(st.sampled_from(DeviceInfoField), st.binary(max_size=MAX_ATTRIBUTE_OCTETS))
def test_any_bytes_round_trip(field: DeviceInfoField, raw: bytes) -> None:
    value = decode_device_info_string(field, raw)
    assert encode_device_info_string(value) == raw
    assert value.utf8_valid == (raw.decode("utf-8", errors="replace").encode() == raw)


@SETTINGS
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=100).filter(lambda t: not t.endswith("\x00")))
def test_text_round_trip(text: str) -> None:
    value = decode_device_info_string(
        DeviceInfoField.MANUFACTURER_NAME,
        encode_device_info_string(DeviceInfoString.from_text(DeviceInfoField.MANUFACTURER_NAME, text)),
    )
    assert (value.text, value.utf8_valid) == (text, True)
