"""Evaluation of a glucose forecaster on CGM sets: every figure issue 6 asks for, per horizon, set and subject.

Per subject, the windows are cut from its grid with the model's own windowing (``agent.signals.glucose``),
and every forecaster runs on exactly those windows: the int8 model through the agent's runtime loader
(``agent.models.LoadedModel``, batch 1), the float model (Keras), persistence, linear extrapolation,
Nightscout's AR2 and the ridge AR. Figures per horizon are pooled over the set's windows (subjects with more
data weigh more); per-subject figures are in ``per_subject``.

Per horizon: ``rmse`` (int8), ``rmse_float``, ``rmse_persistence``, ``rmse_linear``, ``rmse_ar2``,
``rmse_ridge``, ``mae``, ``mard_pct``, ``clarke_ab_pct`` and ``clarke_pct`` (A-E), ``lag_min`` (the time
lag, :mod:`model_build.glucose.metrics`), ``coverage_80`` (share of targets inside the calibrated 10-90%
interval) and ``n`` (windows). ``coverage_80`` at the set level pools all horizons.

Hypoglycaemia (``hypo``): each subject's readings replayed through :class:`agent.forecast.GlucoseForecaster`
(the int8 model) and :class:`agent.alerts.AlertEngine`, matched with consensus events
(:mod:`model_build.glucose.hypo`).

Bars (:func:`bars`): issue 6's, per set, each with the figure, the limit and whether it is met.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.forecast import ForecastParams, Forecasts, GlucoseForecaster, decode_outputs, encode_windows
from agent.models import LoadedModel
from agent.signals.glucose import glucose_windows
from model_build.glucose import baselines, hypo, metrics
from model_build.glucose.data import CgmSet

FloatArray = npt.NDArray[np.float64]
FloatPredict = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]

RMSE_VS_PERSISTENCE = 0.85
CLARKE_AB_MIN_PCT = 98.0
INT8_RMSE_REL_TOL = 0.02
COVERAGE_RANGE = (0.75, 0.85)
HYPO_SENSITIVITY_MIN = 0.85
HYPO_FALSE_PER_DAY_MAX = 0.5
HYPO_LEAD_MIN_MIN = 15.0
MODEL_BYTES_MAX = 64 * 1024
INFERENCE_MS_MAX = 1.0


@dataclass(frozen=True)
class Forecasters:
    """What is evaluated: the int8 model (and its params), the float model if at hand, and the baselines."""

    params: ForecastParams
    int8: LoadedModel
    float_predict: FloatPredict | None
    ridge: baselines.RidgeAR
    linear_span: int


@dataclass
class _Pool:
    """Forecasts and targets of many windows, one list entry per subject."""

    targets: list[FloatArray] = field(default_factory=list)
    by_name: dict[str, list[FloatArray]] = field(default_factory=dict)

    def add(self, targets: FloatArray, forecasts: Mapping[str, FloatArray]) -> None:
        self.targets.append(targets)
        for name, values in forecasts.items():
            self.by_name.setdefault(name, []).append(values)

    def arrays(self) -> tuple[FloatArray, dict[str, FloatArray]]:
        return np.concatenate(self.targets), {k: np.concatenate(v) for k, v in self.by_name.items()}


def int8_raw(model: LoadedModel, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The int8 model's outputs for encoded windows ``(n, length, 2)``, one invoke each (the device's batch)."""
    if x.shape[0] == 0:
        return np.zeros((0, model.output.shape[-1]), dtype=np.float32)
    return model.predict(x).reshape(x.shape[0], -1)


def forecasts_for(fc: Forecasters, past: FloatArray) -> dict[str, FloatArray]:
    """Every forecaster on the same windows: ``(n, horizons)`` each, plus ``lower``/``upper`` (int8)."""
    p = fc.params
    steps = [round(h / p.step_s) for h in p.horizons_s]
    x = encode_windows(past, p)
    q: Forecasts = decode_outputs(int8_raw(fc.int8, x), past[:, -1], p)
    out = {
        "int8": q.mean,
        "lower": q.lower,
        "upper": q.upper,
        "persistence": baselines.persistence(past, steps),
        "linear": baselines.linear_extrapolation(past, steps, fc.linear_span),
        "ar2": baselines.ar2(past, steps),
        "ridge": fc.ridge.predict(past),
    }
    if fc.float_predict is not None:
        out["float"] = decode_outputs(fc.float_predict(x), past[:, -1], p).mean
    return out


