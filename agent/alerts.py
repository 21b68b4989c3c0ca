"""The alert engine: one small state machine per wearer, alert kind and subject.

Everything that can alert speaks to the engine in :class:`Condition` records: the glucose and heart-rate rules
below, the sensor checks in the core (silent sensor, lost link, low battery), and, with the model issues, the
models (``source`` then names the model, its version and sha256, and the input window's span and hash).

A condition says the alert's cause is present (``active=True``), gone (``False``) or in between (``None``: inside
the hysteresis band, change nothing). An episode is *raised* once its cause has held for ``sustain_s``, is
*cleared* when the cause is gone, and in between may be re-announced as *ongoing*: when an urgent alert is still
unacknowledged after the renotify interval, and when someone acknowledges it. Snoozing a kind holds back new
episodes of it until the snooze ends, and acknowledges those already raised.

The engine is pure: it is fed conditions and times and returns :class:`AlertEvent` records; it never touches the
store or the network.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config import AlertPolicy, Thresholds

RULE_SOURCE: dict[str, Any] = {"type": "rule"}
SEVERITY_ORDER = {"urgent": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Condition:
    """What a rule, a sensor check or a model says about one alert's cause at time ``t``."""

    wearer: str
    kind: str
    active: bool | None
    t: float
    severity: str
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    subject: str = ""  # a device label for sensor alerts; "" for the wearer's physiology
    sustain_s: float = 0.0
    source: dict[str, Any] = field(default_factory=lambda: dict(RULE_SOURCE))
    # The raw input behind a model's verdict (its window's values); published only with [mqtt] include_raw.
    raw: dict[str, Any] | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One state change of one alert episode: what a subscriber receives."""

    id: str
    episode: str
    wearer: str
    kind: str
    severity: str
    state: str  # raised | ongoing | cleared
    t: float
    reason: str
    values: dict[str, Any]
    thresholds: dict[str, float]
    source: dict[str, Any] = field(default_factory=lambda: dict(RULE_SOURCE))
    subject: str = ""
    condition_since: float | None = None
    acknowledged: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None


TrackKey = tuple[str, str, str]  # (wearer, kind, subject)


@dataclass(frozen=True)
class Restored:
    """An episode active when the agent stopped, as the store remembers it."""

    episode: str
    raised_at: float
    condition: Condition | None = None
    last_sent: float = 0.0
    acknowledged: Mapping[str, Any] | None = None


@dataclass
class _Track:
    pending_since: float | None = None
    episode: str | None = None
    raised_at: float | None = None
    last_sent: float = 0.0
    last: Condition | None = None
    acked: dict[str, Any] | None = None


class CommandError(ValueError):
    """An acknowledge or snooze that cannot be applied; ``reason`` says why in words."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class AlertEngine:
    def __init__(
        self,
        thresholds: Mapping[str, Thresholds],
        policy: AlertPolicy | None = None,
        *,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._thresholds = dict(thresholds)
        self.policy = policy or AlertPolicy()
        self._tracks: dict[TrackKey, _Track] = {}
        self._snoozed: dict[tuple[str, str], float] = {}
        self._new_id = new_id

    # -- state kept across restarts ----------------------------------------------------------------------
    def restore(self, active: Mapping[TrackKey, Restored]) -> None:
        """Resume episodes raised before a restart: they are not raised again, an acknowledgement still holds,
        and re-announcement keeps its rhythm from the last message sent (a restarting agent must not page
        anyone at every start). Episodes whose raising condition is known stay acknowledgeable."""
        for key, r in active.items():
            self._tracks[key] = _Track(
                pending_since=r.raised_at,
                episode=r.episode,
                raised_at=r.raised_at,
                last_sent=max(r.raised_at, r.last_sent),
                last=r.condition,
                acked=dict(r.acknowledged) if r.acknowledged else None,
            )

    def active(self) -> dict[TrackKey, str]:
        return {k: tr.episode for k, tr in self._tracks.items() if tr.episode is not None}

    # -- inputs ------------------------------------------------------------------------------------------
    def feed(self, wearer: str, signal: str, value: float, t: float) -> list[AlertEvent]:
        """A physiological reading through the threshold rules."""
        th = self._thresholds.get(wearer)
        if th is None:
            return []
        events: list[AlertEvent] = []
        for rule in RULES_BY_SIGNAL.get(signal, ()):
            track = self._tracks.get((wearer, rule.kind, ""))
            if (track is None or track.episode is None) and not rule.breached(value, th):
                # What assess() does with a condition that is not active and has no episode, without building
                # the condition and its sentences (most readings of most wearers take this path).
                if track is not None:
                    track.pending_since = None
                continue
            events.extend(self.assess(rule.condition(wearer, value, t, th)))
        events.sort(key=lambda e: SEVERITY_ORDER.get(e.severity, 9))
        return events

    def assess(self, cond: Condition) -> list[AlertEvent]:
        """Apply one condition to its episode's state machine."""
        key = (cond.wearer, cond.kind, cond.subject)
        track = self._tracks.setdefault(key, _Track())
        if track.episode is None:
            if cond.active is not True:
                track.pending_since = None
                return []
            if track.pending_since is None:
                track.pending_since = cond.t
            track.last = cond
            if cond.t - track.pending_since < cond.sustain_s:
                return []
            if self._snoozed.get((cond.wearer, cond.kind), -math.inf) > cond.t:
                return []
            track.episode = self._new_id()
            track.raised_at = track.last_sent = cond.t
            track.acked = None
            reason = cond.reason
            if cond.sustain_s > 0:
                reason += f" and has been for {cond.t - track.pending_since:.0f} s"
            return [self._event(cond, track, "raised", reason)]
        if cond.active is False:
            event = self._event(cond, track, "cleared", cond.reason)
            self._tracks[key] = _Track()
            return [event]
        if cond.active is True:
            track.last = cond
        return []

    def tick(self, now: float) -> list[AlertEvent]:
        """Re-announce unacknowledged alerts whose renotify interval has passed; forget ended snoozes."""
        for k in [k for k, until in self._snoozed.items() if until <= now]:
            del self._snoozed[k]
        events = []
        for track in self._tracks.values():
            if track.episode is None or track.acked is not None or track.last is None:
                continue
            interval = self.policy.renotify_s(track.last.severity)
            if interval > 0 and now - track.last_sent >= interval:
                raised = track.raised_at if track.raised_at is not None else now
                reason = f"still {track.last.reason} (raised {(now - raised) / 60:.0f} min ago, not acknowledged)"
                events.append(self._event(track.last, track, "ongoing", reason, t=now))
                track.last_sent = now
        return events

    def acknowledge(self, wearer: str, *, episode: str | None, kind: str | None, by: str, t: float) -> list[AlertEvent]:
        """Acknowledge the wearer's active episode (by id, or an unambiguous prefix of six or more characters) or
        every active episode of a kind. Raises :class:`CommandError` when nothing matches."""
        found = self._find(wearer, episode, kind)
        if not found:
            raise CommandError(f"no active alert of wearer {wearer} matches episode={episode} kind={kind}")
        return [self._ack(track, {"by": by, "at": t}, f"acknowledged by {by}", t) for _, track in found]

    def snooze(
        self, wearer: str, *, episode: str | None, kind: str | None, seconds: float, by: str, t: float
    ) -> list[AlertEvent]:
        """Hold back new episodes of a kind for ``seconds`` and acknowledge its active ones. The length is capped by
        the policy, more tightly for urgent kinds. A kind may be snoozed before it fires; an episode must be active."""
        if not (seconds > 0 and math.isfinite(seconds)):
            raise CommandError(f"snooze needs a positive number of minutes, got {seconds / 60:g}")
        found = self._find(wearer, episode, kind)
        if episode is not None and not found:
            raise CommandError(f"no active alert of wearer {wearer} matches episode={episode}")
        kinds = {key[1] for key, _ in found}
        if not kinds and kind is not None:
            kinds = {kind}
        events = []
        for k in sorted(kinds):
            cap = self.policy.snooze_max_urgent_s if k in URGENT_KINDS else self.policy.snooze_max_s
            until = t + min(seconds, cap)
            self._snoozed[(wearer, k)] = until
            for key, track in found:
                if key[1] == k:
                    ack = {"by": by, "at": t, "snoozed_until": until}
                    events.append(self._ack(track, ack, f"snoozed for {(until - t) / 60:.0f} min by {by}", t))
        return events

    def _ack(self, track: _Track, ack: dict[str, Any], what: str, t: float) -> AlertEvent:
        track.acked = ack
        assert track.last is not None
        return self._event(track.last, track, "ongoing", f"{what}: {track.last.reason}", t=t)

    def _find(self, wearer: str, episode: str | None, kind: str | None) -> list[tuple[TrackKey, _Track]]:
        if episode is None and kind is None:
            raise CommandError("give an episode id or a kind")
        if episode is not None and len(episode) < 6:
            raise CommandError("an episode id prefix needs at least six characters")
        found = [
            (key, tr)
            for key, tr in self._tracks.items()
            if key[0] == wearer
            and tr.episode is not None
            and tr.last is not None
            and (episode is None or tr.episode.startswith(episode))
            and (kind is None or key[1] == kind)
        ]
        if episode is not None and len({tr.episode for _, tr in found}) > 1:
            raise CommandError(f"episode prefix {episode} matches more than one active alert")
        return found

    def _event(self, cond: Condition, track: _Track, state: str, reason: str, *, t: float | None = None) -> AlertEvent:
        assert track.episode is not None
        acked = track.acked
        return AlertEvent(
            id=self._new_id(),
            episode=track.episode,
            wearer=cond.wearer,
            kind=cond.kind,
            severity=cond.severity,
            state=state,
            t=cond.t if t is None else t,
            reason=reason,
            values=dict(cond.values),
            thresholds=dict(cond.thresholds),
            source=dict(cond.source),
            subject=cond.subject,
            condition_since=track.pending_since,
            acknowledged=dict(acked) if acked else None,
            raw=cond.raw,
        )


# -- the threshold rules -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """``kind`` is active when ``signal`` compared by ``op`` with the threshold named ``threshold`` is true,
    and inactive once it is back past the threshold by the hysteresis named ``hysteresis``."""

    kind: str
    signal: str
    op: str  # "<" or ">"
    threshold: str
    hysteresis: str
    severity: str
    label: str
    unit: str
    value_name: str
    sustain: str | None = None

    def breached(self, value: float, th: Thresholds) -> bool:
        """The value is past the threshold (the condition is then active unless it is also recovered)."""
        return _OPS[self.op](value, getattr(th, self.threshold))

    def condition(self, wearer: str, value: float, t: float, th: Thresholds) -> Condition:
        limit: float = getattr(th, self.threshold)
        margin: float = getattr(th, self.hysteresis)
        sustain: float = getattr(th, self.sustain) if self.sustain else 0.0
        breached = _OPS[self.op](value, limit)
        back = limit + margin if self.op == "<" else limit - margin
        recovered = value >= back if self.op == "<" else value <= back
        shown = f"{value:g} {self.unit}"
        values: dict[str, Any] = {self.value_name: value if math.isfinite(value) else None}
        if math.isinf(value):  # a sensor's "High"/"Low": outside its measuring range
            shown = f"{'above' if value > 0 else 'below'} the sensor's measuring range"
            values["out_of_range"] = "above" if value > 0 else "below"
        if recovered:
            active: bool | None = False
            reason = (
                f"{self.label} cleared: {self.signal} {shown} is back past {back:g} {self.unit}"
                f" (threshold {limit:g} with {margin:g} {self.unit} hysteresis)"
            )
        else:
            active = True if breached else None
            side = "below" if self.op == "<" else "above"
            reason = f"{self.label}: {self.signal} {shown} is {side} the threshold of {limit:g} {self.unit}"
        thresholds = {self.threshold: limit, self.hysteresis: margin}
        if self.sustain:
            thresholds[self.sustain] = sustain
        return Condition(
            wearer=wearer,
            kind=self.kind,
            active=active,
            t=t,
            severity=self.severity,
            reason=reason,
            values=values,
            thresholds=thresholds,
            sustain_s=sustain,
        )


_OPS: Mapping[str, Callable[[float, float], bool]] = {"<": operator.lt, ">": operator.gt}

# Kinds are the topic's last level: vigil/<site>/<wearer>/alert/<kind>.
RULES: tuple[Rule, ...] = (
    Rule("glucose_urgent_low", "glucose", "<", "glucose_urgent_low", "glucose_hysteresis", "urgent",
         "urgent low glucose", "mg/dL", "glucose_mg_dl"),
    Rule("glucose_low", "glucose", "<", "glucose_low", "glucose_hysteresis", "warning", "low glucose", "mg/dL",
         "glucose_mg_dl"),
    Rule("glucose_high", "glucose", ">", "glucose_high", "glucose_hysteresis", "info", "high glucose", "mg/dL",
         "glucose_mg_dl"),
    Rule("glucose_urgent_high", "glucose", ">", "glucose_urgent_high", "glucose_hysteresis", "urgent",
         "urgent high glucose", "mg/dL", "glucose_mg_dl"),
    Rule("heart_tachycardia", "hr", ">", "hr_high", "hr_hysteresis", "warning", "tachycardia", "bpm", "hr_bpm",
         sustain="hr_sustain_s"),
    Rule("heart_bradycardia", "hr", "<", "hr_low", "hr_hysteresis", "warning", "bradycardia", "bpm", "hr_bpm",
         sustain="hr_sustain_s"),
)  # fmt: skip

RULES_BY_SIGNAL: dict[str, tuple[Rule, ...]] = {
    s: tuple(r for r in RULES if r.signal == s) for s in {r.signal for r in RULES}
}
URGENT_KINDS = frozenset(r.kind for r in RULES if r.severity == "urgent")

# Kinds raised by the agent about its sensors and itself (the core builds their conditions).
SENSOR_STALE = "sensor_stale"
SENSOR_DISCONNECTED = "sensor_disconnected"
SENSOR_BATTERY_LOW = "sensor_battery_low"
AGENT_MODEL_UNAVAILABLE = "agent_model_unavailable"
# Raised by the glucose forecaster (agent.forecast) from the int8 model's forecast.
GLUCOSE_PREDICTED_LOW = "glucose_predicted_low"
# Raised by the AF detector (agent.rhythm) after k of its last n RR windows were irregular.
HEART_IRREGULAR_RHYTHM = "heart_irregular_rhythm"


def all_kinds() -> list[str]:
    return (
        [r.kind for r in RULES]
        + [GLUCOSE_PREDICTED_LOW, HEART_IRREGULAR_RHYTHM]
        + [SENSOR_STALE, SENSOR_DISCONNECTED, SENSOR_BATTERY_LOW, AGENT_MODEL_UNAVAILABLE]
    )


def sort_events(events: Iterable[AlertEvent]) -> list[AlertEvent]:
    return sorted(events, key=lambda e: (e.t, SEVERITY_ORDER.get(e.severity, 9)))
