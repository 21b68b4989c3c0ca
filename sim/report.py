"""``vigil report``: pictures of a replay and one HTML page that shows them, from its database alone.

Per wearer, into ``--out``:

* ``<wearer>-glucose.png``: the CGM readings the agent stored, the thresholds, the truth's glucose events
  shaded (low/urgent low red, high/urgent high orange), each alert raised (a triangle at its time, labelled
  with its kind) and, when the agent published forecasts on the state topic, the forecast at each horizon with
  its interval;
* ``<wearer>-heart.png``: the heart rate (1 Hz, bpm) with its thresholds and alerts, and below it the RR
  tachogram (every interval, ms) with the truth's AF episodes shaded and, when the agent published one, its
  AF probability;
* ``index.html``: the run (what was played, how fast, what the agent counted), the score table
  (:mod:`sim.score`), the pictures, and every alert message in order.

Needs matplotlib (the ``demo`` extra). Readings outside the run's time span are left out.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sim.replay import ReplayError
from sim.score import score_db
from sim.truth import AF, Run, TruthEvent, load_run, load_states, load_truth

_SENSOR_KINDS = {"sensor_stale", "sensor_disconnected", "sensor_battery_low"}
# Silences and outages are shaded; a low battery is shown by its alert bar only (it lasts to the end).
_SENSOR_SHADES = {"sensor_stale": "#bdbdbd", "sensor_disconnected": "#737373"}
_KIND_COLOURS = {
    "glucose_urgent_low": "#b30000",
    "glucose_low": "#e34a33",
    "glucose_predicted_low": "#fc8d59",
    "glucose_high": "#fdae61",
    "glucose_urgent_high": "#d7301f",
    "heart_tachycardia": "#6a51a3",
    "heart_bradycardia": "#2171b5",
    AF: "#cb181d",
    "sensor_stale": "#636363",
    "sensor_disconnected": "#252525",
    "sensor_battery_low": "#8c6d31",
}


def _figure(width: float, height: float, rows: int = 1) -> tuple[Any, Any]:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ReplayError("vigil report needs matplotlib: pip install 'vigil[demo]'") from exc
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _hours(t: npt.NDArray[Any] | float, t0: float) -> Any:
    return (np.asarray(t, dtype=float) - t0) / 3600.0


def _readings(conn: sqlite3.Connection, wearer: str, kind: str, run: Run) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    rows = conn.execute(
        "SELECT t, value FROM readings WHERE wearer = ? AND kind = ? AND t >= ? AND t <= ? ORDER BY t",
        (wearer, kind, run.start - 60, run.end + 60),
    ).fetchall()
    if not rows:
        return np.zeros(0), np.zeros(0)
    arr = np.array([(r[0], math.nan if r[1] is None else r[1]) for r in rows], dtype=float)
    return arr[:, 0], arr[:, 1]


def _alerts(conn: sqlite3.Connection, wearer: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT payload FROM alerts WHERE wearer = ? ORDER BY t, rowid", (wearer,)).fetchall()
    return [json.loads(r[0]) for r in rows]


def _t(payload: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(payload["time"]).replace("Z", "+00:00")).timestamp()


def _shade(ax: Any, events: list[TruthEvent], kinds: dict[str, str], t0: float) -> None:
    labelled: set[str] = set()
    for e in events:
        colour = kinds.get(e.kind)
        if colour is None:
            continue
        label = None
        if e.kind not in labelled and e.scored:
            label = f"truth: {e.kind}"
            labelled.add(e.kind)
        ax.axvspan(_hours(e.start, t0), _hours(e.end, t0), color=colour, alpha=0.18 if e.scored else 0.07,
                   lw=0, label=label)  # fmt: skip


def _mark_alerts(
    ax: Any, alerts: list[dict[str, Any]], kinds: set[str], t0: float, end: float, y: float, step: float,
    devices: set[str] | None = None,
) -> None:  # fmt: skip
    """Each alert episode of ``kinds`` as a bar from raised to cleared (or the end), a triangle where it was
    raised; one row per kind, from ``y`` down by ``step``. Sensor kinds only for ``devices``."""
    raised: dict[str, tuple[str, float]] = {}
    cleared: dict[str, float] = {}
    for a in alerts:
        kind = str(a.get("kind"))
        if kind not in kinds:
            continue
        if kind.startswith("sensor_") and devices is not None and a.get("device") not in devices:
            continue
        if a.get("state") == "raised":
            raised.setdefault(str(a["episode"]), (kind, _t(a)))
        elif a.get("state") == "cleared":
            cleared[str(a["episode"])] = _t(a)
    rows = {k: i for i, k in enumerate(sorted({k for k, _ in raised.values()}))}
    shown: set[str] = set()
    for episode, (kind, t) in raised.items():
        colour = _KIND_COLOURS.get(kind, "black")
        row = y - step * rows[kind]
        x0, x1 = _hours(t, t0), _hours(cleared.get(episode, end), t0)
        ax.plot([x0, x1], [row, row], color=colour, lw=3, solid_capstyle="butt", zorder=5)
        ax.plot([x0], [row], marker="v", ms=8, color=colour, ls="none", zorder=6,
                label=f"alert: {kind}" if kind not in shown else None)  # fmt: skip
        ax.axvline(x0, color=colour, lw=0.8, ls=":", alpha=0.8)
        shown.add(kind)


def _gaps(t: npt.NDArray[Any], v: npt.NDArray[Any], max_gap: float) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """NaN between samples further apart than ``max_gap`` seconds, so a line breaks where data stopped."""
    if len(t) < 2:
        return t, v
    cut = np.flatnonzero(np.diff(t) > max_gap) + 1
    return np.insert(t, cut, t[cut - 1] + 1.0), np.insert(v.astype(float), cut, np.nan)


def _legend(ax: Any) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, borderaxespad=0.0)


def glucose_png(
    conn: sqlite3.Connection, run: Run, wearer: str, truth: list[TruthEvent], out: Path,
    states: list[tuple[str, float, dict[str, Any]]],
) -> Path | None:  # fmt: skip
    t, v = _readings(conn, wearer, "glucose", run)
    if not len(t):
        return None
    fig, (ax,) = _figure(12, 4.2)
    t0 = run.start
    mine_all = [e for e in truth if e.wearer == wearer]
    mine = [e for e in mine_all if e.kind.startswith("glucose_")]
    _shade(ax, mine, {k: c for k, c in _KIND_COLOURS.items() if k.startswith("glucose_")}, t0)
    shown = np.clip(v, 40, 400)  # Low/High (-inf/+inf) at the edge of the range
    gt, gv = _gaps(t, shown, 15 * 60.0)
    ax.plot(_hours(gt, t0), gv, "-o", ms=2.5, lw=1.2, color="#08519c", label="CGM (as stored)")
    cgm = {run.wearers[wearer].get("cgm", "")}
    _shade(ax, [e for e in mine_all if e.subject in cgm], _SENSOR_SHADES, t0)
    for y, name in ((54, "54"), (70, "70"), (180, "180"), (250, "250")):
        ax.axhline(y, color="grey", lw=0.6, ls="--")
        ax.text(_hours(run.end, t0), y, f" {name}", va="center", fontsize=7, color="grey")
    forecasts = [(ts, s["forecast"]) for w, ts, s in states if w == wearer and isinstance(s.get("forecast"), dict)]
    drew = False
    for ts, f in forecasts:
        ts = _window_end(f, ts)  # the forecast starts at its input window's last point
        mg, lo, hi = f.get("mg_dl"), f.get("lower_mg_dl"), f.get("upper_mg_dl")
        horizons = f.get("horizons_min")
        if not (mg and horizons) or not math.isfinite(ts):
            continue
        x = _hours(np.array([ts + 60.0 * h for h in horizons]), t0)
        ax.plot(x, mg, color="#31a354", lw=0.7, alpha=0.5, label="forecast" if not drew else None)
        if lo and hi:
            ax.fill_between(x, lo, hi, color="#31a354", alpha=0.06, lw=0)
        drew = True
    alerts = _alerts(conn, wearer)
    kinds = {k for k in _KIND_COLOURS if k.startswith("glucose_")} | _SENSOR_KINDS
    _mark_alerts(ax, alerts, kinds, t0, run.end, 395, 14, devices=cgm)
    ax.set_ylim(35, 410)
    ax.set_ylabel("glucose (mg/dL)")
    ax.set_xlabel(f"hours from {_iso(t0)}")
    ax.set_title(f"{wearer}: glucose, truth and alerts ({run.scenario})")
    _legend(ax)
    ax.grid(alpha=0.25)
    path = out / f"{wearer}-glucose.png"
    fig.savefig(path)
    return path


def heart_png(
    conn: sqlite3.Connection, run: Run, wearer: str, truth: list[TruthEvent], out: Path,
    states: list[tuple[str, float, dict[str, Any]]],
) -> Path | None:  # fmt: skip
    th, hv = _readings(conn, wearer, "hr", run)
    tr, rv = _readings(conn, wearer, "rr", run)
    if not len(th) and not len(tr):
        return None
    fig, (ax_hr, ax_rr) = _figure(12, 6.4, rows=2)
    t0 = run.start
    mine = [e for e in truth if e.wearer == wearer]
    heart_kinds = {k: _KIND_COLOURS[k] for k in ("heart_tachycardia", "heart_bradycardia")}
    _shade(ax_hr, mine, heart_kinds, t0)
    strap = {run.wearers[wearer].get("strap", "")}
    _shade(ax_hr, [e for e in mine if e.subject in strap], _SENSOR_SHADES, t0)
    valid = hv > 0  # no skin contact: the strap sends 0
    ht, hh = _gaps(th[valid], hv[valid], 5.0)
    ax_hr.plot(_hours(ht, t0), hh, lw=0.5, color="#3f007d", label="heart rate (1 Hz)", rasterized=True)
    for y in (40, 120):
        ax_hr.axhline(y, color="grey", lw=0.6, ls="--")
    alerts = _alerts(conn, wearer)
    kinds = {"heart_tachycardia", "heart_bradycardia", AF} | _SENSOR_KINDS
    _mark_alerts(ax_hr, alerts, kinds, t0, run.end, 207, 9, devices=strap)
    ax_hr.set_ylim(25, 215)
    ax_hr.set_ylabel("bpm")
    ax_hr.set_title(f"{wearer}: heart rate and RR tachogram, truth and alerts ({run.scenario})")
    _legend(ax_hr)
    ax_hr.grid(alpha=0.25)
    _shade(ax_rr, mine, {AF: _KIND_COLOURS[AF]}, t0)
    ax_rr.plot(_hours(tr, t0), rv * 1000.0, ".", ms=0.8, color="#252525", label="RR interval", rasterized=True)
    ax_rr.set_ylim(200, 2000)
    ax_rr.set_ylabel("RR (ms)")
    probs = [(_window_end(s.get("rhythm") or {}, ts), _af_probability(s)) for w, ts, s in states if w == wearer]
    probs = [(ts, p) for ts, p in probs if p is not None and math.isfinite(ts)]
    if probs:
        ax_p = ax_rr.twinx()
        arr = np.array(probs)
        ax_p.plot(_hours(arr[:, 0], t0), arr[:, 1], color="#e6550d", lw=1.0, label="AF probability")
        ax_p.set_ylim(0, 1.05)
        ax_p.set_ylabel("AF probability")
        ax_p.legend(loc="lower left", bbox_to_anchor=(1.06, 0.0), fontsize=7, borderaxespad=0.0)
    ax_rr.set_xlabel(f"hours from {_iso(t0)}")
    ax_rr.legend(loc="upper left", bbox_to_anchor=(1.01 if not probs else 1.06, 1.0), fontsize=7, markerscale=8,
                 borderaxespad=0.0)  # fmt: skip
    ax_rr.grid(alpha=0.25)
    path = out / f"{wearer}-heart.png"
    fig.savefig(path)
    return path


def _window_end(part: dict[str, Any], default: float) -> float:
    """The end of the input window a model's state names (``window.end``, ISO), else ``default``."""
    window = part.get("window")
    if isinstance(window, dict) and window.get("end"):
        t = _epoch(window["end"])
        if math.isfinite(t):
            return t
    return default


