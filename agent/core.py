"""The agent's core: notifications in, durable readings, alerts and outbox messages out.

    BLE link callback ──accept()──> bounded intake queue ──process()──> decode (firmware_bridge)
        -> readings -> alert engine -> one store transaction (readings + alerts + outbox) -> publisher.wake()

Intake policy when the queue is full: the notification is refused and counted in ``stats.dropped`` (and logged
once per burst). The BLE callback must never block; a CGM's missed records are fetched again from the sensor
after a reconnect, and the queue is sized for minutes of backlog from several wearers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.alerts import (
    AGENT_MODEL_UNAVAILABLE,
    AlertEngine,
    AlertEvent,
    CommandError,
    Condition,
    Restored,
    all_kinds,
    sort_events,
)
from agent.clock import Clock, SystemClock, sleep_to_next
from agent.config import Config
from agent.errors import ModelError, StoreError
from agent.forecast import MODEL_NAME as FORECAST_MODEL
from agent.forecast import GlucoseForecaster
from agent.messages import RawNotification
from agent.models import PACKAGED_MODELS_DIR, ModelProblem, load_models
from agent.rhythm import MODEL_NAME as RHYTHM_MODEL
from agent.rhythm import RhythmDetector
from agent.sensors import SensorMonitor
from agent.store import PRIORITY_ALERT, PRIORITY_STATE, PruneReport, Reading, Store, StoredAlert
from agent.topics import (
    alert_payload,
    alert_topic,
    condition_from_payload,
    encode,
    iso_time,
    parse_iso,
    state_topic,
)
from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.cgm_feature import decode_cgm_feature
from firmware_bridge.errors import CodecError
from firmware_bridge.heart_rate import decode_heart_rate_measurement

log = logging.getLogger("vigil.agent")

HEART_RATE_MEASUREMENT = "2A37"  # the only characteristic whose notifications may wait for company
INTAKE_SIZE = 20_000
BATCH_MAX = 500
# After the first notification of a batch arrives, wait this long for more before writing: one durable
# transaction (an fsync) per batch instead of per notification, for a bounded delay on the way to an alert.
# Only while notifications come faster than that (the intake's recent gaps, averaged, are shorter than the
# linger): ten wearers in real time send one every 100 ms or so, and waiting would only add a wake-up and
# 10 ms to every alert, with no company to show for it.
BATCH_LINGER_S = 0.01
# The intake's running mean of the gaps between notifications: the newest gap's weight, and the longest gap
# it counts (a quiet spell counts as this long, so that a burst after it is recognised within 17 notifications).
ARRIVAL_GAP_WEIGHT = 0.25
ARRIVAL_GAP_MAX_S = 1.0
# Glucose readings older than this when they arrive (a CGM's backfill) are stored but do not raise alerts
# about the present; the store keeps them for windows and reports.
STALE_FOR_ALERTS_S = 15 * 60.0
# How often time-driven checks run (silent sensors, lost links, re-notification), in wall seconds.
TICK_S = 1.0
COMMAND_VERBS = ("ack", "snooze")
# Readings held in memory while the store fails (about 12 hours of one strap); older ones are dropped first.
UNSAVED_MAX_READINGS = 100_000


@dataclass
class Stats:
    accepted: int = 0
    dropped: int = 0
    rejected: int = 0  # payloads the codecs refused
    batches: int = 0
    lost_readings: int = 0  # dropped from memory while the store could not take them
    pruned: int = 0
    readings: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)


@dataclass
class WearerState:
    """What the retained state topic shows for one wearer."""

    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    dirty: bool = False  # something changed since the last state message
    urgent: bool = False  # an alert or a link changed: the state goes out with this batch
    sent_at: float = -math.inf  # batch time of the last state message


class Agent:
    """Turns notifications into stored readings, alert events and outbox messages."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        *,
        clock: Clock | None = None,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock or SystemClock()
        self.on_outbox = on_outbox
        self.engine = AlertEngine({w.id: w.thresholds for w in cfg.wearers}, cfg.alerts)
        restored = {}
        for (wearer, key), (episode, raised_at) in store.active_alerts().items():
            kind, subject = split_alert_state_key(key)
            restored[(wearer, kind, subject)] = restore_episode(episode, raised_at, store.episode_payloads(episode))
        self.engine.restore(restored)
        self.sensors = SensorMonitor(cfg, self.clock.now())
        # (wearer, device) -> the CGM's Feature says it protects records with the E2E-CRC
        self._crc_required: dict[tuple[str, str], bool] = {}
        # wearer -> time of the newest glucose reading the rules have assessed (see _evaluate)
        self._glucose_assessed: dict[str, float] = {}
        self._pending: list[AlertEvent] = []
        # Models: those that load run; a refused one (bad hash, broken card, no runtime) leaves its job to the
        # rules, and every wearer gets an agent_model_unavailable alert naming it.
        self.models, self.model_problems = load_models(cfg.agent.models_dir or PACKAGED_MODELS_DIR)
        for problem in self.model_problems:
            log.error("model %s refused (%s): falling back to the rules", problem.name, problem.reason)
            for w in cfg.wearers:
                self._assess([model_unavailable(w.id, problem.name, problem.reason, self.clock.now())])
        self.forecaster: GlucoseForecaster | None = None
        self.rhythm: RhythmDetector | None = None
        for model in self.models:
            try:
                if model.name == FORECAST_MODEL:
                    self.forecaster = GlucoseForecaster(model, thresholds={w.id: w.thresholds for w in cfg.wearers})
                elif model.name == RHYTHM_MODEL:
                    self.rhythm = RhythmDetector(model)
            except ModelError as exc:  # a card whose parameters the agent cannot use
                log.error("model %s refused (%s): falling back to the rules", model.name, exc.reason)
                self.model_problems.append(ModelProblem(model.name, model.version, exc))
                for w in cfg.wearers:
                    self._assess([model_unavailable(w.id, model.name, exc.reason, self.clock.now())])
                continue
            for w in cfg.wearers:  # refused before a restart and fine now: clear its alert
                self._assess([model_unavailable(w.id, model.name, "", self.clock.now(), active=False)])
        self.models = [m for m in self.models if m.name not in {p.name for p in self.model_problems}]
        self._contact: dict[str, str] = {}  # wearer -> sensor contact of the latest heart-rate notification
        # Storage trouble (a full disk): batches held in memory and messages sent without the outbox.
        self.storage_error: str | None = None
        self._unsaved: list[_Unsaved] = []
        self._unsaved_readings = 0
        self.on_volatile: Callable[[list[tuple[str, bytes, bool]]], None] = lambda messages: None
        self.last_prune: PruneReport | None = None
        self._last_prune_t = self.clock.now()
        self.queue: asyncio.Queue[RawNotification] = asyncio.Queue(maxsize=INTAKE_SIZE)
        self.stats = Stats()
        self.wearers: dict[str, WearerState] = {w.id: WearerState() for w in cfg.wearers}
        self._drop_logged = False
        self.alert_listeners: list[Callable[[AlertEvent], None]] = []
        # The intake's pace, in wall time whatever ``clock`` is (the linger is a wall-clock wait).
        self.monotonic: Callable[[], float] = time.monotonic
        self._last_arrival = -math.inf
        self._arrival_gap_s = ARRIVAL_GAP_MAX_S
        # Heart-rate notifications wait for company (cfg.agent.heart_batch_s), on the wall clock only: under a
        # virtual clock a wall-clock wait would stretch the replay's time.
        self.heart_batch_s = cfg.agent.heart_batch_s if isinstance(self.clock, SystemClock) else 0.0
        self._held: list[RawNotification] = []  # taken from the intake, not yet handled (drain() handles them)
        self._hold_end: asyncio.Event | None = None  # set while a batch waits for company: ends the wait
        self._hold_early = math.inf  # from then on, the next notification ends the wait
        self._urgent_waiting = False  # a notification that must not wait is in the intake

    # -- intake -------------------------------------------------------------------------------------------
    def accept(self, note: RawNotification) -> None:
        """Called from the BLE link's notification callback; never blocks."""
        now = self.monotonic()
        gap = min(now - self._last_arrival, ARRIVAL_GAP_MAX_S)
        self._last_arrival = now
        self._arrival_gap_s += ARRIVAL_GAP_WEIGHT * (gap - self._arrival_gap_s)
        try:
            self.queue.put_nowait(note)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            if not self._drop_logged:
                log.error("intake queue full (%d): dropping notifications until it drains", INTAKE_SIZE)
                self._drop_logged = True
            return
        self.stats.accepted += 1
        if note.characteristic != HEART_RATE_MEASUREMENT:
            self._urgent_waiting = True
        hold_end = self._hold_end
        if hold_end is not None and (
            self._urgent_waiting or now >= self._hold_early or self.queue.qsize() >= BATCH_MAX
        ):
            hold_end.set()

    def link_state(self, wearer: str, device: str, state: str) -> None:
        ws = self.wearers.get(wearer)
        if ws is not None and ws.links.get(device) != state:
            ws.links[device] = state
            ws.dirty = ws.urgent = True
            self._assess(self.sensors.link(wearer, device, state, self.clock.now()))

    # -- storage trouble ----------------------------------------------------------------------------------
    def _degrade(self, exc: StoreError) -> None:
        if self.storage_error is None:
            log.error(
                "store %s failed (%s): alerts go out from memory, readings are held until it recovers",
                self.store.path,
                exc.reason,
            )
        self.storage_error = exc.reason

    def _hold(self, batch: _Unsaved, outbox: list[tuple[int, str, bytes, int, bool]]) -> None:
        """Keep a batch in memory and send its messages straight away: a full disk must not silence an alert."""
        self._unsaved.append(batch)
        self._unsaved_readings += len(batch.readings)
        while self._unsaved_readings > UNSAVED_MAX_READINGS:
            oldest = next(b for b in self._unsaved if b.readings)
            self._unsaved_readings -= len(oldest.readings)
            self.stats.lost_readings += len(oldest.readings)
            oldest.readings = []
        self.on_volatile([(topic, payload, retain) for _, topic, payload, _, retain in outbox])

    def _catch_up(self) -> None:
        """Write held batches, oldest first, while the store takes them."""
        while self._unsaved:
            b = self._unsaved[0]
            try:
                self.store.write_batch(readings=b.readings, alerts=b.alerts, alert_state=b.alert_state, now=b.now)
            except StoreError as exc:
                self._degrade(exc)
                return
            self._unsaved.pop(0)
            self._unsaved_readings -= len(b.readings)
        self._recovered()

    def _recovered(self) -> None:
        if self.storage_error is not None:
            log.warning("store %s recovered: held readings and alerts are written", self.store.path)
            self.storage_error = None

    @property
    def unsaved_readings(self) -> int:
        return self._unsaved_readings

    def storage_state(self) -> str:
        return "ok" if self.storage_error is None else f"degraded: {self.storage_error}"

    def prune(self, now: float) -> PruneReport | None:
        """Apply the retention limits; None when the store is unusable right now."""
        cfg = self.cfg.store
        try:
            report = self.store.prune(
                now, max_age_s=cfg.retention_days * 86400, max_bytes=int(cfg.max_size_mb * 1024 * 1024)
            )
        except StoreError as exc:
            self._degrade(exc)
            return None
        self.last_prune = report
        self.stats.pruned += report.pruned
        if report.pruned:
            log.info("store: pruned %d rows (%d by age, %d by size)", report.pruned,
                     report.readings_by_age + report.alerts_by_age, report.readings_by_size)  # fmt: skip
        return report

    def _assess(self, conditions: Iterable[Condition]) -> None:
        """Conditions that arrive outside a batch; their events go out with the next batch or tick."""
        for cond in conditions:
            self._pending.extend(self.engine.assess(cond))

    async def backpressure(self, high_water: int = 2 * BATCH_MAX) -> None:
        """For replays at maximum speed: wait while the intake holds more than ``high_water`` items."""
        while self.queue.qsize() > high_water:
            await asyncio.sleep(0.001)

    async def process(self) -> None:
        """Drain the intake in batches until cancelled."""
        while True:
            first = await self.queue.get()
            self._held = [first]
            if first.characteristic == HEART_RATE_MEASUREMENT and self.heart_batch_s > 0:
                await self._wait_for_company()
            elif self.queue.qsize() < BATCH_MAX and self.company_expected():
                await asyncio.sleep(BATCH_LINGER_S)
            self.handle(self._take_held())
            if self.queue.qsize() < INTAKE_SIZE // 2:
                self._drop_logged = False

    def _take_held(self) -> list[RawNotification]:
        """What waits, oldest first: the held notifications, then the intake's, up to ``BATCH_MAX``."""
        batch, self._held = self._held, []
        while len(batch) < BATCH_MAX and not self.queue.empty():
            batch.append(self.queue.get_nowait())
        if self.queue.empty():
            self._urgent_waiting = False
        return batch

    async def _wait_for_company(self) -> None:
        """Let a heart-rate notification wait up to ``heart_batch_s`` for company. The wait ends early when a
        notification that must not wait arrives (anything but a heart rate), when a full batch is in, or with
        the first notification after half the wait: several wearers' notifications then go together, and the
        batch is handled on a wake-up the intake already had rather than on a timer of its own."""
        if self._urgent_waiting or self.queue.qsize() >= BATCH_MAX:
            return
        self._hold_early = self.monotonic() + self.heart_batch_s / 2
        self._hold_end = asyncio.Event()
        try:
            await asyncio.wait_for(self._hold_end.wait(), self.heart_batch_s)
        except asyncio.TimeoutError:
            pass
        finally:
            self._hold_end = None
            self._hold_early = math.inf

    def company_expected(self) -> bool:
        """Is another notification likely within ``BATCH_LINGER_S``? The running mean of the gaps between
        notifications says so. A burst after a quiet spell pulls it under the linger within 17 notifications
        (each gap moves it a quarter of the way); until then the burst queues up while a batch is handled and
        the next batch takes what queued."""
        return self._arrival_gap_s < BATCH_LINGER_S

    async def ticker(self) -> None:
        """Run the time-driven checks every ``TICK_S`` until cancelled. Never at a time ahead of what has been
        processed, where a sensor whose data only waits would look silent: while the core holds a batch (waiting
        for company), as of the batch's oldest notification; else not while notifications wait in the intake
        (each batch runs the same checks at its own time anyway)."""
        while True:
            await sleep_to_next(TICK_S)
            if self._held:  # everything before its oldest notification has been handled
                self.tick(min(self.clock.now(), self._held[0].received_at))
            elif self.queue.empty():
                self.tick(self.clock.now())

    def tick(self, now: float) -> None:
        """Silent sensors, lost links and re-notification, committed like a batch; retries a failed store and
        applies retention when due."""
        if self._unsaved:
            self._catch_up()
        self._commit([], self._tick_events(now), now)
        if now - self._last_prune_t >= self.cfg.store.prune_every_s:
            self._last_prune_t = now
            self.prune(now)

    def _tick_events(self, now: float) -> list[AlertEvent]:
        events = self._pending
        self._pending = []
        for cond in self.sensors.tick(now):
            events.extend(self.engine.assess(cond))
        events.extend(self.engine.tick(now))
        return events

    def command(self, topic: str, payload: bytes) -> str | None:
        """Apply an acknowledge or snooze received on ``<root>/<site>/<wearer>/cmd/<verb>``.

        Returns None when applied, else the reason it was rejected (also logged); a rejected command changes
        nothing."""
        try:
            events = self._command_events(topic, payload)
        except CommandError as exc:
            log.warning("command on %s rejected: %s", topic, exc.reason)
            return exc.reason
        self._commit([], events, self.clock.now())
        return None

    def _command_events(self, topic: str, payload: bytes) -> list[AlertEvent]:
        parts = topic.split("/")
        root_len = len(self.cfg.mqtt.root.split("/"))
        if len(parts) != root_len + 4 or parts[root_len + 2] != "cmd":
            raise CommandError(f"not a command topic: {topic}")
        site, wearer, verb = parts[root_len], parts[root_len + 1], parts[root_len + 3]
        if site != self.cfg.agent.site or wearer not in self.wearers:
            raise CommandError(f"wearer {wearer} at site {site} is not one of this agent's")
        if verb not in COMMAND_VERBS:
            raise CommandError(f"unknown verb {verb!r} (known: {', '.join(COMMAND_VERBS)})")
        try:
            body = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            raise CommandError("payload is not JSON") from None
        if not isinstance(body, dict):
            raise CommandError("payload must be a JSON object")
        unknown = set(body) - {"episode", "kind", "by", "minutes"}
        if unknown:
            raise CommandError(f"unknown field(s): {', '.join(sorted(unknown))}")
        episode, kind, by = body.get("episode"), body.get("kind"), body.get("by", "mqtt")
        if episode is not None and not isinstance(episode, str):
            raise CommandError("episode must be a string")
        if kind is not None and kind not in all_kinds():
            raise CommandError(f"unknown kind {kind!r}")
        if not isinstance(by, str) or not 0 < len(by) <= 64:
            raise CommandError("by must be a string of 1-64 characters")
        now = self.clock.now()
        if verb == "ack":
            return self.engine.acknowledge(wearer, episode=episode, kind=kind, by=by, t=now)
        minutes = body.get("minutes")
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
            raise CommandError("snooze needs minutes (a number)")
        return self.engine.snooze(wearer, episode=episode, kind=kind, seconds=float(minutes) * 60, by=by, t=now)

    async def drain(self) -> None:
        """Process everything held or already in the intake (used when stopping)."""
        while self._held or not self.queue.empty():
            self.handle(self._take_held())
        self._commit([], [], self.clock.now(), force_state=True)  # every wearer's latest state, held back or not

    # -- one batch ----------------------------------------------------------------------------------------
    def handle(self, batch: Iterable[RawNotification]) -> None:
        readings: list[Reading] = []
        events: list[AlertEvent] = []
        latest_t = 0.0
        # Decoding first (its only state, a CGM's E2E-CRC feature, still goes in notification order) lets the
        # AF detector cut every window this batch completes in one vectorised pass (RhythmDetector.prefetch).
        notes = list(batch)
        decoded = [self._decode(note) for note in notes]
        if self.rhythm is not None:
            beats: dict[str, list[tuple[float, float]]] = {}
            for note_readings in decoded:
                for r in note_readings:
                    if r.kind == "rr":
                        beats.setdefault(r.wearer, []).append((r.t, r.value))
            for wearer, wearer_beats in beats.items():
                self.rhythm.prefetch(wearer, wearer_beats)
        for note, note_readings in zip(notes, decoded, strict=True):
            latest_t = max(latest_t, note.received_at)
            for cond in self.sensors.seen(note.wearer, note.device, note.received_at):
                events.extend(self.engine.assess(cond))
            for reading in note_readings:
                readings.append(reading)
                self.stats.readings[reading.kind] += 1
                self._remember(reading)
                events.extend(self._evaluate(reading, note.received_at))
        events.extend(self._tick_events(latest_t))
        self._commit(readings, events, latest_t)

    def _decode(self, note: RawNotification) -> list[Reading]:
        try:
            if note.characteristic == HEART_RATE_MEASUREMENT:
                return self._heart_rate(note)
            if note.characteristic == "2AA7":
                return self._glucose(note)
            if note.characteristic == "2A19":
                level = decode_battery_level(note.data)
                return [Reading(note.wearer, note.device, "battery", note.received_at, float(level))]
            if note.characteristic == "2AA8":
                # Read at connect: a sensor that supports the E2E-CRC must send it on every record from now on.
                feature = decode_cgm_feature(note.data)
                self._crc_required[(note.wearer, note.device)] = feature.e2e_crc_supported
                return []
        except CodecError as exc:
            self.stats.rejected += 1
            # The payload may hold a reading: its bytes go to the debug log only, the reason to the warning.
            log.warning("%s/%s: rejected a %s payload: %s", note.wearer, note.device, note.characteristic, exc.reason)
            log.debug("%s/%s: rejected payload bytes: %s", note.wearer, note.device, note.data.hex())
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
        records = decode_cgm_measurement(
            note.data, require_crc=self._crc_required.get((note.wearer, note.device), False)
        )
        # The BLE link's estimate of the session's time offset 0 (agent.ble.CgmNotification); None from a source
        # that has none, whose records are stamped at their arrival as before.
        session_start: float | None = getattr(note, "session_start", None)
        for rec in records:
            extra: dict[str, Any] = {"time_offset_min": rec.time_offset_min}
            t = note.received_at
            if session_start is not None:
                # Measured at its place on the session's time line (a backfilled record arrives long after),
                # never after it arrived; session_start with the offset names the record for the store's dedup.
                t = min(t, session_start + 60.0 * rec.time_offset_min)
                extra["session_start"] = session_start
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
            out.append(Reading(note.wearer, note.device, "glucose", t, rec.glucose_mg_dl, extra))
        return out

    def _remember(self, r: Reading) -> None:
        ws = self.wearers.get(r.wearer)
        if ws is None:
            return
        if r.kind == "hr":
            # The time stays a number until a state message is built (most readings are never shown).
            ws.values["heart"] = {"hr_bpm": r.value, "time": r.t, **(r.extra or {})}
        elif r.kind == "glucose":
            extra = r.extra or {}
            ws.values["glucose"] = {
                "mg_dl": r.value if math.isfinite(r.value) else None,
                "special": extra.get("special"),
                "time": r.t,
                "trend_mg_dl_per_min": extra.get("trend_mg_dl_per_min"),
            }
        elif r.kind == "battery":
            ws.values.setdefault("battery_pct", {})[r.device] = r.value
        else:
            return
        ws.dirty = True

    def _evaluate(self, r: Reading, now: float) -> list[AlertEvent]:
        if r.kind == "battery":
            return [e for c in self.sensors.battery(r.wearer, r.device, r.value, r.t) for e in self.engine.assess(c)]
        if r.kind == "hr":
            contact = (r.extra or {}).get("contact", "unsupported")
            self._contact[r.wearer] = contact  # the RR intervals of this notification follow it
            if contact == "not_detected":
                return []  # no skin contact: the value is not the wearer's heart rate
            return self.engine.feed(r.wearer, "hr", r.value, r.t)
        if r.kind == "rr":
            return self._rhythm(r, now)
        events = self._forecast(r, now) if r.kind == "glucose" and self.forecaster is not None else []
        if r.kind == "glucose" and now - r.t <= STALE_FOR_ALERTS_S and not math.isnan(r.value):
            # The rules assume time order. A record no newer than one already assessed (an RACP backfill reports
            # the records before the live one that anchored it, and that one again) is stored, not assessed:
            # fed late, it would clear and raise again an episode the newer value settled.
            if r.t <= self._glucose_assessed.get(r.wearer, -math.inf):
                return events
            self._glucose_assessed[r.wearer] = r.t
            return self.engine.feed(r.wearer, "glucose", r.value, r.t) + events
        return events

    def _forecast(self, r: Reading, now: float) -> list[AlertEvent]:
        """Every reading goes into the forecaster's window (backfill too); only a present one may alert."""
        assert self.forecaster is not None
        extra = r.extra or {}
        conditions, state = self.forecaster.feed(
            r.wearer, r.t, r.value, extra.get("status", ()), extra.get("session_start")
        )
        self._show(r.wearer, "forecast", state)
        if now - r.t > STALE_FOR_ALERTS_S:
            return []
        return [e for c in conditions for e in self.engine.assess(c)]

    def _rhythm(self, r: Reading, now: float) -> list[AlertEvent]:
        if self.rhythm is None:
            return []
        conditions, state = self.rhythm.feed_rr(r.wearer, r.t, r.value, self._contact.get(r.wearer))
        if state is not None:
            self._show(r.wearer, "rhythm", state)
        return [e for c in conditions for e in self.engine.assess(c)]

    def _show(self, wearer: str, key: str, state: dict[str, Any]) -> None:
        ws = self.wearers.get(wearer)
        if ws is not None:
            ws.values[key] = state
            ws.dirty = True

    def _commit(
        self, readings: list[Reading], events: list[AlertEvent], now: float, *, force_state: bool = False
    ) -> None:
        cfg = self.cfg
        root, site = cfg.mqtt.root, cfg.agent.site
        outbox: list[tuple[int, str, bytes, int, bool]] = []
        stored: list[StoredAlert] = []
        state_rows: list[tuple[str, str, str | None, float]] = []
        events = sort_events(events)
        for ev in events:
            payload = alert_payload(ev, site=site, agent_id=cfg.agent.id, include_raw=cfg.mqtt.include_raw)
            stored.append(StoredAlert(ev.id, ev.episode, ev.wearer, ev.kind, ev.severity, ev.state, ev.t, payload))
            outbox.append((PRIORITY_ALERT, alert_topic(root, site, ev.wearer, ev.kind), encode(payload), 1, False))
            if ev.state != "ongoing":
                key = alert_state_key(ev.kind, ev.subject)
                state_rows.append((ev.wearer, key, ev.episode if ev.state == "raised" else None, ev.t))
            self.stats.alerts[f"{ev.kind}:{ev.state}"] += 1
            if ev.wearer in self.wearers:
                self.wearers[ev.wearer].dirty = self.wearers[ev.wearer].urgent = True
        active = self.engine.active()
        every = cfg.agent.state_every_s
        for wearer, ws in self.wearers.items():
            # New readings alone: at most one state message per state_every_s (the ticker sends what waits).
            if not ws.dirty or not (force_state or ws.urgent or not 0 <= now - ws.sent_at < every):
                continue
            ws.dirty = ws.urgent = False
            ws.sent_at = now
            state = {
                "wearer": wearer,
                "time": iso_time(now) if now else None,
                **{k: _shown(v) for k, v in ws.values.items()},
                "links": dict(ws.links),
                "alerts_active": sorted(
                    (
                        {"kind": kind, "episode": episode, **({"device": subject} if subject else {})}
                        for (w, kind, subject), episode in active.items()
                        if w == wearer
                    ),
                    key=lambda a: (a["kind"], a.get("device", "")),
                ),
            }
            outbox.append((PRIORITY_STATE, state_topic(root, site, wearer), encode(state), 1, True))
        if not (readings or outbox):
            return
        if self._unsaved:
            self._catch_up()
        written = False
        if not self._unsaved:
            try:
                self.store.write_batch(readings=readings, alerts=stored, outbox=outbox, alert_state=state_rows, now=now)
            except StoreError as exc:
                self._degrade(exc)
            else:
                written = True
                self.stats.batches += 1
                self._recovered()
        if not written:
            self._hold(_Unsaved(readings, stored, state_rows, now), outbox)
        for ev in events:
            for listener in self.alert_listeners:
                listener(ev)
        if outbox:
            self.on_outbox()


