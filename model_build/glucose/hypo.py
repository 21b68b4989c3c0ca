"""Predicted hypoglycaemia at the alert level: events, alert episodes, and how they match.

Events (the international consensus, Battelino et al., Diabetes Care 2019, level 1): on the 5-minute grid of
a subject's readings (``Low`` device strings counted as 39 mg/dL), an event begins at the first of at least
three consecutive values below 70 mg/dL (15 minutes) and ends once values have been at or above 70 for three
consecutive grid points; a gap in the data ends it too. An event counts for sensitivity (it is *predictable*)
when the 30 minutes before its onset were observed (the six grid values before it all present): no
forecaster can warn about a low that follows a hole in the data.

Alerts: the ``glucose_predicted_low`` episodes the agent's alert engine raised and cleared while the subject's
readings were replayed through it (:func:`replay`), each ``(raised, cleared)`` (cleared = the end of the data
when it never cleared).

Matching (:func:`match`), with ``W`` = 30 minutes:

- an episode *warns* an event with onset ``o`` when it was raised before ``o`` and was still active at some
  time in ``[o - W, o)``; the event is *detected* when an episode warns it, with lead time ``o`` minus the
  earliest such raise;
- an episode not warning of an event is still *true* when the glucose went below 70 mg/dL within ``W`` of its
  raise (what it announced happened, if for less than the 15 minutes of an event);
- an episode raised during an event (the glucose already low) is late, not false;
- every other episode is a *false alert*.

Figures: sensitivity = detected / predictable events; false alerts per day = false episodes / observed days
(grid values present x 5 minutes); median lead time over the detected events, in minutes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.alerts import AlertEngine
from agent.config import Thresholds
from agent.forecast import KIND, GlucoseForecaster
from agent.signals.glucose import GlucoseGrid
from agent.signals.quality import UNUSABLE_CGM_STATUS
from model_build.glucose.data import Subject

FloatArray = npt.NDArray[np.float64]

HYPO_MG_DL = 70.0
MIN_RUN = 3  # grid points: 15 minutes
WARNING_WINDOW_S = 1800.0
_BELOW = "result_lower_than_device_can_process"
_ABOVE = "result_higher_than_device_can_process"
assert _BELOW in UNUSABLE_CGM_STATUS
assert _ABOVE in UNUSABLE_CGM_STATUS


@dataclass(frozen=True)
class Event:
    onset_s: float
    end_s: float
    predictable: bool


@dataclass(frozen=True)
class Episode:
    raised_s: float
    cleared_s: float


@dataclass
class HypoCounts:
    """Sums over subjects, turned into the figures by :meth:`figures`."""

    events: int = 0
    predictable: int = 0
    detected: int = 0
    false_alerts: int = 0
    dips: int = 0
    late_alerts: int = 0
    episodes: int = 0
    observed_days: float = 0.0
    leads_min: list[float] | None = None

    def add(self, other: HypoCounts) -> None:
        self.events += other.events
        self.predictable += other.predictable
        self.detected += other.detected
        self.false_alerts += other.false_alerts
        self.dips += other.dips
        self.late_alerts += other.late_alerts
        self.episodes += other.episodes
        self.observed_days += other.observed_days
        self.leads_min = (self.leads_min or []) + (other.leads_min or [])

    def figures(self) -> dict[str, float | int | None]:
        leads = self.leads_min or []
        return {
            "sensitivity": self.detected / self.predictable if self.predictable else None,
            "false_alerts_per_day": self.false_alerts / self.observed_days if self.observed_days else None,
            "median_lead_min": float(np.median(leads)) if leads else None,
            "events": self.events,
            "predictable_events": self.predictable,
            "detected_events": self.detected,
            "detected_lead_15_min": int(sum(1 for v in leads if v >= 15.0)),
            "alerts": self.episodes,
            "false_alerts": self.false_alerts,
            "true_dip_alerts": self.dips,
            "late_alerts": self.late_alerts,
            "observed_days": round(self.observed_days, 2),
        }


def hypo_events(grid: GlucoseGrid, threshold: float = HYPO_MG_DL) -> list[Event]:
    """Consensus level-1 events on a grid (NaN = no data)."""
    v, t = grid.mg_dl, grid.t_s
    n = v.size
    events: list[Event] = []
    i = 0
    while i < n:
        if not (np.isfinite(v[i]) and v[i] < threshold and _run(v, i, below=True)):
            i += 1
            continue
        onset = i
        j = i
        while j < n and np.isfinite(v[j]):
            if v[j] >= threshold and _run(v, j, below=False):
                break
            j += 1
        end = min(j, n - 1)
        before = v[max(0, onset - 6) : onset]
        predictable = onset >= 6 and bool(np.all(np.isfinite(before)))
        events.append(Event(float(t[onset]), float(t[end]), predictable))
        i = j + MIN_RUN if j < n and np.isfinite(v[j]) else j + 1
    return events


def _run(v: FloatArray, i: int, *, below: bool) -> bool:
    seg = v[i : i + MIN_RUN]
    if seg.size < MIN_RUN or not np.all(np.isfinite(seg)):
        return False
    return bool(np.all(seg < HYPO_MG_DL) if below else np.all(seg >= HYPO_MG_DL))


def match(events: Sequence[Event], episodes: Sequence[Episode], truth: Truth) -> HypoCounts:
    """Count detected events, leads and false alerts (module docstring)."""
    counts = HypoCounts(events=len(events), observed_days=truth.days, episodes=len(episodes))
    warned: set[int] = set()
    leads: list[float] = []
    for ev in events:
        warners = [
            i
            for i, e in enumerate(episodes)
            if e.raised_s < ev.onset_s and e.cleared_s >= ev.onset_s - WARNING_WINDOW_S
        ]
        warned.update(warners)
        if not ev.predictable:
            continue
        counts.predictable += 1
        if warners:
            counts.detected += 1
            leads.append((ev.onset_s - min(episodes[i].raised_s for i in warners)) / 60.0)
    counts.leads_min = leads
    lows = truth.lows_s
    for idx, e in enumerate(episodes):
        if idx in warned:
            continue
        first = int(np.searchsorted(lows, e.raised_s, side="left"))
        if any(ev.onset_s <= e.raised_s <= ev.end_s for ev in events):
            counts.late_alerts += 1
        elif first < lows.size and lows[first] <= e.raised_s + WARNING_WINDOW_S:
            counts.dips += 1
        else:
            counts.false_alerts += 1
    return counts


@dataclass(frozen=True, eq=False)
class Truth:
    """What alerts are matched against, from a subject's truth grid."""

    events: list[Event]
    lows_s: FloatArray  # grid times with a value below 70 mg/dL, sorted
    days: float
    end_s: float

    @classmethod
    def of(cls, grid: GlucoseGrid, threshold: float = HYPO_MG_DL) -> Truth:
        low = np.isfinite(grid.mg_dl) & (grid.mg_dl < threshold)
        return cls(
            events=hypo_events(grid, threshold),
            lows_s=grid.t_s[low],
            days=observed_days(grid),
            end_s=float(grid.t_s[-1]) if grid.t_s.size else 0.0,
        )


