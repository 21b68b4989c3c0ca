"""CGM Session Start Time (0x2AAA) and CGM Session Run Time (0x2AAB), Continuous Glucose Monitoring Service 1.0.2.

Session Start Time (read by the collector, and written by it to set the sensor's clock):

    Session Start Time  Date Time (7 octets)
        Year     uint16  1582-9999, 0 = not known
        Month    uint8   1-12, 0 = not known
        Day      uint8   1-31, 0 = not known
        Hours    uint8   0-23
        Minutes  uint8   0-59
        Seconds  uint8   0-59
    Time Zone           sint8   offset from UTC in 15-minute steps, -48 (UTC-12:00) to +56 (UTC+14:00);
                                -128 = not known
    DST Offset          uint8   0 standard time, 2 +0.5 h, 4 +1 h, 8 +2 h; 255 = not known
    E2E-CRC             uint16  only when the sensor supports E2E-CRC

The Date Time is local time: UTC plus Time Zone plus DST Offset.

Session Run Time:

    Session Run Time    uint16  expected run time of the session, in hours
    E2E-CRC             uint16  only when the sensor supports E2E-CRC

Both have fixed-size fields, so the length says whether the E2E-CRC is present: 9 or 11 octets for the start
time, 2 or 4 for the run time (see ``crc.read_optional_crc``); a present CRC must match.

Every value outside the ranges above is reserved and raises ``ReservedValueError`` (a receiver treats a
reserved value as erroneous), and so does a date that does not exist when year, month and day are all known,
such as 2023-02-30 or 2023-02-29: a session clock anchored on it would place every reading wrongly. With the
year unknown, 29 February is accepted.
"""

from __future__ import annotations

import calendar
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

from firmware_bridge.crc import CRC_STRUCT, e2e_crc, read_optional_crc
from firmware_bridge.errors import BytesLike, EncodeError, ReservedValueError

START_TIME_CHARACTERISTIC = "2AAA"
RUN_TIME_CHARACTERISTIC = "2AAB"

_START_TIME = struct.Struct("<HBBBBBbB")  # Year, Month, Day, Hours, Minutes, Seconds, Time Zone, DST Offset
_RUN_TIME = struct.Struct("<H")

YEAR_UNKNOWN = 0
MIN_YEAR, MAX_YEAR = 1582, 9999
TIME_ZONE_UNKNOWN = -128
MIN_TIME_ZONE, MAX_TIME_ZONE = -48, 56
TIME_ZONE_STEP_MIN = 15


class DstOffset(IntEnum):
    """DST Offset codes."""

    STANDARD_TIME = 0
    HALF_AN_HOUR_DAYLIGHT_TIME = 2
    DAYLIGHT_TIME = 4
    DOUBLE_DAYLIGHT_TIME = 8
    UNKNOWN = 255


_DST_MINUTES = {
    DstOffset.STANDARD_TIME: 0,
    DstOffset.HALF_AN_HOUR_DAYLIGHT_TIME: 30,
    DstOffset.DAYLIGHT_TIME: 60,
    DstOffset.DOUBLE_DAYLIGHT_TIME: 120,
}
_DST_CODES = frozenset(int(member) for member in DstOffset)

# Field order of the Date Time and the offset of each field in the payload.
_FIELD_OFFSETS = {"year": 0, "month": 2, "day": 3, "hours": 4, "minutes": 5, "seconds": 6, "time_zone": 7, "dst": 8}