def _shown(value: Any) -> Any:
    """A state value as published: a reading's epoch ``time`` as an ISO string."""
    if isinstance(value, dict) and isinstance(value.get("time"), float):
        return {**value, "time": iso_time(value["time"])}
    return value


@dataclass
class _Unsaved:
    """A batch the store could not take: written when it can again, without its (already sent) messages."""

    readings: list[Reading]
    alerts: list[StoredAlert]
    alert_state: list[tuple[str, str, str | None, float]]
    now: float


def restore_episode(episode: str, raised_at: float, history: list[dict[str, Any]]) -> Restored:
    """What the engine needs to resume an episode from its stored messages (oldest first)."""
    raised = next((p for p in history if p.get("state") == "raised"), None)
    times = [parse_iso(p["time"]) for p in history if isinstance(p.get("time"), str)]
    acks = [p["acknowledged"] for p in history if p.get("acknowledged")]
    ack: dict[str, Any] | None = None
    if acks:
        ack = {k: parse_iso(v) if k in ("at", "snoozed_until") else v for k, v in acks[-1].items()}
    return Restored(
        episode=episode,
        raised_at=raised_at,
        condition=condition_from_payload(raised),
        last_sent=max(times, default=raised_at),
        acknowledged=ack,
    )


def model_unavailable(wearer: str, model: str, reason: str, t: float, *, active: bool = True) -> Condition:
    return Condition(
        wearer=wearer,
        kind=AGENT_MODEL_UNAVAILABLE,
        active=active,
        t=t,
        severity="warning",
        reason=f"model {model} is unavailable ({reason}); the agent falls back to its rules"
        if active
        else f"model {model} is loaded and verified again",
        values={"model": model, "problem": reason},
        subject=model,
        source={"type": "agent"},
    )


def alert_state_key(kind: str, subject: str) -> str:
    """How an episode's (kind, subject) is kept in the store's alert_state.kind column."""
    return f"{kind}@{subject}" if subject else kind


def split_alert_state_key(key: str) -> tuple[str, str]:
    kind, _, subject = key.partition("@")
    return kind, subject
