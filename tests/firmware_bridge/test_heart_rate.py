"""Heart Rate Measurement (0x2A37)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given

from firmware_bridge.errors import CodecError, EncodeError, OverlongError, TruncatedError
from firmware_bridge.heart_rate import (
    HeartRateMeasurement,
    HeartRateValueFormat,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)

from .strategies import SETTINGS, heart_rate_measurements, heart_rate_payloads

# HRS 1.0, Table 3.1: Sensor Contact Status bits (flags bits 1-2) -> meaning.
CONTACT_BITS = {
    0: SensorContact.UNSUPPORTED,
    1: SensorContact.UNSUPPORTED,
    2: SensorContact.NOT_DETECTED,
    3: SensorContact.DETECTED,
}


@pytest.mark.parametrize("flags", range(256))
def test_every_flags_byte(flags: int) -> None:
    hr_field = struct.pack("<H", 301) if flags & 0x01 else struct.pack("<B", 71)
    energy_field = struct.pack("<H", 4321) if flags & 0x08 else b""
    rr_field = struct.pack("<2H", 800, 1100) if flags & 0x10 else b""
    payload = bytes([flags]) + hr_field + energy_field + rr_field

    m = decode_heart_rate_measurement(payload)

    assert m.hr_bpm == (301 if flags & 0x01 else 71)
    assert m.value_format is (HeartRateValueFormat.UINT16 if flags & 0x01 else HeartRateValueFormat.UINT8)
    assert m.sensor_contact is CONTACT_BITS[(flags >> 1) & 0b11]
    assert m.energy_expended_kj == (4321 if flags & 0x08 else None)
    assert m.rr_intervals == ((800, 1100) if flags & 0x10 else None)
    assert m.flags == flags
    assert encode_heart_rate_measurement(m) == payload


@pytest.mark.parametrize("count", [0, 1, 2, 8, 9, 50, 250])
def test_any_number_of_rr_intervals(count: int) -> None:
    ticks = [(600 + 13 * i) % 0x10000 for i in range(count)]
    payload = bytes([0x10, 60]) + struct.pack(f"<{count}H", *ticks)
    m = decode_heart_rate_measurement(payload)
    assert m.rr_intervals == tuple(ticks)
    assert encode_heart_rate_measurement(m) == payload


def test_example_from_the_brief_decoded_by_hand() -> None:
    # 1e 55 3200 2100: flags 0x1E = uint8 value, contact supported and detected, Energy Expended present,
    # RR present; HR 0x55 = 85 bpm; energy 0x0032 = 50 kJ; one RR of 0x0021 = 33/1024 s (about 32 ms, not a
    # plausible heartbeat, but the codec reports what was sent and leaves judging it to RR cleaning).
    m = decode_heart_rate_measurement(bytes.fromhex("1e5532002100"))
    assert m == HeartRateMeasurement(
        hr_bpm=85,
        value_format=HeartRateValueFormat.UINT8,
        sensor_contact=SensorContact.DETECTED,
        energy_expended_kj=50,
        rr_intervals=(33,),
    )
    assert m.rr_intervals_s == (33 / 1024,)


def test_energy_expended_saturated_value_is_kept() -> None:
    # HRS 3.1.1.3: at 65535 kJ the field stays at 0xFFFF until the client resets it.
    m = decode_heart_rate_measurement(bytes.fromhex("0848ffff"))
    assert m.energy_expended_kj == 0xFFFF


def test_uint16_format_with_small_value_is_kept() -> None:
    payload = bytes.fromhex("014800")
    m = decode_heart_rate_measurement(payload)
    assert (m.hr_bpm, m.value_format) == (72, HeartRateValueFormat.UINT16)
    assert encode_heart_rate_measurement(m) == payload


def test_rr_seconds_are_exact_binary_fractions() -> None:
    m = HeartRateMeasurement(hr_bpm=60, rr_intervals=(1024, 512, 1))
    assert m.rr_intervals_s == (1.0, 0.5, 1 / 1024)
    assert HeartRateMeasurement(hr_bpm=60).rr_intervals_s == ()


def test_reserved_flag_bits_are_ignored_but_kept() -> None:
    payload = bytes.fromhex("f6403c03")  # reserved bits 5-7 set on top of 0x16
    m = decode_heart_rate_measurement(payload)
    assert (m.hr_bpm, m.sensor_contact, m.rr_intervals) == (64, SensorContact.DETECTED, (0x033C,))
    assert m.ignored_flag_bits == 0xE0
    assert encode_heart_rate_measurement(m) == payload


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        (b"", TruncatedError, 0),
        (b"\x00", TruncatedError, 1),  # no heart rate value
        (b"\x01\x48", TruncatedError, 1),  # uint16 value cut short
        (b"\x08\x48\x01", TruncatedError, 2),  # Energy Expended cut short
        (b"\x18\x48", TruncatedError, 2),  # energy announced, absent
        (b"\x10\x48\x2c", TruncatedError, 2),  # half an RR interval
        (b"\x10\x48\x2c\x03\x96", TruncatedError, 2),
        (b"\x00\x48\x00", OverlongError, 2),  # trailing byte, RR bit clear
        (b"\x08\x48\x01\x00\x2c\x03", OverlongError, 4),  # RR bytes without the RR bit
        (b"\x01\x48\x00\xff", OverlongError, 3),
    ],
)
def test_malformed_payloads(payload: bytes, error: type[CodecError], offset: int) -> None:
    with pytest.raises(error) as caught:
        decode_heart_rate_measurement(payload)
    assert type(caught.value) is error
    assert caught.value.characteristic == "2A37"
    assert caught.value.data == payload
    assert caught.value.reason
    assert caught.value.offset == offset


def test_decoder_accepts_bytearray_and_memoryview() -> None:
    payload = bytes.fromhex("103b5304")
    expected = decode_heart_rate_measurement(payload)
    assert decode_heart_rate_measurement(bytearray(payload)) == expected
    assert decode_heart_rate_measurement(memoryview(payload)) == expected


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hr_bpm": 256},
        {"hr_bpm": -1},
        {"hr_bpm": 70000, "value_format": HeartRateValueFormat.UINT16},
        {"hr_bpm": 60, "energy_expended_kj": 0x10000},
        {"hr_bpm": 60, "rr_intervals": (0x10000,)},
        {"hr_bpm": 60, "rr_intervals": [800]},
        {"hr_bpm": 60, "ignored_flag_bits": 0x01},
        {"hr_bpm": 60, "ignored_flag_bits": 0x02, "sensor_contact": SensorContact.DETECTED},
        {"hr_bpm": 60, "value_format": 1},
        {"hr_bpm": 60, "sensor_contact": "detected"},
        {"hr_bpm": True},
    ],
)
def test_unencodable_measurements_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError) as caught:
        HeartRateMeasurement(**kwargs)  # type: ignore[arg-type]
    assert caught.value.characteristic == "2A37"
    assert caught.value.data == b""


@SETTINGS
@given(heart_rate_measurements())
def test_decode_encode_round_trip(m: HeartRateMeasurement) -> None:
    assert decode_heart_rate_measurement(encode_heart_rate_measurement(m)) == m


@SETTINGS
@given(heart_rate_payloads())
def test_encode_decode_round_trip(payload: bytes) -> None:
    assert encode_heart_rate_measurement(decode_heart_rate_measurement(payload)) == payload