def _start_time_problem(
    year: int, month: int, day: int, hours: int, minutes: int, seconds: int, time_zone: int, dst: int
) -> tuple[str, str] | None:
    """The first field that is out of range, and why; ``None`` when all are valid."""
    if year != YEAR_UNKNOWN and not MIN_YEAR <= year <= MAX_YEAR:
        return "year", f"year {year} is reserved (valid: {MIN_YEAR}-{MAX_YEAR}, 0 = not known)"
    if not 0 <= month <= 12:
        return "month", f"month {month} is reserved (valid: 1-12, 0 = not known)"
    if not 0 <= day <= 31:
        return "day", f"day {day} is reserved (valid: 1-31, 0 = not known)"
    if month and day:
        # With the year unknown, take a leap year: 29 February may exist.
        last = calendar.monthrange(year if year != YEAR_UNKNOWN else 2000, month)[1]
        if day > last:
            return "day", f"{year:04d}-{month:02d}-{day:02d} is not a date"
    if not 0 <= hours <= 23:
        return "hours", f"hours {hours} is reserved (valid: 0-23)"
    if not 0 <= minutes <= 59:
        return "minutes", f"minutes {minutes} is reserved (valid: 0-59)"
    if not 0 <= seconds <= 59:
        return "seconds", f"seconds {seconds} is reserved (valid: 0-59)"
    if time_zone != TIME_ZONE_UNKNOWN and not MIN_TIME_ZONE <= time_zone <= MAX_TIME_ZONE:
        return "time_zone", f"time zone {time_zone} is reserved (valid: -48..56, -128 = not known)"
    if dst not in _DST_CODES:
        return "dst", f"DST offset {dst} is reserved (valid: 0, 2, 4, 8, 255 = not known)"
    return None


@dataclass(frozen=True)
class CgmSessionStartTime:
    """A CGM Session Start Time, field by field as on the wire.

    ``year``, ``month`` and ``day`` are 0 when not known. ``time_zone`` is in 15-minute steps
    (``TIME_ZONE_UNKNOWN`` = -128 when not known). ``has_crc``: whether it carried (or will be encoded with)
    an E2E-CRC.
    """

    year: int
    month: int
    day: int
    hours: int
    minutes: int
    seconds: int
    time_zone: int = TIME_ZONE_UNKNOWN
    dst_offset: DstOffset = DstOffset.UNKNOWN
    has_crc: bool = False

    def __post_init__(self) -> None:
        values = (self.year, self.month, self.day, self.hours, self.minutes, self.seconds, self.time_zone)
        if any(type(value) is not int for value in values):
            raise EncodeError(START_TIME_CHARACTERISTIC, b"", "date, time and time zone fields must be ints")
        dst = self.dst_offset
        if isinstance(dst, bool) or not isinstance(dst, int):
            raise EncodeError(START_TIME_CHARACTERISTIC, b"", f"dst_offset {dst!r} is not a DstOffset")
        problem = _start_time_problem(*values, dst)
        if problem is not None:
            raise EncodeError(START_TIME_CHARACTERISTIC, b"", problem[1])
        object.__setattr__(self, "dst_offset", DstOffset(int(dst)))
        if type(self.has_crc) is not bool:
            raise EncodeError(START_TIME_CHARACTERISTIC, b"", "has_crc must be a bool")

    @classmethod
    def from_datetime(cls, moment: datetime, *, has_crc: bool = False) -> CgmSessionStartTime:
        """The start time for ``moment`` (seconds truncated).

        An aware ``moment`` gives Time Zone and DST Offset from ``utcoffset()`` and ``dst()`` (``dst()`` of
        ``None`` counts as standard time); a naive one leaves both not known.
        """
        time_zone, dst = TIME_ZONE_UNKNOWN, DstOffset.UNKNOWN
        offset = moment.utcoffset()
        if offset is not None:
            dst_delta = moment.dst() or timedelta(0)
            dst_minutes, rest = divmod(dst_delta, timedelta(minutes=1))
            codes = {minutes: code for code, minutes in _DST_MINUTES.items()}
            if rest or dst_minutes not in codes:
                raise EncodeError(START_TIME_CHARACTERISTIC, b"", f"DST offset {dst_delta} is not 0, 30, 60 or 120 min")
            dst = codes[dst_minutes]
            standard, rest = divmod(offset - dst_delta, timedelta(minutes=TIME_ZONE_STEP_MIN))
            if rest:
                raise EncodeError(START_TIME_CHARACTERISTIC, b"", f"UTC offset {offset} is not in 15-minute steps")
            time_zone = standard
        return cls(
            moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, time_zone, dst, has_crc
        )

    @property
    def time_zone_min(self) -> int | None:
        """The standard-time offset from UTC in minutes; ``None`` when not known."""
        return None if self.time_zone == TIME_ZONE_UNKNOWN else self.time_zone * TIME_ZONE_STEP_MIN

    @property
    def dst_offset_min(self) -> int | None:
        """The daylight-saving offset in minutes; ``None`` when not known."""
        return _DST_MINUTES.get(self.dst_offset)

    @property
    def utc_offset_min(self) -> int | None:
        """Local time minus UTC in minutes (Time Zone + DST Offset); ``None`` unless both are known."""
        zone, dst = self.time_zone_min, self.dst_offset_min
        return None if zone is None or dst is None else zone + dst

    def to_datetime(self) -> datetime | None:
        """The local start time: aware when the UTC offset is known, naive otherwise; ``None`` when the year,
        month or day is not known."""
        if not (self.year and self.month and self.day):
            return None
        offset = self.utc_offset_min
        tz = None if offset is None else timezone(timedelta(minutes=offset))
        return datetime(self.year, self.month, self.day, self.hours, self.minutes, self.seconds, tzinfo=tz)


