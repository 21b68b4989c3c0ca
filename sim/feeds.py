"""Turn wearer stories into the GATT notification bytes a real strap or CGM would send.

A strap notifies Heart Rate Measurement (0x2A37) once a second with the RR intervals of the beats that ended in
that second (1/1024 s ticks, as the Heart Rate Service specifies); a CGM notifies one CGM Measurement (0x2AA7)
record every five minutes with trend, quality and the E2E-CRC. The bytes come from firmware_bridge's encoders,
so the agent decodes exactly what a device would have sent.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement
from firmware_bridge.sfloat import SFloat
from sim.peripheral import SimWorld, cgm_sensor, heart_rate_strap
from sim.player import FeedEvent
from sim.stories import GlucoseTrace, HeartTrace, WearerStory

RR_TICKS_PER_S = 1024
# A 2A37 notification holds at most 9 RR intervals with a uint8 value in a 23-byte ATT MTU.
MAX_RR_PER_NOTIFICATION = 9


@dataclass(frozen=True)
class WearerDevices:
    wearer: str
    strap: str | None
    cgm: str | None


def heart_notifications(address: str, trace: HeartTrace) -> Iterator[FeedEvent]:
    """One 2A37 notification per second, carrying the beats that ended during that second."""
    if len(trace.beat_end) == 0:
        return
    first = math.floor(float(trace.beat_end[0]))
    last = math.ceil(float(trace.beat_end[-1]))
    seconds = np.arange(first + 1, last + 1, dtype=np.float64)
    # beats[i0:i1] end in (s-1, s]
    bounds = np.searchsorted(trace.beat_end, seconds, side="right")
    prev = int(np.searchsorted(trace.beat_end, float(first), side="right"))
    last_rr = float(trace.rr_s[0])
    for s, i1 in zip(seconds, bounds, strict=True):
        rr = trace.rr_s[prev : int(i1)]
        prev = int(i1)
        if len(rr):
            last_rr = float(rr[-1])
        mean_rr = float(np.mean(rr)) if len(rr) else last_rr
        ticks = tuple(round(float(x) * RR_TICKS_PER_S) for x in rr[-MAX_RR_PER_NOTIFICATION:])
        m = HeartRateMeasurement(
            hr_bpm=round(60.0 / mean_rr),
            sensor_contact=SensorContact.DETECTED,
            rr_intervals=ticks or None,
        )
        yield FeedEvent(float(s), address, "2A37", encode_heart_rate_measurement(m))


def glucose_notifications(address: str, trace: GlucoseTrace, session_start: float) -> Iterator[FeedEvent]:
    """One 2AA7 record per CGM reading, with the trend over the last five minutes and the E2E-CRC."""
    prev: float | None = None
    for t, value in zip(trace.t, trace.mg_dl, strict=True):
        trend = 0.0 if prev is None else round((float(value) - prev) / 5.0, 1)
        prev = float(value)
        record = CgmMeasurementRecord(
            glucose=SFloat.from_value(round(float(value), 1)),
            time_offset_min=int((float(t) - session_start) // 60),
            trend=SFloat.from_value(trend),
            quality=SFloat.from_value(100),
            has_crc=True,
        )
        yield FeedEvent(float(t), address, "2AA7", encode_cgm_measurement([record]))


def build_world(stories: Sequence[WearerStory]) -> tuple[SimWorld, list[WearerDevices]]:
    """A virtual strap and CGM per wearer, at addresses C0:FF:EE:00:<wearer>:01 and :02."""
    world = SimWorld()
    devices = []
    for i, story in enumerate(stories):
        strap = cgm = None
        if story.heart is not None:
            strap = f"C0:FF:EE:00:{i:02X}:01"
            world.add(heart_rate_strap(strap, f"HRM-{i}", battery=story.battery_pct))
        if story.glucose is not None:
            cgm = f"C0:FF:EE:00:{i:02X}:02"
            world.add(cgm_sensor(cgm, f"CGM-{i}", battery=story.battery_pct))
        devices.append(WearerDevices(story.wearer, strap, cgm))
    return world, devices


def story_feed(
    stories: Sequence[WearerStory], devices: Sequence[WearerDevices], session_start: float
) -> Iterator[FeedEvent]:
    """Every notification of every wearer, in time order."""
    streams: list[Iterator[FeedEvent]] = []
    for story, dev in zip(stories, devices, strict=True):
        if story.heart is not None and dev.strap is not None:
            streams.append(heart_notifications(dev.strap, story.heart))
        if story.glucose is not None and dev.cgm is not None:
            streams.append(glucose_notifications(dev.cgm, story.glucose, session_start))
    return heapq.merge(*streams, key=lambda e: e.t)
