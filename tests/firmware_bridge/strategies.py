"""Hypothesis strategies for the firmware bridge: model values, and valid wire payloads built from the spec.

The payload strategies assemble bytes field by field from the specifications' layouts, independently of
the encoders, so ``encode(decode(payload)) == payload`` tests both directions.
"""

from __future__ import annotations

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
