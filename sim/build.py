"""From a :class:`~sim.scenario.Scenario` to what a replay plays: virtual devices, the time-ordered feed of
everything they send or suffer, the agent configuration that watches them, and the ground truth.

Per wearer ``i`` (0-based), the strap is at ``C0:FF:EE:00:<i>:01`` and the CGM at ``C0:FF:EE:00:<i>:02``.

What a device sends (the bytes come from firmware_bridge's encoders, so the agent decodes what a device would
have sent):

* A strap notifies Heart Rate Measurement (0x2A37) at every whole second with the RR intervals of the beats
  that ended in the second before (1/1024 s ticks; at most 9, the newest, as a 23-byte ATT MTU holds), the
  heart rate as 60 / their mean, and sensor contact "detected"; during contact loss, "not detected", 0 bpm,
  no RR intervals.
* A CGM is a :class:`~sim.cgm_device.CgmDevice`: its session started three days before the scenario; each
  reading is one CGM Measurement (0x2AA7) record with trend, quality and the E2E-CRC, notified at the reading's
  time, kept by the sensor and served again over RACP after a disconnect. ``-inf``/``+inf`` readings are sent
  as the SFLOAT special values (a receiver's "Low"/"High").
* Battery Level (0x2A19) is read at connect and notified at each whole-percent step of a battery fault.

Faults: ``disconnect`` drops the link and stops advertising for its span (a strap's beats then are lost, a
CGM's readings wait in the sensor for the RACP backfill); ``silent`` withholds notifications (a silent CGM
does not measure either, so nothing is backfilled); ``corrupt`` replaces notifications with ill-formed bytes
(``truncate``: one byte short; ``crc``: a CGM record with a wrong E2E-CRC; ``random``: random bytes of the same
length); ``battery`` drains the level linearly; ``contact_loss`` and ``cgm_artifact`` change what the sensor
reports but not the truth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config import AlertPolicy, Config, parse_config
from firmware_bridge.battery import encode_battery_level
from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement
from firmware_bridge.sfloat import SFloat, SpecialValue
from sim import generators, sources
from sim.cgm_device import CgmDevice
from sim.peripheral import SimWorld, heart_rate_strap
from sim.player import Disconnect, Event, FeedEvent, SetAdvertising
from sim.scenario import CgmSpec, Fault, HeartSegment, Scenario, ScenarioError, StrapSpec, WearerSpec
from sim.signals import Beats, Glucose
from sim.truth import (
    TruthEvent,
    battery_truth,
    glucose_truth,
    heart_truth,
    outage_truth,
    rhythm_truth,
    silence_truth,
)

RR_TICKS_PER_S = 1024
MAX_RR_PER_NOTIFICATION = 9
SESSION_LEAD_S = 3 * 86400.0  # the CGM sensor was inserted this long before the scenario starts
_HRV = {
    "sleep": generators.SLEEP_HRV,
    "exercise": generators.EXERCISE_HRV,
}


@dataclass
class WearerPlan:
    """One wearer as built: device addresses, the signals (relative times), and the spans faults act on."""

    spec: WearerSpec
    strap: str | None
    cgm: str | None
    beats: Beats | None = None
    glucose: Glucose | None = None
    exercise: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Built:
    scenario: Scenario
    world: SimWorld
    wearers: list[WearerPlan]
    events: list[Event]
    truth: list[TruthEvent]

    @property
    def devices(self) -> dict[str, dict[str, str]]:
        """wearer -> {"strap": address, "cgm": address} (the roles it has)."""
        out: dict[str, dict[str, str]] = {}
        for w in self.wearers:
            d = {}
            if w.strap:
                d["strap"] = w.strap
            if w.cgm:
                d["cgm"] = w.cgm
            out[w.spec.id] = d
        return out

    def config(self, db: Path, mqtt: dict[str, Any], agent_id: str = "replay", site: str = "sim") -> Config:
        wearers = []
        for w in self.wearers:
            devices = []
            if w.strap:
                devices.append({"kind": "hr_strap", "address": w.strap})
            if w.cgm:
                devices.append({"kind": "cgm", "address": w.cgm})
            wearers.append({"id": w.spec.id, "devices": devices, "thresholds": asdict(w.spec.thresholds)})
        return parse_config({"agent": {"id": agent_id, "site": site, "db": str(db)}, "mqtt": mqtt, "wearers": wearers})


def build(scenario: Scenario, data_root: Path | None = None) -> Built:
    """Realise every wearer's signals, devices, feed and truth. Raises ScenarioError or sources.DataError."""
    root = sources.BUNDLED_DATA if scenario.data == "bundled" else (data_root or sources.default_data_root())
    world = SimWorld()
    plans: list[WearerPlan] = []
    events: list[tuple[float, int, int, Event]] = []
    truth: list[TruthEvent] = []
    t0 = scenario.start
    session_start = t0 - SESSION_LEAD_S
    policy = AlertPolicy()
    for i, spec in enumerate(scenario.wearers):
        plan = WearerPlan(spec, None, None)
        th = spec.thresholds
        if spec.strap is not None:
            plan.strap = f"C0:FF:EE:00:{i:02X}:01"
            world.add(heart_rate_strap(plan.strap, f"HRM-{i}", battery=spec.strap.battery))
            plan.beats, plan.exercise = _heart(spec.strap, scenario, i, root)
            truth += heart_truth(spec.id, plan.beats, scenario.duration_s, th, t0, exercise=plan.exercise)
            truth += rhythm_truth(spec.id, plan.beats, t0)
        if spec.cgm is not None:
            plan.cgm = f"C0:FF:EE:00:{i:02X}:02"
            world.add(CgmDevice(plan.cgm, f"CGM-{i}", session_start=session_start, battery=spec.cgm.battery,
                                e2e_crc=True))  # fmt: skip
            plan.glucose = _glucose(spec.cgm, scenario, i, root)
            truth += glucose_truth(spec.id, plan.glucose, th, t0)
        plans.append(plan)
        seq = 0
        for device, role in ((plan.strap, "strap"), (plan.cgm, "cgm")):
            if device is None:
                continue
            faults = [f for f in spec.faults if f.device == role]
            feed = list(_device_feed(plan, role, device, faults, scenario, session_start, i))
            for e in feed:
                events.append((e.t, 0 if not isinstance(e, FeedEvent) else 1, seq, e))
                seq += 1
            truth += _sensor_truth(plan, role, device, faults, feed, scenario, policy)
    events.sort(key=lambda x: (x[0], x[1], x[2]))
    return Built(scenario, world, plans, [e for *_, e in events], truth)


