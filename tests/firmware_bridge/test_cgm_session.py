"""CGM Session Start Time (0x2AAA) and Session Run Time (0x2AAB)."""

from __future__ import annotations

import struct
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.cgm_session import (
    TIME_ZONE_UNKNOWN,
    CgmSessionRunTime,
    CgmSessionStartTime,
    DstOffset,
    decode_cgm_session_run_time,
    decode_cgm_session_start_time,
    encode_cgm_session_run_time,
    encode_cgm_session_start_time,
)
from firmware_bridge.crc import e2e_crc
from firmware_bridge.errors import (
    CodecError,
    CrcMismatchError,
    CrcMissingError,
    EncodeError,
    OverlongError,
    ReservedValueError,
    TruncatedError,
)

from .strategies import (
    SETTINGS,
    session_run_time_payloads,
    session_start_time_fields,
    session_start_time_payloads,
)

# Nordic Android-BLE-Common-Library CGMSessionStartTimeDataCallbackTest / CGMSessionRunTimeDataCallbackTest.
NORDIC_START = bytes.fromhex("e20704180d08180804e0c2")  # 2018-04-24 13:08:24, zone +8 (x 15 min), DST +1 h, CRC
NORDIC_START_NO_YEAR = bytes.fromhex("000004180d08180802")  # year unknown, DST +0.5 h, no CRC
NORDIC_RUN_WITH_CRC = bytes.fromhex("020008c3")
NORDIC_RUN = bytes.fromhex("0200")


def _start(*fields: int, crc: bool = False) -> bytes:
    body = struct.pack("<HBBBBBbB", *fields)
    return body + struct.pack("<H", e2e_crc(body)) if crc else body


def test_nordic_start_time() -> None:
    start = decode_cgm_session_start_time(NORDIC_START)
    assert start == CgmSessionStartTime(2018, 4, 24, 13, 8, 24, 8, DstOffset.DAYLIGHT_TIME, has_crc=True)
    assert (start.time_zone_min, start.dst_offset_min, start.utc_offset_min) == (120, 60, 180)
    moment = start.to_datetime()
    assert moment == datetime(2018, 4, 24, 13, 8, 24, tzinfo=timezone(timedelta(hours=3)))
    assert moment is not None
    assert moment.isoformat() == "2018-04-24T13:08:24+03:00"
    assert encode_cgm_session_start_time(start) == NORDIC_START


def test_unknown_year() -> None:
    start = decode_cgm_session_start_time(NORDIC_START_NO_YEAR)
    assert (start.year, start.month, start.day, start.has_crc) == (0, 4, 24, False)
    assert start.dst_offset is DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME
    assert start.to_datetime() is None
    assert encode_cgm_session_start_time(start) == NORDIC_START_NO_YEAR


def test_unknown_time_zone_and_dst_give_a_naive_time() -> None:
    start = decode_cgm_session_start_time(_start(2024, 2, 29, 23, 59, 59, -128, 255))
    assert (start.time_zone_min, start.dst_offset_min, start.utc_offset_min) == (None, None, None)
    assert start.to_datetime() == datetime(2024, 2, 29, 23, 59, 59)
    partly = decode_cgm_session_start_time(_start(2024, 2, 29, 23, 59, 59, 4, 255))
    assert (partly.time_zone_min, partly.utc_offset_min) == (60, None)


@pytest.mark.parametrize(
    ("fields", "offset"),
    [
        ((1581, 1, 1, 0, 0, 0, 0, 0), 0),
        ((10000, 1, 1, 0, 0, 0, 0, 0), 0),
        ((2024, 13, 1, 0, 0, 0, 0, 0), 2),
        ((2024, 1, 32, 0, 0, 0, 0, 0), 3),
        ((2023, 2, 29, 0, 0, 0, 0, 0), 3),  # not a leap year
        ((0, 2, 30, 0, 0, 0, 0, 0), 3),  # no year has 30 February
        ((0, 4, 31, 0, 0, 0, 0, 0), 3),
        ((2024, 1, 1, 24, 0, 0, 0, 0), 4),
        ((2024, 1, 1, 0, 60, 0, 0, 0), 5),
        ((2024, 1, 1, 0, 0, 60, 0, 0), 6),
        ((2024, 1, 1, 0, 0, 0, -49, 0), 7),
        ((2024, 1, 1, 0, 0, 0, 57, 0), 7),
        ((2024, 1, 1, 0, 0, 0, -127, 0), 7),
        ((2024, 1, 1, 0, 0, 0, 0, 1), 8),
        ((2024, 1, 1, 0, 0, 0, 0, 254), 8),
    ],
)
def test_reserved_values(fields: tuple[int, ...], offset: int) -> None:
    for crc in (False, True):
        payload = _start(*fields, crc=crc)
        with pytest.raises(ReservedValueError) as caught:
            decode_cgm_session_start_time(payload)
        assert (caught.value.characteristic, caught.value.data, caught.value.offset) == ("2AAA", payload, offset)
        with pytest.raises(EncodeError):
            CgmSessionStartTime(*fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("fields", [(0, 2, 29, 0, 0, 0, 0, 0), (2000, 2, 29, 0, 0, 0, 0, 0), (0, 0, 31, 0, 0, 0, 0, 0)])
def test_dates_that_may_exist(fields: tuple[int, ...]) -> None:
    payload = _start(*fields)
    assert encode_cgm_session_start_time(decode_cgm_session_start_time(payload)) == payload


def _check(decode: object, payload: bytes, error: type[CodecError], offset: int, **kwargs: bool) -> CodecError:
    assert callable(decode)
    with pytest.raises(error) as caught:
        decode(payload, **kwargs)
    assert type(caught.value) is error
    assert (caught.value.data, caught.value.offset) == (payload, offset)
    return caught.value


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        (NORDIC_START[:8], TruncatedError, 8),
        (NORDIC_START[:10], TruncatedError, 9),  # Nordic's onInvalidDataReceived
        (NORDIC_START + b"\x00", OverlongError, 11),
        (bytes.fromhex("e20704180d08180804e0c3"), CrcMismatchError, 9),
    ],
)
def test_bad_start_times(payload: bytes, error: type[CodecError], offset: int) -> None:
    assert _check(decode_cgm_session_start_time, payload, error, offset).characteristic == "2AAA"