def observed_days(grid: GlucoseGrid) -> float:
    step = float(grid.t_s[1] - grid.t_s[0]) if grid.t_s.size > 1 else 300.0
    return float(np.count_nonzero(np.isfinite(grid.mg_dl)) * step / 86400.0)


def replay(subject: Subject, forecaster: GlucoseForecaster, thresholds: Thresholds | None = None) -> list[Episode]:
    """Feed the subject's readings, in time order, through the forecaster and a fresh alert engine, as the
    agent would receive them live: ``Low``/``High`` as -inf/+inf with the status bit that keeps them out of
    the model. Returns the predicted-low episodes."""
    wearer = subject.key
    engine = AlertEngine({wearer: thresholds or Thresholds()})
    order = np.argsort(subject.t_s, kind="stable")
    values = np.where(subject.below_range, -np.inf, np.where(subject.above_range, np.inf, subject.mg_dl))
    below, above = subject.below_range, subject.above_range
    raised: float | None = None
    episodes: list[Episode] = []
    last_t = float("nan")
    for i in order:
        t = float(subject.t_s[i])
        status: Iterable[str] = (_BELOW,) if below[i] else (_ABOVE,) if above[i] else ()
        conditions, _ = forecaster.feed(wearer, t, float(values[i]), status, None)
        for cond in conditions:
            for ev in engine.assess(cond):
                if ev.kind != KIND:
                    continue
                if ev.state == "raised":
                    raised = ev.t
                elif ev.state == "cleared" and raised is not None:
                    episodes.append(Episode(raised, ev.t))
                    raised = None
        last_t = t
    if raised is not None:
        episodes.append(Episode(raised, last_t))
    return episodes


def available_at(subject: Subject, t_end_s: FloatArray) -> FloatArray:
    """When the agent first holds each window: the time of the first usable reading at or after its last grid
    point (the grid value there needs a reading on each side). Tuning replays conditions at these times, as
    :func:`replay` does, not at the grid times, which would flatter the lead time by up to one step."""
    t = np.sort(subject.t_s[np.isfinite(subject.mg_dl)])
    if t.size == 0:
        return np.asarray(t_end_s, dtype=np.float64).copy()
    at = np.searchsorted(t, t_end_s, side="left")
    out: FloatArray = t[np.minimum(at, t.size - 1)]
    return out


def simulate(
    t_s: FloatArray, trigger: FloatArray, *, on: float, off: float, sustain_s: float, end_s: float
) -> list[Episode]:
    """The alert engine's state machine for one condition stream, fast, for tuning on TRAIN validation:
    ``trigger`` per condition time (NaN: no condition that time), active below ``on``, cleared at or above
    ``off``. Agrees with :class:`agent.alerts.AlertEngine` (a test checks)."""
    episodes: list[Episode] = []
    pending: float | None = None
    raised: float | None = None
    for t, x in zip(t_s.tolist(), trigger.tolist(), strict=True):
        if x != x:  # NaN: no condition
            continue
        if raised is None:
            if x < on:
                if pending is None:
                    pending = t
                if t - pending >= sustain_s:
                    raised = t
            else:
                pending = None
        elif x >= off:
            episodes.append(Episode(raised, t))
            raised = None
            pending = None
    if raised is not None:
        episodes.append(Episode(raised, end_s))
    return episodes
