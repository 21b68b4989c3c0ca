"""``vigil score``: a replay's alerts against its ground truth, per alert kind.

For each kind whose truth the run knows (``sim_run.meta.truth_kinds``), with the truth events of that kind
(or, for ``glucose_predicted_low``, of ``glucose_low``) and the alert episodes the agent raised (the
``raised`` rows of its ``alerts`` table), per wearer and, for sensor kinds, per device:

* an event is **detected** when an episode was raised within its window, from ``early`` before its start to
  ``late`` after its end (:data:`RULES`), or when an episode raised before that was still active at its start;
* **sensitivity** = detected events / events (``null`` when the run has none);
* a **false alert** is an episode raised inside no event's window, not even a don't-care one (see
  :mod:`sim.truth`); ``false_alerts_per_day`` divides by wearer-days (wearers x the run's length);
* **lead** = event start - the first episode raised in its window, in minutes: positive when the alert came
  before the event began (a prediction, or sensor noise crossing first), negative when it lagged. Events
  covered by an episode raised before their window have no lead. ``median_lead_min`` and the distribution
  (``lead_min``: min, p10, median, p90, max).

Kinds the agent raised but the run has no truth for (``agent_model_unavailable``; AF on a recording) are
listed under ``unscored`` with their counts.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from sim.replay import ReplayError
from sim.truth import AF, TruthEvent, load_run, load_truth


@dataclass(frozen=True)
class Rule:
    """How alerts of a kind are paired with truth: the truth kind, and how early (s) before an event's start
    and how late after its end an alert still counts for it."""

    truth: str
    early_s: float
    late_s: float


RULES: dict[str, Rule] = {
    # A CGM reading lands every 5 minutes and sensor noise may cross the threshold a reading before the truth.
    "glucose_urgent_low": Rule("glucose_urgent_low", 15 * 60, 10 * 60),
    "glucose_low": Rule("glucose_low", 15 * 60, 10 * 60),
    "glucose_high": Rule("glucose_high", 15 * 60, 10 * 60),
    "glucose_urgent_high": Rule("glucose_urgent_high", 15 * 60, 10 * 60),
    # A forecast is useful up to an hour ahead.
    "glucose_predicted_low": Rule("glucose_low", 60 * 60, 0.0),
    "heart_tachycardia": Rule("heart_tachycardia", 60, 120),
    "heart_bradycardia": Rule("heart_bradycardia", 60, 120),
    # AF detectors need persistence (minutes of irregular windows) before they alert.
    AF: Rule(AF, 60, 30 * 60),
    "sensor_stale": Rule("sensor_stale", 0, 120),
    "sensor_disconnected": Rule("sensor_disconnected", 0, 120),
    "sensor_battery_low": Rule("sensor_battery_low", 60, 120),
}


@dataclass(frozen=True)
class Episode:
    wearer: str
    kind: str
    subject: str
    raised: float
    cleared: float | None
    episode: str


def episodes(conn: sqlite3.Connection) -> list[Episode]:
    """Every alert episode in the agent's ``alerts`` table, with when it was raised and cleared."""
    rows = conn.execute("SELECT episode, wearer, kind, state, t, payload FROM alerts ORDER BY t, rowid").fetchall()
    raised: dict[str, tuple[str, str, str, float]] = {}
    cleared: dict[str, float] = {}
    for episode, wearer, kind, state, t, payload in rows:
        if state == "raised" and episode not in raised:
            subject = json.loads(payload).get("device") or ""
            raised[episode] = (wearer, kind, subject, float(t))
        elif state == "cleared":
            cleared[episode] = float(t)
    return [Episode(w, k, s, t, cleared.get(e), e) for e, (w, k, s, t) in raised.items()]


def _group(truth: Iterable[TruthEvent], kind: str) -> dict[tuple[str, str], list[TruthEvent]]:
    out: dict[tuple[str, str], list[TruthEvent]] = defaultdict(list)
    for e in truth:
        if e.kind == kind:
            out[(e.wearer, e.subject)].append(e)
    return out


