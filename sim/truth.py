"""Ground truth: the intervals of each event a scenario contains, per wearer and kind, and where they are kept.

Truth kinds are named as the alert kinds that should report them (``agent.alerts``), so scoring pairs them
directly. An event is ``scored`` when it meets its kind's definition; shorter or borderline stretches are kept
too, as ``scored = False`` ("don't care"): an alert there is neither a detection nor a false alert.

=========================  ======================================================================================
kind                       event (thresholds are the wearer's, as the agent is configured)
=========================  ======================================================================================
glucose_urgent_low         true glucose below ``glucose_urgent_low`` (54) for at least 15 min; runs less than
glucose_low                15 min apart are one event (the consensus definition of a CGM hypoglycaemia event,
glucose_high               Battelino et al. 2019; the same rule above 180 and 250 mg/dL). A real recording's
glucose_urgent_high        truth is its sensor values; a generator's is the glucose behind the sensor
heart_tachycardia          the strap's 1 Hz heart rate (rounded, as it sends it) above ``hr_high`` for at least
heart_bradycardia          ``hr_sustain_s``, runs less than 60 s apart merged; tachycardia during exercise is
                           don't-care (the design asks for context-aware alerts)
heart_irregular_rhythm     atrial fibrillation (afdb's AFIB labels, or a generated episode) lasting 5 min or
                           more, interruptions under 60 s merged; shorter AF, flutter and junctional rhythm are
                           don't-care
sensor_stale               a device delivers nothing for longer than its stale limit (``strap_stale_s``,
                           ``cgm_stale_s``): the silence itself, from its last delivery to its next
sensor_disconnected        a device out of range longer than ``disconnected_after_s``
sensor_battery_low         a device's battery below ``battery_low_pct``, until 5 points above
=========================  ======================================================================================

Sensor events carry the device (its address, as the agent labels it) in ``subject``.

A replay keeps the truth in its database, in tables the simulator creates beside the agent's own (the agent
never reads them): ``sim_run`` (one row per replay: what was played, from when to when, the wearers) and
``sim_truth`` (one row per event), so ``vigil score`` and ``vigil report`` need only the database.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.config import AlertPolicy, Thresholds
from sim.signals import BeatLabel, Beats, FloatArray, Glucose

GLUCOSE_MIN_S = 15 * 60.0
GLUCOSE_MERGE_S = 15 * 60.0
HR_MERGE_S = 60.0
AF_MIN_S = 5 * 60.0
AF_MERGE_S = 60.0
BATTERY_HYSTERESIS_PCT = 5.0
# A silence or an outage within this much of its limit is don't-care: whether the agent's once-a-second checks
# catch it is a matter of rounding.
LIMIT_MARGIN_S = 5.0

AF = "heart_irregular_rhythm"
GLUCOSE_KINDS = ("glucose_urgent_low", "glucose_low", "glucose_high", "glucose_urgent_high")
TRUTH_KINDS = (
    *GLUCOSE_KINDS,
    "heart_tachycardia",
    "heart_bradycardia",
    AF,
    "sensor_stale",
    "sensor_disconnected",
    "sensor_battery_low",
)


@dataclass(frozen=True)
class TruthEvent:
    """One event: [start, end] in epoch seconds; ``subject`` the device for sensor kinds, else ""."""

    wearer: str
    kind: str
    start: float
    end: float
    subject: str = ""
    scored: bool = True
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def runs(
    t: FloatArray, hit: npt.NDArray[Any], *, period: float, max_step: float, min_s: float, merge_s: float
) -> list[tuple[float, float, bool]]:
    """Intervals where ``hit`` holds over consecutive samples (no step between them longer than ``max_step``),
    each [first sample, last sample + period], with whether it lasts ``min_s`` (an event) or not (don't-care).
    Events less than ``merge_s`` apart are merged, and so are don't-care runs; an event never grows by
    swallowing short runs, so a rate that merely flickers over a threshold is no event."""
    raw: list[tuple[float, float]] = []
    start = prev = None
    for ti, h in zip(t.tolist(), hit.tolist(), strict=True):
        if h and start is not None and prev is not None and ti - prev <= max_step:
            prev = ti
            continue
        if start is not None and prev is not None:
            raw.append((start, prev + period))
        start, prev = (ti, ti) if h else (None, None)
    if start is not None and prev is not None:
        raw.append((start, prev + period))
    out: list[tuple[float, float, bool]] = []
    for scored in (True, False):
        merged: list[tuple[float, float]] = []
        for a, b in raw:
            if (b - a >= min_s) != scored:
                continue
            if merged and a - merged[-1][1] < merge_s:
                merged[-1] = (merged[-1][0], b)
            else:
                merged.append((a, b))
        out += [(a, b, scored) for a, b in merged]
    return sorted(out)


def glucose_truth(wearer: str, g: Glucose, th: Thresholds, t0: float, *, period: float = 300.0) -> list[TruthEvent]:
    out: list[TruthEvent] = []
    if not len(g):
        return out
    true = g.true
    rules = {
        "glucose_urgent_low": true < th.glucose_urgent_low,
        "glucose_low": true < th.glucose_low,
        "glucose_high": true > th.glucose_high,
        "glucose_urgent_high": true > th.glucose_urgent_high,
    }
    for kind, hit in rules.items():
        spans = runs(g.t, hit, period=period, max_step=2 * period, min_s=GLUCOSE_MIN_S, merge_s=GLUCOSE_MERGE_S)
        for a, b, scored in spans:
            inside = (g.t >= a) & (g.t < b)
            finite = true[inside][np.isfinite(true[inside])]
            extreme = float(finite.min() if "low" in kind else finite.max()) if len(finite) else None
            out.append(TruthEvent(wearer, kind, t0 + a, t0 + b, scored=scored, detail={"extreme_mg_dl": extreme}))
    return out


def heart_truth(
    wearer: str,
    beats: Beats,
    duration_s: float,
    th: Thresholds,
    t0: float,
    *,
    exercise: Sequence[tuple[float, float]] = (),
) -> list[TruthEvent]:
    """Tachycardia and bradycardia from the beats, through the 1 Hz rate a strap sends (see :func:`hr_truth`)."""
    if not len(beats):
        return []
    seconds, bpm = beats.hr_per_second(duration_s)
    return hr_truth(wearer, seconds, np.round(bpm), th, t0, exercise=exercise)


def hr_truth(
    wearer: str,
    seconds: FloatArray,
    hr: FloatArray,
    th: Thresholds,
    t0: float,
    *,
    exercise: Sequence[tuple[float, float]] = (),
) -> list[TruthEvent]:
    """Tachycardia and bradycardia from a heart rate at whole ``seconds`` (relative to ``t0``; NaN where
    there is none, as when the strap has no skin contact)."""
    out: list[TruthEvent] = []
    valid = np.isfinite(hr)
    rules = {
        "heart_tachycardia": valid & (np.nan_to_num(hr) > th.hr_high),
        "heart_bradycardia": valid & (np.nan_to_num(hr, nan=np.inf) < th.hr_low),
    }
    for kind, hit in rules.items():
        sustain = th.hr_sustain_s + LIMIT_MARGIN_S
        for a, b, scored in runs(seconds, hit, period=1.0, max_step=1.0, min_s=sustain, merge_s=HR_MERGE_S):
            if kind == "heart_tachycardia" and any(a < e1 and b > e0 for e0, e1 in exercise):
                scored = False
            inside = (seconds >= a) & (seconds < b) & valid
            extreme = float(hr[inside].max() if kind == "heart_tachycardia" else hr[inside].min())
            out.append(TruthEvent(wearer, kind, t0 + a, t0 + b, scored=scored, detail={"extreme_bpm": extreme}))
    return out


def rhythm_truth(wearer: str, beats: Beats, t0: float) -> list[TruthEvent]:
    """AF episodes from the beat labels: a run starts where its first beat's interval starts."""
    out: list[TruthEvent] = []
    if not len(beats):
        return out
    begin = beats.t - beats.rr
    for label, scored_ok in ((BeatLabel.AF, True), (BeatLabel.OTHER, False)):
        hit = beats.label == label
        idx = np.flatnonzero(hit)
        if not len(idx):
            continue
        # Runs of consecutive labelled beats, as [interval start, beat end].
        breaks = np.flatnonzero(np.diff(idx) > 1)
        starts = np.concatenate([[idx[0]], idx[breaks + 1]])
        ends = np.concatenate([idx[breaks], [idx[-1]]])
        spans: list[tuple[float, float]] = []
        for s, e in zip(starts, ends, strict=True):
            a, b = float(begin[s]), float(beats.t[e])
            if spans and a - spans[-1][1] < AF_MERGE_S:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        for a, b in spans:
            what = "AF" if label == BeatLabel.AF else "other rhythm (flutter, junctional)"
            out.append(
                TruthEvent(wearer, AF, t0 + a, t0 + b, scored=scored_ok and b - a >= AF_MIN_S,
                           detail={"rhythm": what})
            )  # fmt: skip
    return out


def silence_truth(
    wearer: str, device: str, deliveries: FloatArray, limit_s: float, t_start: float, t_end: float
) -> list[TruthEvent]:
    """sensor_stale events from the times a device's data reach the agent (epoch s, sorted): every gap longer
    than the limit, counting from ``t_start`` (when the agent starts listening) to ``t_end``."""
    times = np.concatenate([[t_start], deliveries, [t_end]])
    gaps = np.diff(times)
    out = []
    for i in np.flatnonzero(gaps > limit_s):
        a, b = float(times[i]), float(times[i + 1])
        out.append(
            TruthEvent(wearer, "sensor_stale", a, b, device, scored=b - a > limit_s + LIMIT_MARGIN_S,
                       detail={"silent_s": round(b - a, 1), "limit_s": limit_s})
        )  # fmt: skip
    return out


def outage_truth(
    wearer: str, device: str, spans: Iterable[tuple[float, float]], policy: AlertPolicy
) -> list[TruthEvent]:
    limit = policy.disconnected_after_s
    return [
        TruthEvent(wearer, "sensor_disconnected", a, b, device, scored=b - a > limit + LIMIT_MARGIN_S,
                   detail={"down_s": round(b - a, 1), "limit_s": limit})
        for a, b in spans
        if b - a > limit
    ]  # fmt: skip


def battery_truth(
    wearer: str, device: str, levels: Sequence[tuple[float, int]], th: Thresholds, t_end: float
) -> list[TruthEvent]:
    """sensor_battery_low from the battery levels a device reports, (epoch s, percent) in time order."""
    out = []
    low_since: float | None = None
    for t, pct in levels:
        if low_since is None and pct < th.battery_low_pct:
            low_since = t
        elif low_since is not None and pct >= th.battery_low_pct + BATTERY_HYSTERESIS_PCT:
            out.append(TruthEvent(wearer, "sensor_battery_low", low_since, t, device))
            low_since = None
    if low_since is not None:
        out.append(TruthEvent(wearer, "sensor_battery_low", low_since, t_end, device))
    return out


# -- keeping it in the replay's database ----------------------------------------------------------------------

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sim_run (
        id INTEGER PRIMARY KEY,
        scenario TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        start REAL NOT NULL,
        end REAL NOT NULL,
        wearers TEXT NOT NULL,
        meta TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS sim_truth (
        run INTEGER NOT NULL REFERENCES sim_run (id),
        wearer TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT NOT NULL,
        start REAL NOT NULL,
        end REAL NOT NULL,
        scored INTEGER NOT NULL,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS sim_truth_run_kind ON sim_truth (run, kind, wearer)",
    # What a subscriber saw on the wearers' retained state topics (forecasts, rhythm), for reports.
    """CREATE TABLE IF NOT EXISTS sim_state (
        run INTEGER NOT NULL REFERENCES sim_run (id),
        wearer TEXT NOT NULL,
        t REAL NOT NULL,
        state TEXT NOT NULL
    )""",
)


@dataclass(frozen=True)
class Run:
    """What a replay played: ``kind`` is "scenario" or "recording"; ``wearers`` maps each wearer to its
    devices ({"strap": address, "cgm": address}); ``meta`` holds anything else (speed, wall time, stats)."""

    id: int
    scenario: str
    kind: str
    source: str
    start: float
    end: float
    wearers: dict[str, dict[str, str]]
    meta: dict[str, Any]

    @property
    def wearer_days(self) -> float:
        return len(self.wearers) * (self.end - self.start) / 86400.0


def create_tables(conn: sqlite3.Connection) -> None:
    with conn:
        for statement in SCHEMA:
            conn.execute(statement)


def save_run(
    conn: sqlite3.Connection,
    *,
    scenario: str,
    kind: str,
    source: str,
    start: float,
    end: float,
    wearers: dict[str, dict[str, str]],
    meta: dict[str, Any],
    truth: Iterable[TruthEvent],
) -> int:
    create_tables(conn)
    with conn:
        cur = conn.execute(
            "INSERT INTO sim_run (scenario, kind, source, start, end, wearers, meta) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (scenario, kind, source, start, end, json.dumps(wearers), json.dumps(meta)),
        )
        run = int(cur.lastrowid or 0)
        conn.executemany(
            "INSERT INTO sim_truth (run, wearer, kind, subject, start, end, scored, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(run, e.wearer, e.kind, e.subject, e.start, e.end, int(e.scored), json.dumps(e.detail)) for e in truth],
        )
    return run


def update_meta(conn: sqlite3.Connection, run: int, meta: dict[str, Any]) -> None:
    with conn:
        conn.execute("UPDATE sim_run SET meta = ? WHERE id = ?", (json.dumps(meta), run))


def load_run(conn: sqlite3.Connection, run: int | None = None) -> Run | None:
    """The replay recorded in this database (the latest if several), or None if it holds none."""
    has = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'sim_run'").fetchone()
    if not has:
        return None
    sql = "SELECT id, scenario, kind, source, start, end, wearers, meta FROM sim_run"
    row = (
        conn.execute(sql + " WHERE id = ?", (run,)).fetchone()
        if run is not None
        else conn.execute(sql + " ORDER BY id DESC LIMIT 1").fetchone()
    )
    if row is None:
        return None
    return Run(int(row[0]), row[1], row[2], row[3], float(row[4]), float(row[5]), json.loads(row[6]),
               json.loads(row[7]))  # fmt: skip


def load_truth(conn: sqlite3.Connection, run: int) -> list[TruthEvent]:
    rows = conn.execute(
        "SELECT wearer, kind, subject, start, end, scored, detail FROM sim_truth WHERE run = ? ORDER BY start",
        (run,),
    ).fetchall()
    return [TruthEvent(r[0], r[1], r[3], r[4], r[2], bool(r[5]), json.loads(r[6])) for r in rows]


def save_states(conn: sqlite3.Connection, run: int, rows: Iterable[tuple[str, float, dict[str, Any]]]) -> None:
    with conn:
        conn.executemany(
            "INSERT INTO sim_state (run, wearer, t, state) VALUES (?, ?, ?, ?)",
            [(run, w, t, json.dumps(s)) for w, t, s in rows],
        )


def load_states(conn: sqlite3.Connection, run: int) -> list[tuple[str, float, dict[str, Any]]]:
    rows = conn.execute("SELECT wearer, t, state FROM sim_state WHERE run = ? ORDER BY t", (run,)).fetchall()
    return [(r[0], float(r[1]), json.loads(r[2])) for r in rows]


def finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None