def horizon_figures(targets: FloatArray, f: Mapping[str, FloatArray], j: int) -> dict[str, Any]:
    y = targets[:, j]
    point = f["int8"][:, j]
    clarke = metrics.clarke_pct(y, point)
    row: dict[str, Any] = {
        "n": int(y.size),
        "rmse": metrics.rmse(point, y),
        "rmse_float": metrics.rmse(f["float"][:, j], y) if "float" in f else None,
        "rmse_persistence": metrics.rmse(f["persistence"][:, j], y),
        "rmse_linear": metrics.rmse(f["linear"][:, j], y),
        "rmse_ar2": metrics.rmse(f["ar2"][:, j], y),
        "rmse_ridge": metrics.rmse(f["ridge"][:, j], y),
        "mae": metrics.mae(point, y),
        "mard_pct": metrics.mard_pct(point, y),
        "clarke_ab_pct": clarke["A"] + clarke["B"],
        "clarke_pct": clarke,
        "coverage_80": metrics.coverage(y, f["lower"][:, j], f["upper"][:, j]),
    }
    return row


def evaluate_set(
    cgm: CgmSet,
    fc: Forecasters,
    *,
    per_subject: bool = True,
    on_subject: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """All figures for one set (see the module docstring)."""
    p = fc.params
    windowing = p.windowing
    steps = [round(h / p.step_s) for h in p.horizons_s]
    names = [f"h{round(h / 60)}" for h in p.horizons_s]
    pool = _Pool()
    lags = {n: metrics.LagAccumulator(s) for n, s in zip(names, steps, strict=True)}
    hypo_total = hypo.HypoCounts()
    subjects: dict[str, Any] = {}
    forecaster = GlucoseForecaster(fc.int8, params=p)
    for subject in cgm.subjects:
        grid = subject.grid(windowing.gridding)
        w = glucose_windows(grid, windowing)
        row: dict[str, Any] = {"windows": len(w)}
        if len(w):
            f = forecasts_for(fc, w.past)
            pool.add(w.targets, f)
            for j, name in enumerate(names):
                target_index = w.end_index + steps[j]
                lags[name].add(target_index, f["int8"][:, j], grid.index, grid.mg_dl)
                if per_subject:
                    row[name] = _short(horizon_figures(w.targets, f, j))
        truth = hypo.Truth.of(subject.truth_grid(windowing.gridding))
        episodes = hypo.replay(subject, forecaster)
        counts = hypo.match(truth.events, episodes, truth)
        hypo_total.add(counts)
        if per_subject:
            row["hypo"] = counts.figures()
            subjects[subject.subject_id] = row
        if on_subject is not None:
            on_subject(subject.key)
    result: dict[str, Any] = {"subjects": len(cgm.subjects), "file": cgm.file.name, "sha256": cgm.file.sha256}
    if pool.targets:
        targets, f = pool.arrays()
        result["windows"] = int(targets.shape[0])
        for j, name in enumerate(names):
            result[name] = horizon_figures(targets, f, j)
            result[name]["lag_min"] = lags[name].lag_steps() * p.step_s / 60.0
        result["coverage_80"] = metrics.coverage(targets, f["lower"], f["upper"])
    else:
        result["windows"] = 0
    result["hypo"] = hypo_total.figures()
    result["cleaning"] = cgm.cleaning.to_json()
    if per_subject:
        result["per_subject"] = subjects
    return result


def _short(row: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("n", "rmse", "rmse_float", "rmse_persistence", "rmse_ar2", "rmse_ridge", "mae", "mard_pct")
    out = {k: row[k] for k in keep}
    out["clarke_ab_pct"] = row["clarke_ab_pct"]
    out["coverage_80"] = row["coverage_80"]
    return out


def inference_ms(model: LoadedModel, params: ForecastParams, *, repeats: int = 2000) -> dict[str, float]:
    """Median wall time of one ``LoadedModel.predict`` (quantize, invoke, dequantize) on one window, and of
    one :meth:`GlucoseForecaster.feed` with a new reading (buffer, window, encode, predict, condition)."""
    rng = np.random.default_rng(0)
    window = 120.0 + np.cumsum(rng.normal(0, 2, params.length))
    x = encode_windows(window[np.newaxis], params)[0]
    for _ in range(50):
        model.predict(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.predict(x)
        times.append(time.perf_counter() - t0)
    forecaster = GlucoseForecaster(model, params=params)
    t_ref = 1_700_000_000.0
    feeds = []
    for k in range(params.length + repeats // 4):
        t0 = time.perf_counter()
        forecaster.feed("w", t_ref + 300.0 * k, 120.0 + 20.0 * np.sin(k / 10.0), (), None)
        feeds.append(time.perf_counter() - t0)
    return {
        "predict_ms": float(np.median(times) * 1e3),
        "feed_ms": float(np.median(feeds[params.length :]) * 1e3),
    }


def bars(sets: Mapping[str, Mapping[str, Any]], *, model_bytes: int, predict_ms: float) -> dict[str, Any]:
    """Issue 6's bars, each as ``{"value", "limit", "met"}``, per set (and the two model-level ones)."""
    out: dict[str, Any] = {
        "model_bytes": _bar(model_bytes, f"<= {MODEL_BYTES_MAX}", model_bytes <= MODEL_BYTES_MAX),
        "inference_ms": _bar(predict_ms, f"<= {INFERENCE_MS_MAX}", predict_ms <= INFERENCE_MS_MAX),
        "sets": {},
    }
    for name, s in sets.items():
        if not s.get("windows"):
            out["sets"][name] = {}
            continue
        h30, hy = s["h30"], s["hypo"]
        b: dict[str, Any] = {}
        for h in ("h30", "h60"):
            ratio = s[h]["rmse"] / s[h]["rmse_persistence"]
            b[f"{h}_rmse_vs_persistence"] = _bar(ratio, f"<= {RMSE_VS_PERSISTENCE}", ratio <= RMSE_VS_PERSISTENCE)
        b["h30_rmse_below_ar2"] = _bar(h30["rmse"] - h30["rmse_ar2"], "< 0 (mg/dL)", h30["rmse"] < h30["rmse_ar2"])
        b["h30_rmse_below_ridge"] = _bar(
            h30["rmse"] - h30["rmse_ridge"], "< 0 (mg/dL)", h30["rmse"] < h30["rmse_ridge"]
        )
        b["h30_clarke_ab_pct"] = _bar(
            h30["clarke_ab_pct"], f">= {CLARKE_AB_MIN_PCT}", h30["clarke_ab_pct"] >= CLARKE_AB_MIN_PCT
        )
        worst = None
        for key in ("h15", "h30", "h45", "h60"):
            if key in s and s[key].get("rmse_float"):
                rel = abs(s[key]["rmse"] - s[key]["rmse_float"]) / s[key]["rmse_float"]
                worst = rel if worst is None else max(worst, rel)
        b["int8_rmse_vs_float"] = _bar(
            worst, f"<= {INT8_RMSE_REL_TOL}", worst is not None and worst <= INT8_RMSE_REL_TOL
        )
        cov = s["coverage_80"]
        b["coverage_80"] = _bar(
            cov, f"{COVERAGE_RANGE[0]}-{COVERAGE_RANGE[1]}", COVERAGE_RANGE[0] <= cov <= COVERAGE_RANGE[1]
        )
        sens, fa, lead = hy["sensitivity"], hy["false_alerts_per_day"], hy["median_lead_min"]
        b["hypo_sensitivity"] = _bar(
            sens, f">= {HYPO_SENSITIVITY_MIN}", sens is not None and sens >= HYPO_SENSITIVITY_MIN
        )
        b["hypo_false_alerts_per_day"] = _bar(
            fa, f"<= {HYPO_FALSE_PER_DAY_MAX}", fa is not None and fa <= HYPO_FALSE_PER_DAY_MAX
        )
        b["hypo_median_lead_min"] = _bar(
            lead, f">= {HYPO_LEAD_MIN_MIN}", lead is not None and lead >= HYPO_LEAD_MIN_MIN
        )
        out["sets"][name] = b
    return out


def _bar(value: float | int | None, limit: str, met: bool) -> dict[str, Any]:
    return {"value": value, "limit": limit, "met": bool(met)}


def issue_json(sets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The shape issue 6 fixes for ``--json``, the full figures beside it."""
    out: dict[str, Any] = {}
    for name, s in sets.items():
        entry: dict[str, Any] = dict(s)
        if "hypo" in s:
            hy = s["hypo"]
            entry["hypo"] = {
                "sensitivity": hy["sensitivity"],
                "false_alerts_per_day": hy["false_alerts_per_day"],
                "median_lead_min": hy["median_lead_min"],
                **{k: v for k, v in hy.items() if k not in ("sensitivity", "false_alerts_per_day", "median_lead_min")},
            }
        out[name] = entry
    return {"sets": out}


def tables(sets: Mapping[str, Mapping[str, Any]], bar_results: Mapping[str, Any] | None = None) -> str:
    """Readable tables: per set, one row per horizon; then hypo; then the bars."""
    lines: list[str] = []
    cols = ("rmse", "rmse_float", "rmse_persistence", "rmse_linear", "rmse_ar2", "rmse_ridge", "mae", "mard_pct")
    head = ("horizon", "RMSE", "float", "persist", "linear", "AR2", "ridge", "MAE", "MARD%", "A+B%", "lag", "cov80")
    for name, s in sets.items():
        lines.append(f"{name}: {s.get('subjects', 0)} subjects, {s.get('windows', 0)} windows")
        if not s.get("windows"):
            lines.append("  (no windows)")
            continue
        lines.append("  " + " ".join(f"{h:>8}" for h in head))
        for key in sorted((k for k in s if k.startswith("h") and k[1:].isdigit()), key=lambda k: int(k[1:])):
            r = s[key]
            cells = [f"{key[1:]} min"] + [_fmt(r.get(c)) for c in cols]
            cells += [_fmt(r["clarke_ab_pct"]), f"{r['lag_min']:.0f} min", _fmt(r["coverage_80"], 3)]
            lines.append("  " + " ".join(f"{c:>8}" for c in cells))
        hy = s["hypo"]
        lines.append(
            f"  hypo: sensitivity {_fmt(hy['sensitivity'], 3)} ({hy['detected_events']}/{hy['predictable_events']}"
            f" predictable events), false alerts/day {_fmt(hy['false_alerts_per_day'], 3)}"
            f" ({hy['false_alerts']} in {hy['observed_days']} days), median lead {_fmt(hy['median_lead_min'], 1)} min;"
            f" interval coverage (all horizons) {_fmt(s['coverage_80'], 3)}"
        )
    if bar_results:
        lines.append("bars (issue 6):")
        for key in ("model_bytes", "inference_ms"):
            b = bar_results[key]
            lines.append(f"  {key:<28} {_fmt(b['value'], 3):>10} {b['limit']:<14} {'met' if b['met'] else 'NOT MET'}")
        for name, bs in bar_results["sets"].items():
            for key, b in bs.items():
                verdict = "met" if b["met"] else "NOT MET"
                lines.append(f"  {name + ' ' + key:<40} {_fmt(b['value'], 3):>10} {b['limit']:<14} {verdict}")
    return "\n".join(lines)


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def flat_metrics(sets: Mapping[str, Mapping[str, Any]], kind: str) -> dict[str, float]:
    """Card metrics: ``{set}.{horizon}.{figure}`` numbers (``kind`` "int8" or "float")."""
    out: dict[str, float] = {}
    for name, s in sets.items():
        for key, r in s.items():
            if not (key.startswith("h") and key[1:].isdigit()):
                continue
            if kind == "float":
                if r.get("rmse_float") is not None:
                    out[f"{name}.{key}.rmse"] = float(r["rmse_float"])
                continue
            for fig in ("rmse", "mae", "mard_pct", "clarke_ab_pct", "coverage_80", "lag_min"):
                out[f"{name}.{key}.{fig}"] = float(r[fig])
            for fig in ("rmse_persistence", "rmse_ar2", "rmse_ridge", "rmse_linear"):
                out[f"{name}.{key}.{fig}"] = float(r[fig])
        if kind == "int8" and s.get("windows"):
            out[f"{name}.coverage_80"] = float(s["coverage_80"])
            for fig in ("sensitivity", "false_alerts_per_day", "median_lead_min"):
                v = s["hypo"][fig]
                if v is not None:
                    out[f"{name}.hypo.{fig}"] = float(v)
    return out


def evaluate_sets(
    cgm_sets: Iterable[CgmSet], fc: Forecasters, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    return {c.name: evaluate_set(c, fc, on_subject=progress) for c in cgm_sets}


def names_of(sets: Sequence[CgmSet]) -> list[str]:
    return [s.name for s in sets]