# -- signals --------------------------------------------------------------------------------------------------


def _rng(scenario: Scenario, wearer: int, part: int) -> np.random.Generator:
    return np.random.default_rng([scenario.seed, wearer, part])


def _heart(spec: StrapSpec, scenario: Scenario, index: int, root: Path) -> tuple[Beats, list[tuple[float, float]]]:
    duration = scenario.duration_s
    parts: list[Beats] = []
    exercise: list[tuple[float, float]] = []
    t = 0.0
    for k, seg in enumerate(spec.segments):
        length = min(seg.minutes * 60.0 if seg.minutes is not None else duration - t, duration - t)
        if length <= 0:
            break
        if seg.source is not None:
            assert seg.record is not None
            beats = sources.rr_segment(root, seg.source, seg.record, seg.from_s, length)
        else:
            beats, ex = _generated_heart(seg, length, _rng(scenario, index, 100 + k))
            exercise += [(a + t, b + t) for a, b in ex]
        parts.append(beats.shifted(t))
        t += length
    return Beats.concat(parts), exercise


def _generated_heart(
    seg: HeartSegment, length: float, rng: np.random.Generator
) -> tuple[Beats, list[tuple[float, float]]]:
    anchors = seg.bpm

    def base(t: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return generators.curve(anchors, t / 3600.0)

    bouts = [(e.at_min * 60, (e.at_min + e.minutes) * 60, float(e.bpm or 140)) for e in seg.episodes
             if e.kind == "exercise"]  # fmt: skip
    spans = [(e.at_min * 60, (e.at_min + e.minutes) * 60, _HRV[e.kind]) for e in seg.episodes
             if e.kind in _HRV]  # fmt: skip
    hrv = generators.Hrv(cv=seg.hrv.cv, lf_hf=seg.hrv.lf_hf, resp_hz=seg.hrv.resp_hz)
    rate = generators.exercise_bpm(base, bouts) if bouts else base
    beats = generators.sinus_beats(length, rate, rng, hrv=hrv, hrv_at=spans)
    for e in seg.episodes:
        if e.kind == "af":
            af = generators.af_beats(e.minutes * 60.0, float(e.bpm or 100), rng)
            beats = generators.splice(beats, af, e.at_min * 60.0, (e.at_min + e.minutes) * 60.0)
    beats = generators.add_ectopics(beats, seg.ectopics_per_hour, rng)
    return beats, [(a, b + 300.0) for a, b, _ in bouts]


def _glucose(spec: CgmSpec, scenario: Scenario, index: int, root: Path) -> Glucose:
    duration = scenario.duration_s
    rng = _rng(scenario, index, 200)
    if spec.source is not None:
        assert spec.subject is not None
        assert spec.start is not None
        return sources.cgm_segment(root, spec.source, spec.subject, spec.start, duration)
    if spec.generator == "anchors":
        return generators.anchored_glucose(duration, spec.points, rng, noise_mg_dl=spec.noise)
    meals = [generators.Meal(m.at_min * 60.0, m.grams, m.bolus_factor) for m in spec.meals]
    try:
        return generators.uva_padova_glucose(
            duration, rng, patient=spec.patient, meals=meals, basal_factor=spec.basal_factor,
            warmup_s=spec.warmup_h * 3600.0, sensor=spec.sensor,
        )  # fmt: skip
    except ValueError as exc:
        raise ScenarioError(scenario.source, f"wearer {index} cgm.patient", str(exc)) from exc


# -- the feed -------------------------------------------------------------------------------------------------


def _spans(faults: Iterable[Fault], kind: str, duration: float) -> list[tuple[float, float]]:
    out = []
    for f in faults:
        if f.kind == kind:
            a = f.at_min * 60.0
            b = duration if f.minutes is None else min(duration, a + f.minutes * 60.0)
            if a < duration:
                out.append((a, b))
    return out


def _inside(t: npt.NDArray[Any], spans: list[tuple[float, float]]) -> npt.NDArray[Any]:
    hit = np.zeros(len(t), dtype=bool)
    for a, b in spans:
        hit |= (t >= a) & (t < b)
    return hit


def _device_feed(
    plan: WearerPlan, role: str, address: str, faults: list[Fault], scenario: Scenario, session_start: float,
    index: int,
) -> Iterator[Event]:  # fmt: skip
    t0, duration = scenario.start, scenario.duration_s
    silent = _spans(faults, "silent", duration)
    corrupt_at = _corrupt_times(faults, duration)
    rng = _rng(scenario, index, 300 if role == "strap" else 301)
    if role == "strap":
        assert plan.beats is not None
        contact_loss = _spans(faults, "contact_loss", duration)
        notes = _strap_notifications(plan.beats, duration, contact_loss)
        uuid = "2A37"
    else:
        assert plan.glucose is not None
        g = plan.glucose
        sensor = g.sensor.copy()
        for f in faults:
            if f.kind == "cgm_artifact" and f.mg_dl is not None:
                sensor[_inside(g.t, _spans([f], "cgm_artifact", duration))] = f.mg_dl
        notes = _cgm_notifications(Glucose(g.t, sensor, g.true), t0, session_start)
        uuid = "2AA7"
    controls: list[Event] = []
    for a, b in _spans(faults, "disconnect", duration):
        controls += [Disconnect(t0 + a, address), SetAdvertising(t0 + a, address, False)]
        if b < duration:
            controls.append(SetAdvertising(t0 + b, address, True))
    levels = _battery_steps(faults, plan, role, duration)
    battery = [FeedEvent(t0 + t, address, "2A19", encode_battery_level(pct)) for t, pct in levels[1:]]
    feed: list[Event] = []
    ci = 0
    for rel, data, kind in notes:
        if any(a <= rel < b for a, b in silent):
            continue
        if ci < len(corrupt_at) and rel >= corrupt_at[ci][0]:
            mode = corrupt_at[ci][1]
            while ci < len(corrupt_at) and rel >= corrupt_at[ci][0]:
                ci += 1
            data = _corrupt(data, mode, kind, rng)
        feed.append(FeedEvent(t0 + rel, address, uuid, data))
    merged = sorted([*controls, *battery, *feed], key=lambda e: (e.t, isinstance(e, FeedEvent)))
    yield from merged


def _strap_notifications(
    beats: Beats, duration: float, contact_loss: list[tuple[float, float]]
) -> Iterator[tuple[float, bytes, str]]:
    seconds, bpm = beats.hr_per_second(duration)
    hi = np.searchsorted(beats.t, seconds, side="right").tolist()
    lo = np.searchsorted(beats.t, seconds - 1.0, side="right").tolist()
    ticks = np.minimum(np.round(beats.rr * RR_TICKS_PER_S), 0xFFFF).astype(np.int64).tolist()
    rate = np.nan_to_num(np.minimum(np.round(bpm), 255), nan=0.0).astype(np.int64).tolist()
    lost = _inside(seconds, contact_loss).tolist()
    first = float(beats.t[0]) if len(beats) else math.inf
    off_skin = HeartRateMeasurement(hr_bpm=0, sensor_contact=SensorContact.NOT_DETECTED)
    no_contact = encode_heart_rate_measurement(off_skin)
    for s, i0, i1, hr, off in zip(seconds.tolist(), lo, hi, rate, lost, strict=True):
        if off:
            yield s, no_contact, "hr"
            continue
        if s < first:
            continue  # no beat yet: a strap sends nothing before it has a rate
        rr = tuple(ticks[max(i0, i1 - MAX_RR_PER_NOTIFICATION) : i1])
        m = HeartRateMeasurement(hr_bpm=hr, sensor_contact=SensorContact.DETECTED, rr_intervals=rr or None)
        yield s, encode_heart_rate_measurement(m), "hr"


def _sfloat(value: float) -> SFloat:
    if math.isinf(value):
        return SFloat.from_special(SpecialValue.POSITIVE_INFINITY if value > 0 else SpecialValue.NEGATIVE_INFINITY)
    return SFloat.from_value(round(float(value), 1))


def _cgm_notifications(g: Glucose, t0: float, session_start: float) -> Iterator[tuple[float, bytes, str]]:
    prev: tuple[float, float] | None = None
    for rel, value in zip(g.t.tolist(), g.sensor.tolist(), strict=True):
        trend = None
        if prev is not None and math.isfinite(value) and math.isfinite(prev[1]) and rel > prev[0]:
            trend = _sfloat(round((value - prev[1]) / ((rel - prev[0]) / 60.0), 1))
        prev = (rel, value)
        record = CgmMeasurementRecord(
            glucose=_sfloat(value),
            time_offset_min=int((t0 + rel - session_start) // 60),
            trend=trend,
            quality=SFloat.from_value(100),
            has_crc=True,
        )
        yield rel, encode_cgm_measurement([record]), "cgm"


def _corrupt_times(faults: list[Fault], duration: float) -> list[tuple[float, str]]:
    out = []
    for f in faults:
        if f.kind == "corrupt":
            for k in range(f.count):
                t = f.at_min * 60.0 + k * f.every_s
                if t < duration:
                    out.append((t, f.mode))
    return sorted(out)


def _corrupt(data: bytes, mode: str, kind: str, rng: np.random.Generator) -> bytes:
    if mode == "random":
        return bytes(rng.integers(0, 256, size=len(data), dtype=np.uint8).tolist())
    if mode == "crc" and kind == "cgm":
        return data[:-1] + bytes([data[-1] ^ 0x5A])
    # truncate (and crc on a strap, which has no CRC): one byte short. A 2A37 with RR intervals then holds
    # half an interval; one without loses its value.
    return data[:-1]


def _battery_steps(faults: list[Fault], plan: WearerPlan, role: str, duration: float) -> list[tuple[float, int]]:
    """(relative s, percent) levels: the starting level, then one entry per whole-percent step of a drain."""
    spec = plan.spec.strap if role == "strap" else plan.spec.cgm
    assert spec is not None
    level = spec.battery
    steps: list[tuple[float, int]] = [(0.0, level)]
    for f in sorted((f for f in faults if f.kind == "battery"), key=lambda f: f.at_min):
        assert f.to_pct is not None
        a = f.at_min * 60.0
        b = duration if f.minutes is None else a + f.minutes * 60.0
        if f.to_pct == level or a >= duration:
            continue
        n = abs(level - f.to_pct)
        direction = -1 if f.to_pct < level else 1
        for k in range(1, n + 1):
            t = a + (b - a) * k / n
            if t >= duration:
                break
            steps.append((t, level + direction * k))
        level = steps[-1][1]
    return steps


def _sensor_truth(
    plan: WearerPlan, role: str, address: str, faults: list[Fault], feed: list[Event], scenario: Scenario,
    policy: AlertPolicy,
) -> list[TruthEvent]:  # fmt: skip
    t0, duration = scenario.start, scenario.duration_s
    th = plan.spec.thresholds
    outages = _spans(faults, "disconnect", duration)
    deliveries = np.array([e.t for e in feed if isinstance(e, FeedEvent)])
    rel = deliveries - t0
    deliveries = deliveries[~_inside(rel, outages)]
    # A reconnection reads the device's characteristics: the agent hears from it then.
    back = np.array([t0 + b for a, b in outages if b < duration])
    deliveries = np.sort(np.concatenate([deliveries, back]))
    limit = th.strap_stale_s if role == "strap" else th.cgm_stale_s
    out = silence_truth(plan.spec.id, address, deliveries, limit, t0, t0 + duration)
    out += outage_truth(plan.spec.id, address, [(t0 + a, t0 + b) for a, b in outages], policy)
    levels = [(t0 + t, pct) for t, pct in _battery_steps(faults, plan, role, duration)]
    out += battery_truth(plan.spec.id, address, levels, th, t0 + duration)
    return out