def _epoch(iso: object) -> float:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.nan


def _af_probability(state: dict[str, Any]) -> float | None:
    """The AF probability in a state message, wherever the rhythm model puts it (``rhythm.af_probability``,
    ``af.probability``, ``af_probability``)."""
    for outer in ("rhythm", "af"):
        inner = state.get(outer)
        if isinstance(inner, dict):
            for key in ("af_probability", "probability", "p_af"):
                value = inner.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    return float(value)
    value = state.get("af_probability")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_report(db: Path, out: Path) -> Path:
    """Write the pictures and ``index.html`` into ``out``; returns the page's path."""
    if not db.exists():
        raise ReplayError(f"{db}: no such file")
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        run = load_run(conn)
        if run is None:
            raise ReplayError(f"{db} holds no replay (no sim_run table): run `vigil replay` into it first")
        truth = load_truth(conn, run.id)
        states = load_states(conn, run.id)
        pictures: dict[str, list[Path]] = {}
        alerts: dict[str, list[dict[str, Any]]] = {}
        for wearer in run.wearers:
            pics = [
                glucose_png(conn, run, wearer, truth, out, states),
                heart_png(conn, run, wearer, truth, out, states),
            ]
            pictures[wearer] = [p for p in pics if p is not None]
            alerts[wearer] = _alerts(conn, wearer)
    score = score_db(db)
    page = out / "index.html"
    page.write_text(_html(run, score, pictures, alerts), encoding="utf-8")
    return page