def test_start_time_crc_required() -> None:
    _check(decode_cgm_session_start_time, NORDIC_START_NO_YEAR, CrcMissingError, 9, require_crc=True)


def test_from_datetime() -> None:
    summer = datetime(2024, 7, 1, 22, 30, 15, 999_999, tzinfo=ZoneInfo("Europe/Berlin"))
    start = CgmSessionStartTime.from_datetime(summer, has_crc=True)
    assert start == CgmSessionStartTime(2024, 7, 1, 22, 30, 15, 4, DstOffset.DAYLIGHT_TIME, has_crc=True)
    assert start.to_datetime() == summer.replace(microsecond=0)
    india = CgmSessionStartTime.from_datetime(datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))))
    assert (india.time_zone, india.dst_offset) == (22, DstOffset.STANDARD_TIME)
    naive = CgmSessionStartTime.from_datetime(datetime(2024, 1, 1, 8))
    assert (naive.time_zone, naive.dst_offset) == (TIME_ZONE_UNKNOWN, DstOffset.UNKNOWN)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 1, 1, tzinfo=timezone(timedelta(minutes=10))),  # not in 15-minute steps
        datetime(1500, 1, 1),  # before the Gregorian calendar's year range
    ],
)
def test_from_datetime_refuses_what_the_wire_cannot_hold(moment: datetime) -> None:
    with pytest.raises(EncodeError):
        CgmSessionStartTime.from_datetime(moment)


@SETTINGS
@given(session_start_time_payloads())
def test_start_time_decode_encode_round_trip(payload: bytes) -> None:
    assert encode_cgm_session_start_time(decode_cgm_session_start_time(payload)) == payload


@SETTINGS
@given(session_start_time_fields(), st.booleans())
def test_start_time_encode_decode_round_trip(fields: tuple[int, ...], has_crc: bool) -> None:
    *date_time, dst = fields
    start = CgmSessionStartTime(*date_time, DstOffset(dst), has_crc)  # type: ignore[arg-type, misc]
    assert decode_cgm_session_start_time(encode_cgm_session_start_time(start)) == start


# ---- Session Run Time ----------------------------------------------------------------------------------


def test_nordic_run_times() -> None:
    assert decode_cgm_session_run_time(NORDIC_RUN_WITH_CRC) == CgmSessionRunTime(2, has_crc=True)
    assert decode_cgm_session_run_time(NORDIC_RUN) == CgmSessionRunTime(2)
    assert encode_cgm_session_run_time(CgmSessionRunTime(2, has_crc=True)) == NORDIC_RUN_WITH_CRC


@pytest.mark.parametrize(
    ("payload", "error", "offset"),
    [
        (b"", TruncatedError, 0),
        (b"\x02", TruncatedError, 1),
        (bytes.fromhex("020001"), TruncatedError, 2),  # Nordic's onInvalidDataReceived
        (NORDIC_RUN_WITH_CRC + b"\x00", OverlongError, 4),
        (bytes.fromhex("020009c3"), CrcMismatchError, 2),
    ],
)
def test_bad_run_times(payload: bytes, error: type[CodecError], offset: int) -> None:
    assert _check(decode_cgm_session_run_time, payload, error, offset).characteristic == "2AAB"


def test_run_time_crc_required() -> None:
    _check(decode_cgm_session_run_time, NORDIC_RUN, CrcMissingError, 2, require_crc=True)


@pytest.mark.parametrize("kwargs", [{"hours": -1}, {"hours": 0x10000}, {"hours": 1.0}, {"hours": 1, "has_crc": None}])
def test_unencodable_run_times(kwargs: dict[str, object]) -> None:
    with pytest.raises(EncodeError):
        CgmSessionRunTime(**kwargs)  # type: ignore[arg-type]


@SETTINGS
@given(session_run_time_payloads())
def test_run_time_decode_encode_round_trip(payload: bytes) -> None:
    assert encode_cgm_session_run_time(decode_cgm_session_run_time(payload)) == payload


@SETTINGS
@given(st.integers(0, 0xFFFF), st.booleans())
def test_run_time_encode_decode_round_trip(hours: int, has_crc: bool) -> None:
    run_time = CgmSessionRunTime(hours, has_crc)
    assert decode_cgm_session_run_time(encode_cgm_session_run_time(run_time), require_crc=has_crc) == run_time
