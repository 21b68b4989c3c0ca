"""``vigil models evaluate rhythm``: the shipped bundle on the TEST sets, through the agent's own code.

The int8 model is loaded with ``agent.models.load_model`` (hash checks, the agent's runtime loader); its
float twin (``model_build/rhythm/artifacts``, hash in the card) through the same runtime. Nothing here
changes a model or a choice: thresholds, the alert policy and the baseline's thresholds come from the card.

Per set (``split.evaluation_part``; default ``afdb-test``, ``nsr2db-test``, ``cinc2017``):

- **long records** (afdb, nsr2db layouts): windows on the agent's grid, cut by the agent's code; window
  figures over the windows that pass the quality gate and have a label (the share gated is reported; so are
  the figures over every labelled window, gate ignored). Alerts: every record is fed beat by beat through
  ``agent.rhythm.RhythmDetector`` into ``agent.alerts.AlertEngine``; AF episodes of 5 minutes or more
  alerted, their delay (for those not begun under an alert still on), and false alerts per 24 hours of
  non-AF time (``replay``).
- **short recordings** (the cinc2017 layout): A against N per recording, the short-recording protocol the
  build validated on TRAIN snippets (``build.short_scores``): windows with 1 beat of context, the mean AF
  probability of the recording's gated windows against the card's threshold. A recording with no gated
  window gets no AF call (what the device would say): it counts as a miss if it is A and as correct if it is
  N, and the figures over scored recordings only are given beside. O (other rhythm) and ~ (noisy) are not in
  the A-vs-N figures; how often they get an AF call is reported.

The sensitivity at 95% specificity read off the TEST ROC curve is reported as a description only (a
threshold read off TEST is never used).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.models import PACKAGED_MODELS_DIR, DataSource, LoadedModel, load_model, sha256_hex
from agent.rhythm import RhythmDetector, RhythmParams, model_input
from model_build.bundle import write_bundle
from model_build.rhythm.baseline import Baseline
from model_build.rhythm.build import FLOAT_MODEL_PATH, ShortScores, progress_bar, short_scores
from model_build.rhythm.config import NAME, RhythmConfig
from model_build.rhythm.data import LAYOUT_RECORD_LABELS, DataFile, RRSet, load_set
from model_build.rhythm.errors import RhythmBuildError
from model_build.rhythm.export import FloatModel
from model_build.rhythm.metrics import auc, clean_json, scores_at, sensitivity_at_specificity
from model_build.rhythm.replay import EpisodeFigures, episode_figures, replay_agent
from model_build.rhythm.split import DEFAULT_TEST_SETS, evaluation_part
from model_build.rhythm.windows import WindowTable, record_windows, set_windows

Progress = Callable[..., Any]


@dataclass(frozen=True)
class Models:
    int8: LoadedModel
    float: FloatModel
    params: RhythmParams
    config: RhythmConfig
    baseline: Baseline


def load_models_for_evaluation(models_dir: str | Path, float_path: Path, runtime: str | None = None) -> Models:
    model = load_model(models_dir, NAME, runtime=runtime)
    card = model.card
    if card is None:
        raise RhythmBuildError(f"{NAME}: the bundle has no card")
    params = RhythmParams.from_json(card.params, model=NAME)
    try:
        float_bytes = float_path.read_bytes()
    except OSError as exc:
        raise RhythmBuildError(f"cannot read the float model {float_path}: {exc}") from exc
    expected = dict(card.build.get("float_model", {})).get("sha256")
    if expected != sha256_hex(float_bytes):
        raise RhythmBuildError(f"{float_path}: sha256 does not match the card's build.float_model.sha256 ({expected})")
    b = dict(card.build.get("baseline", {}))
    baseline = Baseline(str(b.get("name")), {k: float(v) for k, v in dict(b.get("thresholds", {})).items()}, math.nan)
    w = params.windowing
    cfg = dict(card.build.get("config", {}))
    config = RhythmConfig(
        n_beats=w.n_beats,
        hop=w.hop,
        context=w.context,
        lookahead=w.lookahead,
        encoding=params.encoding,
        cleaning=params.cleaning,
        limits=params.limits,
        short_hop=int(cfg.get("short_hop", RhythmConfig.short_hop)),
    )
    return Models(model, FloatModel(float_bytes), params, config, baseline)


def _int8_predict(model: LoadedModel) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]:
    def predict(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        if len(x) == 0:
            return np.zeros(0)
        return np.asarray(model.predict(x), dtype=np.float64).reshape(-1)

    return predict


def _scored(s: ShortScores, threshold: float, labels: Sequence[str]) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (
        np.isin(s.labels, list(labels)) & np.isfinite(s.scores) & (np.nan_to_num(s.scores, nan=-1) >= threshold)
    )
    return out


def evaluate_short(loaded: RRSet, m: Models, progress: Progress) -> dict[str, Any]:
    records = list(progress(loaded.records, desc=f"{loaded.name} recordings", unit="rec"))
    thr = m.params.threshold
    int8 = short_scores(records, m.config, _int8_predict(m.int8))
    flt = short_scores(records, m.config, m.float.predict)

    # The baseline on the same windows: a recording is AF when at least half of its gated windows are.
    base_scores = []
    for r in records:
        t = record_windows(r, m.config.short_windowing, m.config.cleaning, m.config.limits)
        rr = t.rr_s[t.quality_ok]
        base_scores.append(float(np.mean(m.baseline.predict(rr))) if len(rr) else math.nan)
    base = ShortScores(int8.labels, np.array(base_scores), int8.windows)

    def figures(s: ShortScores, threshold: float) -> dict[str, float]:
        a, n = s.labels == "A", s.labels == "N"
        call = np.isfinite(s.scores) & (np.nan_to_num(s.scores, nan=-1.0) >= threshold)
        an = a | n
        out = scores_at(call[an].astype(np.float64), a[an].astype(np.int64), 0.5).as_dict()
        scored = an & np.isfinite(s.scores)
        out["auc"] = auc(s.scores[scored], a[scored].astype(np.int64))
        return out

    fi, ff, fb = figures(int8, thr), figures(flt, thr), figures(base, 0.5)
    a, n = int8.labels == "A", int8.labels == "N"
    scored = np.isfinite(int8.scores)
    sens95, thr95 = sensitivity_at_specificity(
        int8.scores[(a | n) & scored], a[(a | n) & scored].astype(np.int64), 0.95
    )
    calls = {
        lab: float(np.mean(_scored(int8, thr, [lab])[int8.labels == lab]))
        for lab in ("O", "~")
        if (int8.labels == lab).any()
    }
    return {
        "sensitivity": fi["sensitivity"],
        "specificity": fi["specificity"],
        "ppv": fi["ppv"],
        "f1": fi["f1"],
        "auc": fi["auc"],
        "f1_baseline": fb["f1"],
        "int8_minus_float_f1": fi["f1"] - ff["f1"],
        "false_alerts_per_24h": None,
        "recordings": {lab: int((int8.labels == lab).sum()) for lab in ("A", "N", "O", "~")},
        "unscored": {"A": int((a & ~scored).sum()), "N": int((n & ~scored).sum())},
        "sensitivity_scored_only": float(np.mean(_scored(int8, thr, ["A"])[a & scored]))
        if (a & scored).any()
        else None,
        "specificity_scored_only": float(np.mean(~_scored(int8, thr, ["N"])[n & scored]))
        if (n & scored).any()
        else None,
        "float": {k: ff[k] for k in ("sensitivity", "specificity", "ppv", "f1", "auc")},
        "baseline": {"name": m.baseline.name, **{k: fb[k] for k in ("sensitivity", "specificity", "ppv", "f1")}},
        "af_call_rate_other_rhythm": calls.get("O"),
        "af_call_rate_noisy": calls.get("~"),
        "described_only_sensitivity_at_specificity_0.95": sens95,
        "described_only_threshold_at_specificity_0.95": thr95,
    }


def evaluate_long(loaded: RRSet, m: Models, progress: Progress) -> dict[str, Any]:
    records = list(loaded.records)
    table: WindowTable = set_windows(records, m.config.windowing, m.config.cleaning, m.config.limits)
    labelled = table.label >= 0
    ev = labelled & table.quality_ok
    x = model_input(table.rr_s[labelled], m.params.encoding)
    p_int8 = np.full(len(table), math.nan)
    p_float = np.full(len(table), math.nan)
    p_int8[labelled] = _int8_predict(m.int8)(x)
    p_float[labelled] = m.float.predict(x)
    y = table.label[ev]
    thr = m.params.threshold
    si, sf = scores_at(p_int8[ev], y, thr), scores_at(p_float[ev], y, thr)
    base_pred = m.baseline.predict(table.rr_s[ev]).astype(np.float64)
    sb = scores_at(base_pred, y, 0.5)
    base_auc = auc(m.baseline.score(table.rr_s[ev]), y)
    s_all = scores_at(p_int8[labelled], table.label[labelled], thr)

    detector = RhythmDetector(m.int8, m.params)
    per_record, parts = {}, []
    for record in progress(records, desc=f"{loaded.name} alerts (agent replay)", unit="rec"):
        spans = replay_agent(record, detector)
        fig = episode_figures(record, spans)
        parts.append(fig)
        per_record[record.record] = {
            "hours": round(fig.hours, 2),
            "af_episodes_5min": fig.episodes,
            "alerted": fig.alerted,
            "already_on": fig.already_on,
            "alerts": fig.alerts,
            "false_alerts": fig.false_alerts,
            "delays_s": [round(d, 1) for d in fig.delays_s],
        }
    total = EpisodeFigures.total(parts)
    return {
        "sensitivity": si.sensitivity,
        "specificity": si.specificity,
        "ppv": si.ppv,
        "f1": si.f1,
        "auc": si.auc,
        "f1_baseline": sb.f1,
        "int8_minus_float_f1": si.f1 - sf.f1,
        "false_alerts_per_24h": total.false_alerts_per_24h(),
        "windows": {
            "labelled": int(labelled.sum()),
            "scored": int(ev.sum()),
            "gated_share": float(1.0 - ev.sum() / labelled.sum()) if labelled.any() else None,
            "af": int((y == 1).sum()),
            "not_af": int((y == 0).sum()),
            "unlabelled_afl": int((table.label < 0).sum()),
        },
        "float": sf.as_dict(),
        "int8_vs_float_abs": {
            "p99": float(np.quantile(np.abs(p_int8 - p_float)[labelled], 0.99)) if labelled.any() else None,
            "max": float(np.max(np.abs(p_int8 - p_float)[labelled])) if labelled.any() else None,
        },
        "baseline": {"name": m.baseline.name, **sb.as_dict(), "auc": base_auc},
        "all_labelled_windows_gate_ignored": s_all.as_dict(),
        "episodes": {
            "af_episodes_5min": total.episodes,
            "alerted": total.alerted,
            "alerted_share": total.alerted_share,
            "already_on_at_start": total.already_on,
            "median_delay_s": total.median_delay_s,
            "delays_s_p90": float(np.quantile(total.delays_s, 0.9)) if total.delays_s else None,
            "alerts": total.alerts,
            "false_alerts": total.false_alerts,
            "hours": total.hours,
            "non_af_hours": total.non_af_hours,
        },
        "per_record": per_record,
    }


def inference_timing(m: Models, repeats: int = 2000) -> dict[str, float]:
    """Median wall time of one ``LoadedModel.predict`` (quantize, invoke, dequantize) on a window, and of the
    whole per-window work in ``RhythmDetector`` (encode, predict, irregularity figures, condition)."""
    rng = np.random.default_rng(0)
    rr = 0.8 + 0.1 * rng.standard_normal(m.params.windowing.n_beats)
    x = model_input(rr[np.newaxis], m.params.encoding)
    for _ in range(50):
        m.int8.predict(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        m.int8.predict(x)
        times.append(time.perf_counter() - t0)
    detector = RhythmDetector(m.int8, m.params)
    beats = 0.8 + 0.15 * rng.standard_normal(40 * m.params.windowing.hop + m.params.windowing.width)
    t = np.cumsum(beats)
    per_beat = []
    for i in range(len(beats)):
        t0 = time.perf_counter()
        detector.feed_rr("timing", float(t[i]), float(beats[i]), "detected")
        per_beat.append(time.perf_counter() - t0)
    return {
        "predict_ms_median": 1000.0 * float(np.median(times)),
        "predict_ms_p99": 1000.0 * float(np.quantile(times, 0.99)),
        "feed_rr_ms_per_window_p50": 1000.0 * float(np.median(sorted(per_beat)[-40:])),
        "feed_rr_us_per_beat_mean": 1e6 * float(np.mean(per_beat)),
        "runtime": m.int8.runtime,  # type: ignore[dict-item]
    }


def evaluate_rhythm(
    data_root: str | Path,
    sets: Sequence[str] = DEFAULT_TEST_SETS,
    *,
    models_dir: str | Path = PACKAGED_MODELS_DIR,
    float_path: Path = FLOAT_MODEL_PATH,
    progress: bool = True,
    runtime: str | None = None,
) -> dict[str, Any]:
    bar = progress_bar(progress)
    m = load_models_for_evaluation(models_dir, float_path, runtime)
    out: dict[str, Any] = {
        "model": {**m.int8.describe(), "size_bytes": len(Path(models_dir, f"{NAME}.tflite").read_bytes())},
        "sets": {},
        "data": {},
    }
    for name in sets:
        try:
            part = evaluation_part(name)
        except ValueError as exc:
            raise RhythmBuildError(str(exc)) from exc
        loaded = load_set(data_root, part.folder, keep=part.keep)
        if not loaded.records:
            raise RhythmBuildError(f"{name}: no records")
        if loaded.layout == LAYOUT_RECORD_LABELS:
            out["sets"][name] = evaluate_short(loaded, m, bar)
        else:
            out["sets"][name] = evaluate_long(loaded, m, bar)
        out["data"][name] = {
            "records": len(loaded.records),
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in loaded.files],
        }
    out["timing"] = inference_timing(m)
    result: dict[str, Any] = clean_json(out)  # type: ignore[assignment]
    return result


def write_card_metrics(result: dict[str, Any], models_dir: str | Path = PACKAGED_MODELS_DIR) -> None:
    """Record the TEST figures (numbers only, one metrics table per set) and the TEST data's identity in the
    card, rewriting the bundle with the same model bytes."""
    model = load_model(models_dir, NAME)
    card = model.card
    assert card is not None
    metrics = {k: dict(v) for k, v in card.metrics.items()}
    for name, figures in result["sets"].items():
        flat = _flatten(figures)
        metrics[f"test:{name}"] = {
            k: v for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
    build = json.loads(json.dumps(dict(card.build)))
    build["evaluation"] = {"data": result["data"], "timing": result.get("timing", {})}
    content = Path(models_dir, card.tflite.file).read_bytes()
    write_bundle(
        models_dir,
        NAME,
        content,
        version=card.version,
        params=json.loads(json.dumps(dict(card.params))),
        training_data=list(card.training_data),
        metrics=metrics,
        build=build,
        created=card.created,
    )


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if k == "per_record":
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif v is not None and not isinstance(v, list | str):
            out[key] = v
    return out


def data_sources(files: Sequence[DataFile]) -> list[DataSource]:
    return [DataSource(name=f.path, sha256=f.sha256) for f in files]


def format_tables(result: dict[str, Any]) -> str:
    """The figures as plain-text tables (what the command prints)."""
    lines = []
    head = f"{'set':<14}{'sens':>8}{'spec':>8}{'ppv':>8}{'f1':>8}{'auc':>8}{'f1 base':>9}{'int8-fl':>9}{'FA/24h':>8}"
    lines.append(head)
    lines.append("-" * len(head))

    def f(v: Any, width: int = 8) -> str:
        return f"{v:>{width}.4f}" if isinstance(v, int | float) else f"{'-':>{width}}"

    for name, s in result["sets"].items():
        lines.append(
            f"{name:<14}{f(s['sensitivity'])}{f(s['specificity'])}{f(s['ppv'])}{f(s['f1'])}{f(s['auc'])}"
            f"{f(s['f1_baseline'], 9)}{f(s['int8_minus_float_f1'], 9)}{f(s['false_alerts_per_24h'])}"
        )
    for name, s in result["sets"].items():
        if "episodes" in s:
            e = s["episodes"]
            lines.append(
                f"{name}: AF episodes >= 5 min {e['alerted']}/{e['af_episodes_5min']} alerted, median delay "
                f"{e['median_delay_s']} s; {e['alerts']} alerts, {e['false_alerts']} false,"
                f" {e['non_af_hours']:.1f} h non-AF; windows gated {s['windows']['gated_share']:.3f}"
            )
        if "unscored" in s:
            lines.append(
                f"{name}: recordings {s['recordings']}, unscored {s['unscored']}; scored only: sens "
                f"{s['sensitivity_scored_only']}, spec {s['specificity_scored_only']}; described only (TEST ROC): "
                f"sensitivity at specificity 0.95 = {s['described_only_sensitivity_at_specificity_0.95']}"
            )
    t = result.get("timing", {})
    if t:
        lines.append(
            f"inference ({t['runtime']}): predict {t['predict_ms_median']:.4f} ms median,"
            f" p99 {t['predict_ms_p99']:.4f} ms; a new window in feed_rr {t['feed_rr_ms_per_window_p50']:.3f} ms;"
            f" model {result['model']['size_bytes']} bytes"
        )
    return "\n".join(lines)
