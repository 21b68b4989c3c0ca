"""Battery Level (0x2A19)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.battery import decode_battery_level, encode_battery_level
from firmware_bridge.errors import CodecError, EncodeError, OverlongError, ReservedValueError, TruncatedError

from .strategies import SETTINGS


@pytest.mark.parametrize("percent", [0, 1, 50, 99, 100])
def test_valid_levels(percent: int) -> None:
    level = decode_battery_level(bytes([percent]))
    assert level == percent
    assert type(level) is int
    assert encode_battery_level(percent) == bytes([percent])


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", TruncatedError),
        (b"\x64\x00", OverlongError),
        (b"\x65", ReservedValueError),  # 101 %
        (b"\xff", ReservedValueError),
    ],
)
def test_bad_payloads(payload: bytes, error: type[CodecError]) -> None:
    with pytest.raises(error) as caught:
        decode_battery_level(payload)
    assert type(caught.value) is error
    assert caught.value.characteristic == "2A19"
    assert caught.value.data == payload
    assert caught.value.reason


@pytest.mark.parametrize("percent", [-1, 101, 255, True, 50.0])
def test_out_of_range_levels_cannot_be_encoded(percent: object) -> None:
    with pytest.raises(EncodeError):
        encode_battery_level(percent)  # type: ignore[arg-type]


@SETTINGS
@given(st.integers(0, 255))
def test_every_byte_decodes_or_is_reserved(byte: int) -> None:
    if byte <= 100:
        assert encode_battery_level(decode_battery_level(bytes([byte]))) == bytes([byte])
    else:
        with pytest.raises(ReservedValueError):
            decode_battery_level(bytes([byte]))


@SETTINGS
@given(st.integers(0, 100))
def test_decode_encode_round_trip(percent: int) -> None:
    assert decode_battery_level(encode_battery_level(percent)) == percent