def score_kind(kind: str, truth: list[TruthEvent], alerts: list[Episode], wearer_days: float) -> dict[str, Any]:
    rule = RULES[kind]
    events = _group(truth, rule.truth)
    mine = [a for a in alerts if a.kind == kind]
    sensor = kind.startswith("sensor_")
    detected = 0
    leads: list[float] = []
    used: set[str] = set()
    n_events = 0
    for (wearer, subject), evs in events.items():
        candidates = [a for a in mine if a.wearer == wearer and (not sensor or a.subject == subject)]
        for e in evs:
            if not e.scored:
                continue
            n_events += 1
            lo, hi = e.start - rule.early_s, e.end + rule.late_s
            inside = [a for a in candidates if lo <= a.raised <= hi]
            covering = [a for a in candidates if a.raised < lo and (a.cleared is None or a.cleared > e.start)]
            if inside:
                detected += 1
                leads.append((e.start - min(a.raised for a in inside)) / 60.0)
            elif covering:
                detected += 1
    for a in mine:
        evs = events.get((a.wearer, a.subject if sensor else ""), [])
        if any(e.start - rule.early_s <= a.raised <= e.end + rule.late_s for e in evs):
            used.add(a.episode)
    false = [a for a in mine if a.episode not in used]
    lead = np.array(leads)
    dist = None
    if len(lead):
        dist = {
            "min": round(float(lead.min()), 2),
            "p10": round(float(np.percentile(lead, 10)), 2),
            "median": round(float(np.median(lead)), 2),
            "p90": round(float(np.percentile(lead, 90)), 2),
            "max": round(float(lead.max()), 2),
        }
    return {
        "events": n_events,
        "detected": detected,
        "sensitivity": round(detected / n_events, 4) if n_events else None,
        "alerts": len(mine),
        "false_alerts": len(false),
        "false_alerts_per_day": round(len(false) / wearer_days, 3) if wearer_days > 0 else None,
        "median_lead_min": dist["median"] if dist else None,
        "lead_min": dist,
    }


def score_db(db: Path) -> dict[str, Any]:
    """The score of the replay recorded in ``db``. Raises ReplayError if it holds no replay."""
    if not db.exists():
        raise ReplayError(f"{db}: no such file")
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        run = load_run(conn)
        if run is None:
            raise ReplayError(f"{db} holds no replay (no sim_run table): run `vigil replay` into it first")
        truth = load_truth(conn, run.id)
        alerts = episodes(conn)
    known = set(run.meta.get("truth_kinds") or [])
    kinds: dict[str, Any] = {}
    for kind, rule in RULES.items():
        if rule.truth not in known:
            continue
        raised = any(a.kind == kind for a in alerts)
        has_truth = any(e.kind == rule.truth for e in truth)
        if kind == "glucose_predicted_low" and not raised:
            continue  # no forecaster in this agent: nothing to say about predictions
        if raised or has_truth or kind in known:
            kinds[kind] = score_kind(kind, truth, alerts, run.wearer_days)
    unscored = Counter(a.kind for a in alerts if a.kind not in kinds)
    return {
        "db": str(db),
        "scenario": run.scenario,
        "run": run.kind,
        "wearers": len(run.wearers),
        "hours": round((run.end - run.start) / 3600.0, 3),
        "wearer_days": round(run.wearer_days, 4),
        "kinds": kinds,
        "unscored": dict(sorted(unscored.items())),
    }


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(result: dict[str, Any], out: TextIO) -> None:
    out.write(
        f"Score of {result['scenario']} ({result['run']}, {result['wearers']} wearer(s), {result['hours']:g} h, "
        f"{result['wearer_days']:g} wearer-days)\n"
    )
    header = f"{'kind':<24} {'events':>6} {'detected':>8} {'sensitivity':>11} {'alerts':>6} {'false':>5} "
    header += f"{'false/day':>9} {'lead min (median)':>17} {'lead p10..p90':>15}"
    out.write(header + "\n" + "-" * len(header) + "\n")
    for kind, k in result["kinds"].items():
        dist = k["lead_min"]
        spread = f"{dist['p10']:.1f}..{dist['p90']:.1f}" if dist else "-"
        out.write(
            f"{kind:<24} {k['events']:>6} {k['detected']:>8} {_fmt(k['sensitivity']):>11} {k['alerts']:>6} "
            f"{k['false_alerts']:>5} {_fmt(k['false_alerts_per_day']):>9} {_fmt(k['median_lead_min'], '.1f'):>17} "
            f"{spread:>15}\n"
        )
    if result["unscored"]:
        out.write("not scored (no truth for these): " + ", ".join(f"{k} {n}" for k, n in result["unscored"].items()))
        out.write("\n")