def _html(run: Run, score: dict[str, Any], pictures: dict[str, list[Path]], alerts: dict[str, Any]) -> str:
    e = html.escape
    meta = run.meta
    rows = []
    for kind, k in score["kinds"].items():
        cells = [kind, k["events"], k["detected"], k["sensitivity"], k["alerts"], k["false_alerts"],
                 k["false_alerts_per_day"], k["median_lead_min"]]  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{e('-' if c is None else str(c))}</td>" for c in cells) + "</tr>")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Vigil replay: {e(run.scenario)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}img{max-width:100%}"
        "th{background:#f0f0f0}</style></head><body>",
        f"<h1>Replay of <code>{e(run.scenario)}</code></h1>",
        f"<p>{e(run.kind)} from <code>{e(run.source)}</code>: {len(run.wearers)} wearer(s), "
        f"{_iso(run.start)} to {_iso(run.end)} ({(run.end - run.start) / 3600:.3g} h), "
        f"played at {e(str(meta.get('speed')))} speed in {e(str(meta.get('wall_s')))} s "
        f"(broker: {e(str(meta.get('broker')))}).</p>",
        f"<p>Notifications: {e(json.dumps(meta.get('notifications')))}; readings: "
        f"{e(json.dumps(meta.get('readings')))}.</p>",
        "<h2>Score against the ground truth</h2><table><tr><th>kind</th><th>events</th><th>detected</th>"
        "<th>sensitivity</th><th>alerts</th><th>false</th><th>false per wearer-day</th>"
        "<th>median lead (min)</th></tr>",
        *rows,
        "</table>",
    ]
    if score["unscored"]:
        parts.append(f"<p>Not scored (no truth): {e(json.dumps(score['unscored']))}</p>")
    for wearer, pics in pictures.items():
        parts.append(f"<h2>{e(wearer)}</h2>")
        parts += [f"<p><img src='{e(p.name)}' alt='{e(p.stem)}'></p>" for p in pics]
        parts.append("<table><tr><th>time</th><th>state</th><th>kind</th><th>severity</th><th>reason</th></tr>")
        for a in alerts[wearer]:
            parts.append(
                f"<tr><td>{e(str(a.get('time')))}</td><td>{e(str(a.get('state')))}</td><td>{e(str(a.get('kind')))}"
                f"</td><td>{e(str(a.get('severity')))}</td><td>{e(str(a.get('reason')))}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
