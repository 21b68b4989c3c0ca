"""SIG UUID table and the 16-bit <-> 128-bit conversions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.errors import InvalidUuidError, UnknownCharacteristicError
from firmware_bridge.uuids import CharacteristicUuid, ServiceUuid, hex16, short_uuid, uuid16_to_128

from .strategies import SETTINGS

# Assigned numbers as the Bluetooth SIG lists them (assigned_numbers/uuids/*.yaml), typed in by hand.
ASSIGNED = {
    ServiceUuid.HEART_RATE: 0x180D,
    ServiceUuid.BATTERY: 0x180F,
    ServiceUuid.DEVICE_INFORMATION: 0x180A,
    ServiceUuid.CONTINUOUS_GLUCOSE_MONITORING: 0x181F,
    CharacteristicUuid.HEART_RATE_MEASUREMENT: 0x2A37,
    CharacteristicUuid.BODY_SENSOR_LOCATION: 0x2A38,
    CharacteristicUuid.HEART_RATE_CONTROL_POINT: 0x2A39,
    CharacteristicUuid.BATTERY_LEVEL: 0x2A19,
    CharacteristicUuid.MODEL_NUMBER_STRING: 0x2A24,
    CharacteristicUuid.SERIAL_NUMBER_STRING: 0x2A25,
    CharacteristicUuid.FIRMWARE_REVISION_STRING: 0x2A26,
    CharacteristicUuid.HARDWARE_REVISION_STRING: 0x2A27,
    CharacteristicUuid.SOFTWARE_REVISION_STRING: 0x2A28,
    CharacteristicUuid.MANUFACTURER_NAME_STRING: 0x2A29,
    CharacteristicUuid.CGM_MEASUREMENT: 0x2AA7,
    CharacteristicUuid.CGM_FEATURE: 0x2AA8,
    CharacteristicUuid.CGM_STATUS: 0x2AA9,
    CharacteristicUuid.CGM_SESSION_START_TIME: 0x2AAA,
    CharacteristicUuid.CGM_SESSION_RUN_TIME: 0x2AAB,
    CharacteristicUuid.RECORD_ACCESS_CONTROL_POINT: 0x2A52,
    CharacteristicUuid.CGM_SPECIFIC_OPS_CONTROL_POINT: 0x2AAC,
}


@pytest.mark.parametrize(("member", "number"), ASSIGNED.items())
def test_assigned_numbers(member: int, number: int) -> None:
    assert int(member) == number


def test_table_has_exactly_the_listed_uuids() -> None:
    assert set(ServiceUuid) | set(CharacteristicUuid) == set(ASSIGNED)


def test_uuid16_to_128_matches_what_bleak_reports() -> None:
    assert uuid16_to_128(0x2A37) == "00002a37-0000-1000-8000-00805f9b34fb"
    assert uuid16_to_128(ServiceUuid.CONTINUOUS_GLUCOSE_MONITORING) == "0000181f-0000-1000-8000-00805f9b34fb"
    assert uuid16_to_128("0x2A19") == "00002a19-0000-1000-8000-00805f9b34fb"


@pytest.mark.parametrize(
    "text",
    [
        "2A37",
        "2a37",
        "0x2a37",
        "0X2A37",
        " 2a37 ",
        "00002a37",
        "00002A37-0000-1000-8000-00805F9B34FB",
        "00002a37-0000-1000-8000-00805f9b34fb",
        "{00002a37-0000-1000-8000-00805f9b34fb}",
    ],
)
def test_short_uuid_accepts_every_sig_spelling(text: str) -> None:
    assert short_uuid(text) == "2A37"


@pytest.mark.parametrize(
    "text",
    [
        "6e400001-b5a3-f393-e0a9-e50e24dcca9e",  # Nordic UART, a vendor UUID
        "00012a37-0000-1000-8000-00805f9b34fb",  # 32-bit SIG UUID with non-zero upper half
        "00012a37",
        "2a3",
        "2a377",
        "heart rate",
        "",
        "0x",
        "00002a37-0000-1000-8000-00805f9b34fc",  # one digit off the SIG base
    ],
)
def test_short_uuid_rejects_non_sig_text(text: str) -> None:
    with pytest.raises(InvalidUuidError) as caught:
        short_uuid(text)
    assert caught.value.characteristic == text
    assert caught.value.reason
    assert isinstance(caught.value, UnknownCharacteristicError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("value", [-1, 0x10000])
def test_hex16_rejects_out_of_range(value: int) -> None:
    with pytest.raises(InvalidUuidError):
        hex16(value)


@SETTINGS
@given(st.integers(0, 0xFFFF))
def test_round_trip_through_128_bit(value: int) -> None:
    long_form = uuid16_to_128(value)
    assert short_uuid(long_form) == f"{value:04X}"
    assert short_uuid(long_form.upper()) == f"{value:04X}"
    assert int(long_form[4:8], 16) == value
