"""The rule-based alert engine: one small state machine per wearer and alert kind.

A rule compares one signal (glucose, heart rate) with a wearer's threshold. An alert is *raised* once the
condition holds (for heart rate: continuously for ``hr_sustain_s``), and *cleared* only when the value is back
past the threshold by the hysteresis margin, so a value dancing on a threshold raises one alert, not twenty.

The engine is pure: it is fed readings and returns :class:`AlertEvent` records; it never touches the store or
the network. Its active episodes can be saved and restored, so a restart does not raise the same alert again.
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.config import Thresholds


@dataclass(frozen=True)
class Rule:
    """``kind`` fires when ``signal`` compared by ``op`` against the threshold named ``threshold`` is true."""

    kind: str
    signal: str
    op: str  # "<" or ">"
    threshold: str
    hysteresis: str
    severity: str
    label: str
    unit: str
    sustain: str | None = None

    def breached(self, value: float, th: Thresholds) -> bool:
        limit: float = getattr(th, self.threshold)
        return _OPS[self.op](value, limit)

    def recovered(self, value: float, th: Thresholds) -> bool:
        limit: float = getattr(th, self.threshold)
        margin: float = getattr(th, self.hysteresis)
        return value >= limit + margin if self.op == "<" else value <= limit - margin


_OPS: Mapping[str, Callable[[float, float], bool]] = {"<": operator.lt, ">": operator.gt}

# The rules, as data. Kinds are the topic's last level: vigil/<site>/<wearer>/alert/<kind>.
RULES: tuple[Rule, ...] = (
    Rule(
        "glucose_urgent_low",
        "glucose",
        "<",
        "glucose_urgent_low",
        "glucose_hysteresis",
        "urgent",
        "urgent low glucose",
        "mg/dL",
    ),
    Rule("glucose_low", "glucose", "<", "glucose_low", "glucose_hysteresis", "warning", "low glucose", "mg/dL"),
    Rule("glucose_high", "glucose", ">", "glucose_high", "glucose_hysteresis", "info", "high glucose", "mg/dL"),
    Rule(
        "glucose_urgent_high",
        "glucose",
        ">",
        "glucose_urgent_high",
        "glucose_hysteresis",
        "urgent",
        "urgent high glucose",
        "mg/dL",
    ),
    Rule(
        "heart_tachycardia",
        "hr",
        ">",
        "hr_high",
        "hr_hysteresis",
        "warning",
        "tachycardia",
        "bpm",
        sustain="hr_sustain_s",
    ),
    Rule(
        "heart_bradycardia",
        "hr",
        "<",
        "hr_low",
        "hr_hysteresis",
        "warning",
        "bradycardia",
        "bpm",
        sustain="hr_sustain_s",
    ),
)

SIGNAL_NAMES = {"glucose": "glucose_mg_dl", "hr": "hr_bpm"}
SEVERITY_ORDER = {"urgent": 0, "warning": 1, "info": 2}


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
    source: dict[str, Any] = field(default_factory=lambda: {"type": "rule"})


@dataclass
class _Track:
    """What the engine remembers for one (wearer, rule)."""

    pending_since: float | None = None
    episode: str | None = None
    raised_at: float | None = None


class AlertEngine:
    """Feeds readings through :data:`RULES` for each wearer's thresholds."""

    def __init__(
        self,
        thresholds: Mapping[str, Thresholds],
        *,
        rules: Iterable[Rule] = RULES,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._thresholds = dict(thresholds)
        self._rules: dict[str, list[Rule]] = {}
        for rule in rules:
            self._rules.setdefault(rule.signal, []).append(rule)
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._new_id = new_id

    def restore(self, active: Mapping[tuple[str, str], tuple[str, float]]) -> None:
        """Resume episodes that were raised before a restart (from ``Store.active_alerts``)."""
        for (wearer, kind), (episode, raised_at) in active.items():
            self._tracks[(wearer, kind)] = _Track(pending_since=raised_at, episode=episode, raised_at=raised_at)

    def active(self) -> dict[tuple[str, str], str]:
        return {k: tr.episode for k, tr in self._tracks.items() if tr.episode is not None}

    def feed(self, wearer: str, signal: str, value: float, t: float) -> list[AlertEvent]:
        th = self._thresholds.get(wearer)
        if th is None:
            return []
        events: list[AlertEvent] = []
        for rule in self._rules.get(signal, ()):
            track = self._tracks.setdefault((wearer, rule.kind), _Track())
            event = self._step(rule, track, wearer, value, t, th)
            if event is not None:
                events.append(event)
        events.sort(key=lambda e: SEVERITY_ORDER.get(e.severity, 9))
        return events

    def _step(
        self, rule: Rule, track: _Track, wearer: str, value: float, t: float, th: Thresholds
    ) -> AlertEvent | None:
        if track.episode is None:
            if not rule.breached(value, th):
                track.pending_since = None
                return None
            if track.pending_since is None:
                track.pending_since = t
            sustain = getattr(th, rule.sustain) if rule.sustain else 0.0
            if t - track.pending_since < sustain:
                return None
            track.episode = self._new_id()
            track.raised_at = t
            return self._event(rule, track.episode, "raised", wearer, value, t, th, track.pending_since)
        if rule.recovered(value, th):
            episode, since = track.episode, track.pending_since
            track.episode = track.raised_at = track.pending_since = None
            return self._event(rule, episode, "cleared", wearer, value, t, th, since)
        return None

    def _event(
        self,
        rule: Rule,
        episode: str,
        state: str,
        wearer: str,
        value: float,
        t: float,
        th: Thresholds,
        since: float | None,
    ) -> AlertEvent:
        limit = getattr(th, rule.threshold)
        margin = getattr(th, rule.hysteresis)
        side = "below" if rule.op == "<" else "above"
        shown = f"{value:g} {rule.unit}"
        if math.isinf(value):  # a sensor's "High"/"Low": outside its measuring range
            shown = f"{'above' if value > 0 else 'below'} the sensor's measuring range"
        if state == "raised":
            reason = f"{rule.label}: {rule.signal} {shown} is {side} the threshold of {limit:g} {rule.unit}"
            if rule.sustain and since is not None:
                reason += f" and has been for {t - since:.0f} s"
        else:
            back = limit + margin if rule.op == "<" else limit - margin
            reason = (
                f"{rule.label} cleared: {rule.signal} {shown} is back past {back:g} {rule.unit}"
                f" (threshold {limit:g} with {margin:g} {rule.unit} hysteresis)"
            )
        thresholds = {rule.threshold: limit, rule.hysteresis: margin}
        if rule.sustain:
            thresholds[rule.sustain] = getattr(th, rule.sustain)
        return AlertEvent(
            id=self._new_id(),
            episode=episode,
            wearer=wearer,
            kind=rule.kind,
            severity=rule.severity,
            state=state,
            t=t,
            reason=reason,
            values={
                SIGNAL_NAMES[rule.signal]: value if math.isfinite(value) else None,
                **({"out_of_range": "above" if value > 0 else "below"} if math.isinf(value) else {}),
                "condition_since": since,
            },
            thresholds=thresholds,
        )
