"""Hypothesis strategies for the firmware bridge: model values, and valid wire payloads built from the spec.

The payload strategies assemble bytes field by field from the specifications' layouts, independently of
the encoders, so ``encode(decode(payload)) == payload`` tests both directions.
"""

from __future__ import annotations

import calendar
import struct

from hypothesis import settings
from hypothesis import strategies as st

from firmware_bridge.cgm import CalTempOctet, CgmMeasurementRecord, StatusOctet, WarningOctet
from firmware_bridge.crc import e2e_crc
from firmware_bridge.heart_rate import HeartRateMeasurement, HeartRateValueFormat, SensorContact
from firmware_bridge.sfloat import Float32, SFloat

SETTINGS = settings(deadline=None, max_examples=300)

SFLOAT_RESERVED_RAW = 0x0801
FLOAT_RESERVED_RAW = 0x00800001

sfloat_raws = st.integers(0, 0xFFFF).filter(lambda raw: raw != SFLOAT_RESERVED_RAW)
float_raws = st.integers(0, 0xFFFFFFFF).filter(lambda raw: raw != FLOAT_RESERVED_RAW)
sfloats = sfloat_raws.map(SFloat.from_raw)
float32s = float_raws.map(Float32.from_raw)


@st.composite
def heart_rate_measurements(draw: st.DrawFn) -> HeartRateMeasurement:
    value_format = draw(st.sampled_from(HeartRateValueFormat))
    limit = 0xFF if value_format is HeartRateValueFormat.UINT8 else 0xFFFF
    contact = draw(st.sampled_from(SensorContact))
    ignored = draw(st.integers(0, 7)) << 5
    if contact is SensorContact.UNSUPPORTED and draw(st.booleans()):
        ignored |= 0x02
    rr = draw(st.none() | st.lists(st.integers(0, 0xFFFF), max_size=40).map(tuple))
    return HeartRateMeasurement(
        hr_bpm=draw(st.integers(0, limit)),
        value_format=value_format,
        sensor_contact=contact,
        energy_expended_kj=draw(st.none() | st.integers(0, 0xFFFF)),
        rr_intervals=rr,
        ignored_flag_bits=ignored,
    )


@st.composite
def heart_rate_payloads(draw: st.DrawFn) -> bytes:
    """Any valid Heart Rate Measurement: every flags byte, fields as the flags announce."""
    flags = draw(st.integers(0, 0xFF))
    payload = bytes([flags])
    payload += draw(st.binary(min_size=2, max_size=2) if flags & 0x01 else st.binary(min_size=1, max_size=1))
    if flags & 0x08:
        payload += draw(st.binary(min_size=2, max_size=2))
    if flags & 0x10:
        count = draw(st.integers(0, 40))
        payload += draw(st.binary(min_size=2 * count, max_size=2 * count))
    return payload


@st.composite
def cgm_records(draw: st.DrawFn) -> CgmMeasurementRecord:
    return CgmMeasurementRecord(
        glucose=draw(sfloats),
        time_offset_min=draw(st.integers(0, 0xFFFF)),
        status=draw(st.none() | st.integers(0, 0xFF).map(StatusOctet)),
        cal_temp=draw(st.none() | st.integers(0, 0xFF).map(CalTempOctet)),
        warning=draw(st.none() | st.integers(0, 0xFF).map(WarningOctet)),
        trend=draw(st.none() | sfloats),
        quality=draw(st.none() | sfloats),
        has_crc=draw(st.booleans()),
        reserved_flag_bits=draw(st.integers(0, 7)) << 2,
    )


@st.composite
def cgm_record_payloads(draw: st.DrawFn, *, crc: bool | None = None) -> bytes:
    """One valid CGM Measurement record laid out per CGMS 3.1 (Size first, E2E-CRC last if any)."""
    flags = draw(st.integers(0, 0xFF))
    body = struct.pack("<BHH", flags, draw(sfloat_raws), draw(st.integers(0, 0xFFFF)))
    for bit in (0x80, 0x40, 0x20):  # Status, Cal/Temp, Warning octets
        if flags & bit:
            body += bytes([draw(st.integers(0, 0xFF))])
    for bit in (0x01, 0x02):  # Trend, Quality
        if flags & bit:
            body += struct.pack("<H", draw(sfloat_raws))
    with_crc = draw(st.booleans()) if crc is None else crc
    size = 1 + len(body) + (2 if with_crc else 0)
    record = bytes([size]) + body
    if with_crc:
        record += struct.pack("<H", e2e_crc(record))
    return record


def cgm_payloads(*, crc: bool | None = None) -> st.SearchStrategy[bytes]:
    return st.lists(cgm_record_payloads(crc=crc), min_size=1, max_size=4).map(b"".join)


# ---- Body Sensor Location, Device Information, CGM Feature / Status / Session ---------------------------

BODY_SENSOR_LOCATION_CODES = range(0, 7)
CGM_TYPE_CODES = range(1, 11)
CGM_SAMPLE_LOCATION_CODES = (1, 2, 3, 4, 5, 15)
DST_CODES = (0, 2, 4, 8, 255)


def _with_optional_crc(draw: st.DrawFn, body: bytes, crc: bool | None) -> bytes:
    with_crc = draw(st.booleans()) if crc is None else crc
    return body + struct.pack("<H", e2e_crc(body)) if with_crc else body


@st.composite
def cgm_feature_payloads(draw: st.DrawFn) -> bytes:
    """CGM Feature laid out per CGMS: 24-bit features, Type | Location << 4, then the CRC or 0xFFFF."""
    features = draw(st.integers(0, 0xFFFFFF))
    type_location = draw(st.sampled_from(CGM_TYPE_CODES)) | draw(st.sampled_from(CGM_SAMPLE_LOCATION_CODES)) << 4
    body = features.to_bytes(3, "little") + bytes([type_location])
    crc = e2e_crc(body) if features & 0x1000 else 0xFFFF
    return body + struct.pack("<H", crc)


@st.composite
def cgm_status_payloads(draw: st.DrawFn, *, crc: bool | None = None) -> bytes:
    body = struct.pack("<H", draw(st.integers(0, 0xFFFF))) + draw(st.integers(0, 0xFFFFFF)).to_bytes(3, "little")
    return _with_optional_crc(draw, body, crc)


@st.composite
def session_start_time_fields(draw: st.DrawFn) -> tuple[int, int, int, int, int, int, int, int]:
    """Valid Date Time, Time Zone and DST Offset fields, unknown values included."""
    year = draw(st.sampled_from((0, 1582, 9999)) | st.integers(1582, 9999))
    month = draw(st.integers(0, 12))
    if month and year:
        last = calendar.monthrange(year, month)[1]
    elif month:
        last = calendar.monthrange(2000, month)[1]
    else:
        last = 31
    day = draw(st.integers(0, last))
    return (
        year,
        month,
        day,
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(st.sampled_from((-128, -48, 0, 56)) | st.integers(-48, 56)),
        draw(st.sampled_from(DST_CODES)),
    )


@st.composite
def session_start_time_payloads(draw: st.DrawFn, *, crc: bool | None = None) -> bytes:
    body = struct.pack("<HBBBBBbB", *draw(session_start_time_fields()))
    return _with_optional_crc(draw, body, crc)


@st.composite
def session_run_time_payloads(draw: st.DrawFn, *, crc: bool | None = None) -> bytes:
    return _with_optional_crc(draw, struct.pack("<H", draw(st.integers(0, 0xFFFF))), crc)