def decode_cgm_session_start_time(data: BytesLike, *, require_crc: bool = False) -> CgmSessionStartTime:
    """Decode a CGM Session Start Time; with ``require_crc`` one without an E2E-CRC is ``CrcMissingError``."""
    data = bytes(data)
    has_crc = read_optional_crc(START_TIME_CHARACTERISTIC, data, _START_TIME.size, require_crc=require_crc)
    fields = _START_TIME.unpack_from(data)
    problem = _start_time_problem(*fields)
    if problem is not None:
        name, reason = problem
        raise ReservedValueError(START_TIME_CHARACTERISTIC, data, reason, offset=_FIELD_OFFSETS[name])
    year, month, day, hours, minutes, seconds, time_zone, dst = fields
    return CgmSessionStartTime(year, month, day, hours, minutes, seconds, time_zone, DstOffset(dst), has_crc)


def encode_cgm_session_start_time(start: CgmSessionStartTime) -> bytes:
    """Encode a CGM Session Start Time, with an E2E-CRC when ``start.has_crc``."""
    encoded = _START_TIME.pack(
        start.year,
        start.month,
        start.day,
        start.hours,
        start.minutes,
        start.seconds,
        start.time_zone,
        int(start.dst_offset),
    )
    return encoded + CRC_STRUCT.pack(e2e_crc(encoded)) if start.has_crc else encoded


@dataclass(frozen=True)
class CgmSessionRunTime:
    """A CGM Session Run Time: the session's expected length in hours."""

    hours: int
    has_crc: bool = False

    def __post_init__(self) -> None:
        if type(self.hours) is not int or not 0 <= self.hours <= 0xFFFF:
            raise EncodeError(RUN_TIME_CHARACTERISTIC, b"", f"hours {self.hours!r} not uint16")
        if type(self.has_crc) is not bool:
            raise EncodeError(RUN_TIME_CHARACTERISTIC, b"", "has_crc must be a bool")


def decode_cgm_session_run_time(data: BytesLike, *, require_crc: bool = False) -> CgmSessionRunTime:
    """Decode a CGM Session Run Time; with ``require_crc`` one without an E2E-CRC is ``CrcMissingError``."""
    data = bytes(data)
    has_crc = read_optional_crc(RUN_TIME_CHARACTERISTIC, data, _RUN_TIME.size, require_crc=require_crc)
    (hours,) = _RUN_TIME.unpack_from(data)
    return CgmSessionRunTime(hours, has_crc)


def encode_cgm_session_run_time(run_time: CgmSessionRunTime) -> bytes:
    """Encode a CGM Session Run Time, with an E2E-CRC when ``run_time.has_crc``."""
    encoded = _RUN_TIME.pack(run_time.hours)
    return encoded + CRC_STRUCT.pack(e2e_crc(encoded)) if run_time.has_crc else encoded
