"""The agent's core: notifications in, durable readings, alerts and outbox messages out.

    BLE link callback ──accept()──> bounded intake queue ──process()──> decode (firmware_bridge)
        -> readings -> alert engine -> one store transaction (readings + alerts + outbox) -> publisher.wake()

Intake policy when the queue is full: the notification is refused and counted in ``stats.dropped`` (and logged
once per burst). The BLE callback must never block; a CGM's missed records are fetched again from the sensor
after a reconnect, and the queue is sized for minutes of backlog from several wearers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.alerts import AlertEngine, AlertEvent
from agent.config import Config
from agent.messages import RawNotification
from agent.store import PRIORITY_ALERT, PRIORITY_STATE, Reading, Store, StoredAlert
from agent.topics import alert_payload, alert_topic, encode, iso_time, state_topic
from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.errors import CodecError
from firmware_bridge.heart_rate import decode_heart_rate_measurement

log = logging.getLogger("vigil.agent")

INTAKE_SIZE = 20_000
BATCH_MAX = 500
# After the first notification of a batch arrives, wait this long for more before writing: one durable
# transaction (an fsync) per batch instead of per notification, for a bounded delay on the way to an alert.
BATCH_LINGER_S = 0.01
# Glucose readings older than this when they arrive (a CGM's backfill) are stored but do not raise alerts
# about the present; the store keeps them for windows and reports.
STALE_FOR_ALERTS_S = 15 * 60.0


@dataclass
class Stats:
    accepted: int = 0
    dropped: int = 0
    rejected: int = 0  # payloads the codecs refused
    readings: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)


@dataclass
class WearerState:
    """What the retained state topic shows for one wearer."""

    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dirty: bool = False


class Agent:
    """Turns notifications into stored readings, alert events and outbox messages."""

    def __init__(self, cfg: Config, store: Store, *, on_outbox: Callable[[], None] = lambda: None) -> None:
        self.cfg = cfg
        self.store = store
        self.on_outbox = on_outbox
        self.engine = AlertEngine({w.id: w.thresholds for w in cfg.wearers})
        self.engine.restore(store.active_alerts())
        self.queue: asyncio.Queue[RawNotification] = asyncio.Queue(maxsize=INTAKE_SIZE)
        self.stats = Stats()
        self.wearers: dict[str, WearerState] = {w.id: WearerState() for w in cfg.wearers}
        self._drop_logged = False
        self.alert_listeners: list[Callable[[AlertEvent], None]] = []

    # -- intake -------------------------------------------------------------------------------------------
    def accept(self, note: RawNotification) -> None:
        """Called from the BLE link's notification callback; never blocks."""
        try:
            self.queue.put_nowait(note)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if not self._drop_logged:
                log.error("intake queue full (%d): dropping notifications until it drains", INTAKE_SIZE)
                self._drop_logged = True
            return
        self.stats.accepted += 1

    def link_state(self, wearer: str, device: str, state: str) -> None:
        ws = self.wearers.get(wearer)
        if ws is not None and ws.links.get(device) != state:
            ws.links[device] = state
            ws.dirty = True

    async def backpressure(self, high_water: int = 2 * BATCH_MAX) -> None:
        """For replays at maximum speed: wait while the intake holds more than ``high_water`` items."""
        while self.queue.qsize() > high_water:
            await asyncio.sleep(0.001)

    async def process(self) -> None:
        """Drain the intake in batches until cancelled."""
        while True:
            first = await self.queue.get()
            batch = [first]
            if self.queue.qsize() < BATCH_MAX:
                await asyncio.sleep(BATCH_LINGER_S)
            while len(batch) < BATCH_MAX and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self.handle(batch)
            if self.queue.qsize() < INTAKE_SIZE // 2:
                self._drop_logged = False

    async def drain(self) -> None:
        """Process everything already in the intake (used when stopping)."""
        batch: list[RawNotification] = []
        while not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if batch:
            self.handle(batch)

    # -- one batch ----------------------------------------------------------------------------------------
    def handle(self, batch: Iterable[RawNotification]) -> None:
        readings: list[Reading] = []
        events: list[AlertEvent] = []
        latest_t = 0.0
        for note in batch:
            latest_t = max(latest_t, note.received_at)
            for reading in self._decode(note):
                readings.append(reading)
                self.stats.readings[reading.kind] += 1
                self._remember(reading)
                events.extend(self._evaluate(reading, note.received_at))
        self._commit(readings, events, latest_t)

    def _decode(self, note: RawNotification) -> list[Reading]:
        try:
            if note.characteristic == "2A37":
                return self._heart_rate(note)
            if note.characteristic == "2AA7":
                return self._glucose(note)
            if note.characteristic == "2A19":
                level = decode_battery_level(note.data)
                return [Reading(note.wearer, note.device, "battery", note.received_at, float(level))]
        except CodecError as exc:
            self.stats.rejected += 1
            log.warning(
                "%s/%s: rejected %s payload %s: %s",
                note.wearer,
                note.device,
                note.characteristic,
                note.data.hex(),
                exc.reason,
            )
            return []
        return []

    def _heart_rate(self, note: RawNotification) -> list[Reading]:
        m = decode_heart_rate_measurement(note.data)
        contact = m.sensor_contact.value
        out = [Reading(note.wearer, note.device, "hr", note.received_at, float(m.hr_bpm), {"contact": contact})]
        # RR intervals arrive after the beats they measure: the last one ends at the notification time.
        end = note.received_at
        beats = []
        for rr in reversed(m.rr_intervals_s):
            beats.append(Reading(note.wearer, note.device, "rr", end, rr))
            end -= rr
        out.extend(reversed(beats))
        return out

    def _glucose(self, note: RawNotification) -> list[Reading]:
        out = []
        records = decode_cgm_measurement(note.data)
        for rec in records:
            extra: dict[str, Any] = {"time_offset_min": rec.time_offset_min}
            if rec.trend_mg_dl_per_min is not None and math.isfinite(rec.trend_mg_dl_per_min):
                extra["trend_mg_dl_per_min"] = rec.trend_mg_dl_per_min
            if rec.quality_pct is not None and math.isfinite(rec.quality_pct):
                extra["quality_pct"] = rec.quality_pct
            status = rec.status_names()
            if status:
                extra["status"] = status
            special = rec.glucose.special
            if special is not None:
                # +INF / -INF: above / below the sensor's measuring range (a "High" / "Low" on a receiver);
                # NaN / NRes: no value. Stored as NULL with the reason; the infinities still drive alerts.
                extra["special"] = special.value
            # Stamped with the arrival time; the sensor's own time offset is kept in ``extra`` so that backfilled
            # records can be placed on the session's time line once RACP backfill exists.
            out.append(Reading(note.wearer, note.device, "glucose", note.received_at, rec.glucose_mg_dl, extra))
        return out

    def _remember(self, r: Reading) -> None:
        ws = self.wearers.get(r.wearer)
        if ws is None:
            return
        if r.kind == "hr":
            ws.values["heart"] = {"hr_bpm": r.value, "time": iso_time(r.t), **(r.extra or {})}
        elif r.kind == "glucose":
            extra = r.extra or {}
            ws.values["glucose"] = {
                "mg_dl": r.value if math.isfinite(r.value) else None,
                "special": extra.get("special"),
                "time": iso_time(r.t),
                "trend_mg_dl_per_min": extra.get("trend_mg_dl_per_min"),
            }
        elif r.kind == "battery":
            ws.values.setdefault("battery_pct", {})[r.device] = r.value
        else:
            return
        ws.dirty = True

    def _evaluate(self, r: Reading, now: float) -> list[AlertEvent]:
        if r.kind == "hr":
            if (r.extra or {}).get("contact") == "not_detected":
                return []  # no skin contact: the value is not the wearer's heart rate
            return self.engine.feed(r.wearer, "hr", r.value, r.t)
        if r.kind == "glucose" and now - r.t <= STALE_FOR_ALERTS_S and not math.isnan(r.value):
            return self.engine.feed(r.wearer, "glucose", r.value, r.t)
        return []

    def _commit(self, readings: list[Reading], events: list[AlertEvent], now: float) -> None:
        cfg = self.cfg
        root, site = cfg.mqtt.root, cfg.agent.site
        outbox: list[tuple[int, str, bytes, int, bool]] = []
        stored: list[StoredAlert] = []
        state_rows: list[tuple[str, str, str | None, float]] = []
        for ev in events:
            payload = alert_payload(ev, site=site, agent_id=cfg.agent.id)
            stored.append(StoredAlert(ev.id, ev.episode, ev.wearer, ev.kind, ev.severity, ev.state, ev.t, payload))
            outbox.append((PRIORITY_ALERT, alert_topic(root, site, ev.wearer, ev.kind), encode(payload), 1, False))
            state_rows.append((ev.wearer, ev.kind, ev.episode if ev.state != "cleared" else None, ev.t))
            self.stats.alerts[f"{ev.kind}:{ev.state}"] += 1
        active = self.engine.active()
        for wearer, ws in self.wearers.items():
            if not ws.dirty:
                continue
            ws.dirty = False
            state = {
                "wearer": wearer,
                "time": iso_time(now) if now else None,
                **ws.values,
                "links": dict(ws.links),
                "alerts_active": sorted(kind for (w, kind) in active if w == wearer),
            }
            outbox.append((PRIORITY_STATE, state_topic(root, site, wearer), encode(state), 1, True))
        if not (readings or outbox):
            return
        self.store.write_batch(readings=readings, alerts=stored, outbox=outbox, alert_state=state_rows, now=now)
        for ev in events:
            for listener in self.alert_listeners:
                listener(ev)
        if outbox:
            self.on_outbox()
