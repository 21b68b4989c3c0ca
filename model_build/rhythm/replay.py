"""Alerts from a record: its windows' AF probabilities through the k-of-n policy and the agent's alert engine.

Two ways, which agree (``tests/model_build/test_rhythm_pipeline.py`` checks it on the fixture):

- :func:`replay_scores` takes scores already computed for a record's windows (TRAIN selection uses the
  out-of-fold float probabilities) and applies ``agent.rhythm.KOfN``'s rule and the alert engine's raise and
  clear to all of them at once, vectorised (a build tries a hundred policies on 400,000 windows);
- :func:`replay_agent` feeds the record's beats one at a time through ``agent.rhythm.RhythmDetector`` (the
  packaged int8 model, the agent's buffers and gates) into the alert engine: the TEST figures use this.

Then :func:`episode_figures` matches alert episodes with the record's reference AF episodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.alerts import AlertEngine, Condition
from agent.config import AlertPolicy, Thresholds
from agent.rhythm import AlertRule, RhythmDetector
from model_build.rhythm.data import Episode, Rhythm, RRRecord

MIN_EPISODE_S = 300.0  # the "AF episodes of 5 minutes or more"
# A raise within this long after an AF or AFL episode ended still rests on that episode's windows.
TRUE_ALERT_GRACE_S = 300.0
_WEARER = "replay"


@dataclass(frozen=True)
class AlertSpan:
    """One alert episode: raised at ``start``, cleared at ``end`` (the record's end when never cleared)."""

    start: float
    end: float


def _engine() -> AlertEngine:
    # No threshold rules fire here (no hr/glucose readings are fed); the policy's renotify intervals do not
    # matter (no ticks). Only the model's conditions reach the engine.
    return AlertEngine({_WEARER: Thresholds()}, AlertPolicy(), new_id=_counter())


def _counter() -> Callable[[], str]:
    n = iter(range(1 << 62))
    return lambda: f"{next(n):016x}"


def _spans(conditions: Sequence[Condition], end_s: float) -> list[AlertSpan]:
    engine = _engine()
    spans: list[AlertSpan] = []
    open_at: float | None = None
    for cond in conditions:
        for event in engine.assess(cond):
            if event.state == "raised":
                open_at = event.t
            elif event.state == "cleared" and open_at is not None:
                spans.append(AlertSpan(open_at, event.t))
                open_at = None
    if open_at is not None:
        spans.append(AlertSpan(open_at, max(end_s, open_at)))
    return spans


def policy_states(
    t_end_s: npt.NDArray[np.float64], irregular: npt.NDArray[np.bool_], rule: AlertRule
) -> npt.NDArray[np.int8]:
    """``agent.rhythm.KOfN.push`` for every scored window at once: 1 active, 0 inactive, -1 unchanged (None).

    Window i counts the irregular ones among the last n scored windows that ended no more than ``max_age_s``
    before it, as the policy's bounded history does.
    """
    t = np.asarray(t_end_s, dtype=np.float64)
    flags = np.asarray(irregular, dtype=bool)
    if t.size == 0:
        return np.zeros(0, dtype=np.int8)
    index = np.arange(t.size)
    lo = np.maximum(index - rule.n + 1, np.searchsorted(t, t - rule.max_age_s, side="left"))
    cum = np.concatenate([[0], np.cumsum(flags)])
    count = cum[index + 1] - cum[lo]
    return np.where(count >= rule.k, 1, np.where(count == 0, 0, -1)).astype(np.int8)


def spans_from_states(t_end_s: npt.NDArray[np.float64], states: npt.NDArray[np.int8], end_s: float) -> list[AlertSpan]:
    """What the alert engine makes of the policy's states (kind with no sustain, never snoozed): raised at an
    active window while none is raised, cleared at an inactive one."""
    decisive = np.flatnonzero(states >= 0)
    if decisive.size == 0:
        return []
    on = states[decisive] == 1
    before = np.concatenate([[False], on[:-1]])
    starts = decisive[on & ~before]
    ends = decisive[~on & before]
    spans = []
    for i, s in enumerate(starts.tolist()):
        stop = float(t_end_s[ends[i]]) if i < ends.size else max(end_s, float(t_end_s[s]))
        spans.append(AlertSpan(float(t_end_s[s]), stop))
    return spans


def replay_scores(
    t_end_s: npt.NDArray[np.float64],
    score: npt.NDArray[np.float64],
    scored: npt.NDArray[np.bool_],
    threshold: float,
    rule: AlertRule,
    end_s: float,
) -> list[AlertSpan]:
    """Alert spans of one record from its windows in time order (``scored`` False: gated, not counted)."""
    keep = np.asarray(scored, dtype=bool)
    t = np.asarray(t_end_s, dtype=np.float64)[keep]
    states = policy_states(t, np.asarray(score)[keep] >= threshold, rule)
    return spans_from_states(t, states, end_s)


def replay_agent(record: RRRecord, detector: RhythmDetector) -> list[AlertSpan]:
    """Alert spans of one record fed beat by beat through the agent's detector (contact always detected)."""
    conditions: list[Condition] = []
    wearer = f"{record.set}/{record.record}"
    for t, rr in zip(record.t_s.tolist(), record.rr_s.tolist(), strict=True):
        found, _ = detector.feed_rr(wearer, t, rr, "detected")
        conditions.extend(replace_wearer(c) for c in found)
    end = float(record.t_s[-1]) if len(record) else 0.0
    return _spans(conditions, end)


def replace_wearer(c: Condition) -> Condition:
    return Condition(
        _WEARER, c.kind, c.active, c.t, c.severity, c.reason, c.values, c.thresholds, c.subject, c.sustain_s, c.source
    )


@dataclass(frozen=True)
class EpisodeFigures:
    """Per record or summed: AF episodes >= 5 min, how many an alert covered, delays, and raises outside AF."""

    episodes: int
    alerted: int
    delays_s: tuple[float, ...]  # alerted episodes not already under an alert at their start: raise - start
    already_on: int  # alerted episodes that began while an alert raised earlier was still on
    alerts: int
    false_alerts: int
    hours: float
    non_af_hours: float

    @staticmethod
    def total(parts: Sequence[EpisodeFigures]) -> EpisodeFigures:
        return EpisodeFigures(
            episodes=sum(p.episodes for p in parts),
            alerted=sum(p.alerted for p in parts),
            delays_s=tuple(d for p in parts for d in p.delays_s),
            already_on=sum(p.already_on for p in parts),
            alerts=sum(p.alerts for p in parts),
            false_alerts=sum(p.false_alerts for p in parts),
            hours=sum(p.hours for p in parts),
            non_af_hours=sum(p.non_af_hours for p in parts),
        )

    @property
    def alerted_share(self) -> float:
        return self.alerted / self.episodes if self.episodes else math.nan

    @property
    def median_delay_s(self) -> float:
        return float(np.median(self.delays_s)) if self.delays_s else math.nan

    def false_alerts_per_24h(self) -> float:
        return 24.0 * self.false_alerts / self.non_af_hours if self.non_af_hours > 0 else math.nan


def episode_figures(record: RRRecord, spans: Sequence[AlertSpan]) -> EpisodeFigures:
    """Match alert spans with the record's AF episodes (a record with no episodes is sinus throughout).

    Episodes are clipped to the span the record's beats cover (an excerpt's table may reach beyond it).
    An AF episode (AFIB, >= 5 min) is alerted when an alert span overlaps it. Its delay is the first raise
    inside it minus its start; an episode that began while an earlier alert was still on (afdb's paroxysms
    come in bursts) has none and is counted in ``already_on`` instead. A raise is false when it
    falls outside every AFIB and AFL episode extended by ``TRUE_ALERT_GRACE_S``.
    """
    episodes = _clipped(record)
    long_af = [e for e in episodes if e.rhythm == Rhythm.AFIB and e.duration_s >= MIN_EPISODE_S]
    alerted, already_on, delays = 0, 0, []
    for ep in long_af:
        overlapping = [s for s in spans if s.start <= ep.end_s and s.end >= ep.start_s]
        if not overlapping:
            continue
        alerted += 1
        if any(s.start <= ep.start_s for s in overlapping):
            already_on += 1
        else:
            delays.append(min(s.start for s in overlapping) - ep.start_s)
    cover: list[Episode] = [e for e in episodes if e.rhythm in (Rhythm.AFIB, Rhythm.AFL)]
    false = sum(1 for s in spans if not any(e.start_s <= s.start <= e.end_s + TRUE_ALERT_GRACE_S for e in cover))
    hours = record.hours
    af_hours = sum(e.duration_s for e in cover) / 3600.0
    return EpisodeFigures(
        episodes=len(long_af),
        alerted=alerted,
        delays_s=tuple(delays),
        already_on=already_on,
        alerts=len(spans),
        false_alerts=false,
        hours=hours,
        non_af_hours=max(hours - af_hours, 0.0),
    )


def _clipped(record: RRRecord) -> list[Episode]:
    if len(record) == 0:
        return []
    first, last = float(record.t_s[0] - record.rr_s[0]), float(record.t_s[-1])
    out = []
    for e in record.episodes:
        start, end = max(e.start_s, first), min(e.end_s, last)
        if end > start:
            out.append(Episode(e.rhythm, start, end))
    return out
