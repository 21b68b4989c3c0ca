"""``vigil build rhythm``: TRAIN records in, the int8 bundle and its card out. TEST is never read here.

1. Load the TRAIN parts (``split.TRAIN_PARTS``; TEST rows are dropped as the files are parsed) and cut every
   window at the agent's grid with the agent's code (``windows.set_windows``).
2. Cross-validate by record (``config.folds`` folds; afdb and nsr2db records dealt out separately, seeded):
   each fold's model scores its held-out records' windows and their 30 s snippets (the short-recording
   protocol that ``cinc2017`` is evaluated with). These out-of-fold scores fix every choice below.
3. The window threshold: sensitivity + specificity maximal on afdb's gated, labelled windows (Youden).
   The classic baselines are fitted the same way on the same windows (``baseline``).
4. The alert policy k of n (:func:`choose_policy`) on the same scores replayed through ``agent.rhythm.KOfN``
   and the agent's alert engine.
5. The final model: trained on all TRAIN rows with the same settings; int8 through
   ``model_build.quantize`` (calibrated on TRAIN windows); its float twin as a float ``.tflite``.
6. The bundle via ``model_build.bundle.write_bundle`` (the manifest updated under its lock), the float model
   beside this package, and golden windows from the committed fixture for the tests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.models import PACKAGED_MODELS_DIR, DataSource, ModelCard, open_model, sha256_hex
from agent.rhythm import AlertRule, RhythmParams, model_input
from agent.signals.rr import cosen, nrmssd, shannon_entropy
from model_build.bundle import write_bundle
from model_build.quantize import INT8_SETTINGS, quantize_int8
from model_build.rhythm import model as rhythm_model
from model_build.rhythm.baseline import fit_baselines
from model_build.rhythm.config import CHOSEN, NAME, VERSION, RhythmConfig
from model_build.rhythm.data import DataFile, Rhythm, RRRecord, load_set
from model_build.rhythm.errors import RhythmBuildError
from model_build.rhythm.export import FloatModel, float_tflite
from model_build.rhythm.metrics import WindowScores, scores_at, youden_threshold
from model_build.rhythm.replay import EpisodeFigures, episode_figures, replay_scores
from model_build.rhythm.split import TRAIN_PARTS
from model_build.rhythm.windows import LABEL_AF, LABEL_NOT_AF, WindowTable, record_key, record_windows

PACKAGE_DIR = Path(__file__).resolve().parent
FLOAT_MODEL_PATH = PACKAGE_DIR / "artifacts" / f"{NAME}_float.tflite"
REPO_ROOT = PACKAGE_DIR.parent.parent
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "rr"
GOLDEN_PATH = FIXTURE_DIR / "rhythm_golden.json"
GOLDEN_WINDOWS = 16

Progress = Callable[..., Any]


def _no_progress(iterable: Iterable[Any], **_: Any) -> Iterable[Any]:
    return iterable


def progress_bar(enabled: bool) -> Progress:
    if not enabled:
        return _no_progress
    from tqdm import tqdm

    bar: Progress = tqdm
    return bar


# --- data ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TrainWindows:
    """All TRAIN windows at the agent's grid, their inputs, which rows train, and each record's fold."""

    records: tuple[RRRecord, ...]
    table: WindowTable
    part: npt.NDArray[np.str_]
    x: npt.NDArray[np.float32]
    trains: npt.NDArray[np.bool_]
    fold: npt.NDArray[np.int64]
    fold_of: dict[str, int]
    files: tuple[DataFile, ...]

    @property
    def afdb_eval(self) -> npt.NDArray[np.bool_]:
        """afdb's gated, labelled windows: where thresholds are fitted and window figures measured."""
        t = self.table
        out: npt.NDArray[np.bool_] = (self.part == "afdb-train") & t.quality_ok & (t.label >= 0)
        return out


def load_train(data_root: str | Path, progress: Progress = _no_progress) -> tuple[list[RRRecord], list[DataFile]]:
    records: list[RRRecord] = []
    files: list[DataFile] = []
    for part in progress(TRAIN_PARTS, desc="load TRAIN", unit="set"):
        loaded = load_set(data_root, part.folder, keep=part.keep)
        if not loaded.records:
            raise RhythmBuildError(f"{part.name}: no TRAIN records in {part.folder}")
        records.extend(loaded.records)
        files.extend(loaded.files)
    return records, files


def part_of(record: RRRecord) -> str:
    return "afdb-train" if record.set == "afdb" else f"{record.set}-train"


def assign_folds(records: Sequence[RRRecord], folds: int, seed: int) -> dict[str, int]:
    """Each set's records shuffled (seeded) and dealt out to the folds in turn, so every fold has some of each."""
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    for set_name in sorted({r.set for r in records}):
        keys = sorted(record_key(r) for r in records if r.set == set_name)
        order = rng.permutation(len(keys))
        for i, j in enumerate(order):
            out[keys[int(j)]] = i % folds
    return out


def cut_train(
    records: Sequence[RRRecord], files: Sequence[DataFile], config: RhythmConfig, progress: Progress = _no_progress
) -> TrainWindows:
    tables, parts = [], []
    for record in progress(records, desc="windows", unit="record"):
        t = record_windows(record, config.windowing, config.cleaning, config.limits)
        tables.append(t)
        parts.append(np.full(len(t), part_of(record)))
    table = WindowTable.concat(tables, config.n_beats)
    part = np.concatenate(parts) if parts else np.zeros(0, dtype=str)
    usable = table.quality_ok & (table.label >= 0)
    nsr_pick = np.zeros(len(table), dtype=bool)
    nsr_rows = np.flatnonzero(part != "afdb-train")
    nsr_pick[nsr_rows[:: config.nsr_every]] = True
    trains = usable & ((part == "afdb-train") | nsr_pick)
    fold_of = assign_folds(records, config.folds, config.seed)
    fold = np.array([fold_of[k] for k in table.record.tolist()], dtype=np.int64)
    return TrainWindows(
        records=tuple(records),
        table=table,
        part=part,
        x=model_input(table.rr_s, config.encoding),
        trains=trains,
        fold=fold,
        fold_of=fold_of,
        files=tuple(files),
    )


def snippets(record: RRRecord, length_s: float, every: int = 1) -> list[RRRecord]:
    """Consecutive ``length_s`` pieces of a record that are one rhythm throughout: all AFIB (label ``A``) or
    all N/J (``N``); every ``every``-th of them. Mixed pieces and AFL are left out. A piece keeps the intervals
    that start and end inside it, with times from its start, as a short recording would have them."""
    rhythm = record.rhythm
    if rhythm is None:
        from model_build.rhythm.windows import beat_rhythm

        rhythm = beat_rhythm(record)
    if rhythm is None or len(record) == 0:
        return []
    start = record.t_s - record.rr_s
    piece = np.floor((start - start[0]) / length_s).astype(np.int64)
    out = []
    bounds = np.flatnonzero(np.diff(piece)) + 1
    for k, piece_idx in enumerate(np.split(np.arange(len(record)), bounds)[:-1]):  # the last may be short
        t0 = float(start[0]) + k * length_s
        idx = piece_idx[record.t_s[piece_idx] - t0 <= length_s]  # every interval inside [t0, t0 + length_s]
        if idx.size == 0:
            continue
        codes = set(rhythm[idx].tolist())
        if codes == {int(Rhythm.AFIB)}:
            label = "A"
        elif codes <= {int(Rhythm.N), int(Rhythm.J)}:
            label = "N"
        else:
            continue
        if k % every:
            continue
        out.append(
            RRRecord(record.set, f"{record.record}@{k}", record.t_s[idx] - t0, record.rr_s[idx].copy(), label=label)
        )
    return out


# --- short recordings (the cinc2017 protocol) -------------------------------------------------------------


@dataclass(frozen=True)
class ShortScores:
    """Per short recording: its label, its score (mean AF probability of its gated windows; NaN: none)."""

    labels: npt.NDArray[np.str_]
    scores: npt.NDArray[np.float64]
    windows: npt.NDArray[np.int64]


def short_scores(
    recordings: Sequence[RRRecord],
    config: RhythmConfig,
    predict: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]],
) -> ShortScores:
    """Score short recordings: windows with 1 beat of context, none of lookahead, every ``short_hop`` beats;
    the recording's score is the mean probability of its windows that pass the quality gate."""
    labels, scores, counts = [], [], []
    tables = [record_windows(r, config.short_windowing, config.cleaning, config.limits) for r in recordings]
    gated = [t.rr_s[t.quality_ok] for t in tables]
    flat = np.concatenate(gated) if gated else np.zeros((0, config.n_beats))
    probs = predict(model_input(flat, config.encoding)) if len(flat) else np.zeros(0)
    offset = 0
    for record, rows in zip(recordings, gated, strict=True):
        p = probs[offset : offset + len(rows)]
        offset += len(rows)
        labels.append(record.label or "")
        scores.append(float(np.mean(p)) if len(p) else math.nan)
        counts.append(len(p))
    return ShortScores(np.array(labels, dtype=str), np.array(scores), np.array(counts, dtype=np.int64))


def short_figures(s: ShortScores, threshold: float) -> dict[str, float]:
    """A-vs-N sensitivity and specificity; unscored recordings count as 'no AF' (what the device would say),
    and the figures over scored recordings only are given beside them."""
    a, n = s.labels == "A", s.labels == "N"
    scored = np.isfinite(s.scores)
    call = scored & (np.nan_to_num(s.scores, nan=-1.0) >= threshold)
    out = {
        "recordings_a": float(a.sum()),
        "recordings_n": float(n.sum()),
        "unscored_a": float((a & ~scored).sum()),
        "unscored_n": float((n & ~scored).sum()),
        "sensitivity": float(np.mean(call[a])) if a.any() else math.nan,
        "specificity": float(np.mean(~call[n])) if n.any() else math.nan,
        "sensitivity_scored": float(np.mean(call[a & scored])) if (a & scored).any() else math.nan,
        "specificity_scored": float(np.mean(~call[n & scored])) if (n & scored).any() else math.nan,
    }
    return out


# --- cross-validation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossValidation:
    oof: npt.NDArray[np.float64]  # every TRAIN window's score from the fold that did not train on it
    short: ShortScores


def short_snippets_by_fold(tw: TrainWindows, config: RhythmConfig) -> dict[int, list[RRRecord]]:
    """Each fold's 30 s TRAIN snippets (every afdb one, every ``short_nsr_every``-th of the other sets')."""
    out: dict[int, list[RRRecord]] = {f: [] for f in range(config.folds)}
    for record in tw.records:
        every = 1 if record.set == "afdb" else config.short_nsr_every
        out[tw.fold_of[record_key(record)]].extend(snippets(record, config.short_snippet_s, every))
    return out


def fold_models(
    tw: TrainWindows, config: RhythmConfig, oof: npt.NDArray[np.float64], progress: Progress = _no_progress
) -> Iterator[tuple[int, Any]]:
    """One model per fold, trained on the other folds' training rows: each scores its held-out fold's windows
    into ``oof`` before it is yielded as ``(fold, model)``."""
    for f in progress(range(config.folds), desc="cross-validation", unit="fold"):
        rows = tw.trains & (tw.fold != f)
        model = rhythm_model.train(
            tw.x[rows], (tw.table.label[rows] == LABEL_AF).astype(np.float32), config.model, seed=config.seed + f
        )
        held = tw.fold == f
        oof[held] = rhythm_model.predict(model, tw.x[held])
        yield f, model


def cross_validate(tw: TrainWindows, config: RhythmConfig, progress: Progress = _no_progress) -> CrossValidation:
    oof = np.full(len(tw.table), math.nan)
    by_fold = short_snippets_by_fold(tw, config)
    short_parts = [
        short_scores(by_fold[f], config, _predictor(model)) for f, model in fold_models(tw, config, oof, progress)
    ]
    short = ShortScores(
        np.concatenate([s.labels for s in short_parts]),
        np.concatenate([s.scores for s in short_parts]),
        np.concatenate([s.windows for s in short_parts]),
    )
    return CrossValidation(oof, short)


def _predictor(model: Any) -> Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float64]]:
    return lambda x: rhythm_model.predict(model, x)


# --- choices on the out-of-fold scores ------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyResult:
    k: int
    n: int
    afdb: EpisodeFigures
    nsr: EpisodeFigures

    def row(self) -> dict[str, float]:
        return {
            "k": self.k,
            "n": self.n,
            "afdb_episodes_alerted_share": self.afdb.alerted_share,
            "afdb_median_delay_s": self.afdb.median_delay_s,
            "afdb_episodes_already_on": self.afdb.already_on,
            "afdb_false_alerts_per_24h": self.afdb.false_alerts_per_24h(),
            "nsr2db_false_alerts_per_24h": self.nsr.false_alerts_per_24h(),
        }


def policy_figures(
    tw: TrainWindows, scores: npt.NDArray[np.float64], threshold: float, rule: AlertRule
) -> tuple[EpisodeFigures, EpisodeFigures]:
    """(afdb, nsr2db) episode figures of TRAIN records when ``scores`` drive the policy ``rule``."""
    afdb: list[EpisodeFigures] = []
    nsr: list[EpisodeFigures] = []
    keys = [record_key(r) for r in tw.records]
    starts = np.searchsorted(tw.table.record, keys, side="left").tolist()
    ends = np.searchsorted(tw.table.record, keys, side="right").tolist()
    for record, lo, hi in zip(tw.records, starts, ends, strict=True):
        sl = slice(lo, hi)
        spans = replay_scores(
            tw.table.t_end_s[sl], scores[sl], tw.table.quality_ok[sl], threshold, rule, float(record.t_s[-1])
        )
        (afdb if record.set == "afdb" else nsr).append(episode_figures(record, spans))
    return EpisodeFigures.total(afdb), EpisodeFigures.total(nsr)


def choose_policy(
    tw: TrainWindows,
    scores: npt.NDArray[np.float64],
    threshold: float,
    config: RhythmConfig,
    progress: Progress = _no_progress,
) -> tuple[PolicyResult, list[PolicyResult]]:
    """Among the (k, n) whose nsr2db TRAIN false alerts stay at or below ``policy_max_false_per_24h``: the most
    afdb TRAIN AF episodes (>= 5 min) alerted (to 0.01), then the fewest afdb false alerts per 24 h of non-AF
    time, then the shortest median delay, then the smallest n. Decided before any result was seen (the delay
    was then redefined to leave out episodes begun under an alert still on, which had made it 0 throughout)."""
    _check_sorted(tw)
    results = []
    for k, n in progress(config.policy_grid(), desc="alert policy", unit="k-of-n"):
        rule = AlertRule(k=k, n=n, max_age_s=config.policy_max_age_s(n))
        afdb, nsr = policy_figures(tw, scores, threshold, rule)
        results.append(PolicyResult(k, n, afdb, nsr))
    allowed = [r for r in results if r.nsr.false_alerts_per_24h() <= config.policy_max_false_per_24h]
    if not allowed:
        raise RhythmBuildError("no k-of-n policy keeps nsr2db TRAIN false alerts within the limit")
    best = min(
        allowed,
        key=lambda r: (
            -round(r.afdb.alerted_share, 2),
            round(r.afdb.false_alerts_per_24h(), 3),
            r.afdb.median_delay_s if math.isfinite(r.afdb.median_delay_s) else math.inf,
            r.n,
        ),
    )
    return best, results


def _check_sorted(tw: TrainWindows) -> None:
    keys = tw.table.record.tolist()
    if keys != sorted(keys):
        raise RhythmBuildError("internal: TRAIN windows must be grouped by record in sorted order")


def reference_values(tw: TrainWindows) -> dict[str, float]:
    """The 95th percentile of each irregularity figure over TRAIN's gated sinus windows (afdb N and J, nsr2db):
    what the agent's alert reason compares a window with."""
    t = tw.table
    sinus = t.rr_s[t.quality_ok & (t.label == LABEL_NOT_AF)]
    c = cosen(sinus)
    return {
        "nrmssd_sinus_p95": float(np.quantile(nrmssd(sinus), 0.95)),
        "shannon_entropy_sinus_p95": float(np.quantile(shannon_entropy(sinus), 0.95)),
        "cosen_sinus_p95": float(np.quantile(np.where(np.isnan(c), np.inf, c), 0.95)),
    }


def _window_figures(scores: WindowScores, prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": float(v) for k, v in scores.as_dict().items()}


# --- the build --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    card: ModelCard
    seconds: float
    summary: dict[str, Any]


def build_rhythm(
    data_root: str | Path,
    *,
    models_dir: str | Path = PACKAGED_MODELS_DIR,
    config: RhythmConfig = CHOSEN,
    float_path: Path | None = FLOAT_MODEL_PATH,
    golden_path: Path | None = GOLDEN_PATH,
    fixture_dir: Path = FIXTURE_DIR,
    progress: bool = True,
    version: str = VERSION,
    created: str | None = None,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Run the whole build (module docstring). Returns the written card and a summary of the choices."""
    started = time.monotonic()
    bar = progress_bar(progress)
    records, files = load_train(data_root, bar)
    records.sort(key=record_key)
    tw = cut_train(records, files, config, bar)
    if not np.any(tw.trains & (tw.table.label == LABEL_AF)) or not np.any(tw.trains & (tw.table.label == LABEL_NOT_AF)):
        raise RhythmBuildError("TRAIN windows need both AF and non-AF windows that pass the quality gate")
    log(f"TRAIN: {len(records)} records, {len(tw.table)} windows, {int(tw.trains.sum())} training rows")

    cv = cross_validate(tw, config, bar)
    ev = tw.afdb_eval
    y = tw.table.label[ev]
    threshold = youden_threshold(cv.oof[ev], y, np.linspace(0.05, 0.95, 181))
    cv_scores = scores_at(cv.oof[ev], y, threshold)
    nsr_rows = (tw.part != "afdb-train") & tw.table.quality_ok
    nsr_specificity = float(np.mean(cv.oof[nsr_rows] < threshold)) if nsr_rows.any() else math.nan
    baseline, baselines = fit_baselines(tw.table.rr_s[ev], y)
    log(
        f"cross-validated threshold {threshold:.3f}: F1 {cv_scores.f1:.4f},"
        f" baseline {baseline.name} F1 {baseline.train_f1:.4f}"
    )

    policy, policies = choose_policy(tw, cv.oof, threshold, config, bar)
    rule = AlertRule(k=policy.k, n=policy.n, max_age_s=config.policy_max_age_s(policy.n))
    short = short_figures(cv.short, threshold)
    log(f"alert policy {policy.k} of {policy.n}: {json.dumps(policy.row())}")

    final = rhythm_model.train(
        tw.x[tw.trains], (tw.table.label[tw.trains] == LABEL_AF).astype(np.float32), config.model, seed=config.seed
    )
    calib = _calibration_rows(tw, config)
    tflite = quantize_int8(final, tw.x[calib], seed=config.seed)
    float_bytes = float_tflite(final)
    int8 = open_model(tflite, name=NAME, version=version)
    check = np.flatnonzero(ev)
    p_keras = rhythm_model.predict(final, tw.x[check])
    p_float = FloatModel(float_bytes).predict(tw.x[check])
    p_int8 = np.asarray(int8.predict(tw.x[check]), dtype=np.float64).reshape(-1)
    train_float = scores_at(p_float, tw.table.label[check], threshold)
    train_int8 = scores_at(p_int8, tw.table.label[check], threshold)

    params = RhythmParams(
        windowing=config.windowing,
        cleaning=config.cleaning,
        limits=config.limits,
        encoding=config.encoding,
        threshold=threshold,
        alert=rule,
        reference=reference_values(tw),
    )
    metrics: dict[str, dict[str, float]] = {
        "float": {
            **_window_figures(cv_scores, "cv_afdb_train_"),
            "cv_nsr2db_train_specificity": nsr_specificity,
            "cv_afdb_train_episodes_alerted_share": policy.afdb.alerted_share,
            "cv_afdb_train_median_delay_s": policy.afdb.median_delay_s,
            "cv_afdb_train_false_alerts_per_24h": policy.afdb.false_alerts_per_24h(),
            "cv_nsr2db_train_false_alerts_per_24h": policy.nsr.false_alerts_per_24h(),
            **{f"cv_short_{k}": v for k, v in short.items()},
            "train_f1_final_model": train_float.f1,
            "keras_vs_float_tflite_max_abs": float(np.max(np.abs(p_keras - p_float))) if len(check) else 0.0,
        },
        "int8": {
            "train_f1_final_model": train_int8.f1,
            "int8_minus_float_f1_train": train_int8.f1 - train_float.f1,
            "int8_vs_float_max_abs_train": float(np.max(np.abs(p_int8 - p_float))) if len(check) else 0.0,
            "size_bytes": float(len(tflite)),
        },
        "baseline": {
            f"{b.name}_{key}": value
            for b in baselines
            for key, value in {"train_f1": b.train_f1, **b.thresholds}.items()
        },
    }
    metrics = {kind: {k: v for k, v in figures.items() if math.isfinite(v)} for kind, figures in metrics.items()}
    seconds = time.monotonic() - started
    import tensorflow as tf  # already loaded by the training

    build_info = {
        "config": config.to_json(),
        "quantization": dict(INT8_SETTINGS),
        "calibration_windows": len(calib),
        "tensorflow": tf.__version__,
        "seed": config.seed,
        "baseline": {"name": baseline.name, "thresholds": baseline.thresholds},
        "baselines": [{"name": b.name, "thresholds": b.thresholds, "train_f1": b.train_f1} for b in baselines],
        "float_model": {
            "file": _repo_relative(float_path) if float_path else None,
            "sha256": sha256_hex(float_bytes),
            "size": len(float_bytes),
        },
        "records": {"train": [record_key(r) for r in records], "folds": tw.fold_of},
        "selection": {
            "candidates": _selection_table(),
            "threshold_rule": "Youden on afdb TRAIN out-of-fold scores (gated, labelled windows)",
            "policy_rule": choose_policy.__doc__,
            "policies": [_finite(r.row()) for r in policies],
        },
        "build_seconds_before_writing": round(seconds, 1),
        "test_metrics": "written by `vigil models evaluate rhythm --write-card` (metrics keys test:<set>)",
    }
    if float_path is not None:
        float_path.parent.mkdir(parents=True, exist_ok=True)
        float_path.write_bytes(float_bytes)
    card = write_bundle(
        models_dir,
        NAME,
        tflite,
        version=version,
        params=params.to_json(),
        training_data=[DataSource(name=f.path, sha256=f.sha256) for f in files],
        metrics=metrics,
        build=build_info,
        created=created,
    )
    if golden_path is not None:
        write_golden(golden_path, fixture_dir, config, float_bytes, tflite, card)
    seconds = time.monotonic() - started
    summary = {
        "threshold": threshold,
        "policy": policy.row(),
        "cv_afdb_train": cv_scores.as_dict(),
        "baseline": {"name": baseline.name, "train_f1": baseline.train_f1},
        "short": short,
        "size_bytes": len(tflite),
        "seconds": round(seconds, 1),
    }
    return BuildResult(card, seconds, summary)


def _calibration_rows(tw: TrainWindows, config: RhythmConfig) -> npt.NDArray[np.int64]:
    """Calibration windows for int8: a seeded sample of the training rows, half AF and half not."""
    rng = np.random.default_rng(config.seed)
    half = config.calibration_samples // 2
    rows = []
    for label in (LABEL_AF, LABEL_NOT_AF):
        pool = np.flatnonzero(tw.trains & (tw.table.label == label))
        rows.append(rng.choice(pool, size=min(half, len(pool)), replace=False))
    return np.sort(np.concatenate(rows)).astype(np.int64)


def _selection_table() -> list[dict[str, Any]]:
    """``select``'s measured alternatives (``selection.json``), as the card records them."""
    from model_build.rhythm.select import SELECTION_PATH

    if not SELECTION_PATH.is_file():
        return []
    rows: list[dict[str, Any]] = json.loads(SELECTION_PATH.read_text(encoding="utf-8"))["candidates"]
    keep = ("n_beats", "encoding", "width", "epochs", "afdb_f1", "afdb_auc", "short_f1", "criterion", "baseline_f1")
    return [{k: r[k] for k in keep} for r in rows]


def _finite(row: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in row.items()}


def _repo_relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


# --- goldens ------------------------------------------------------------------------------------------------


def golden_windows(fixture_dir: Path, config: RhythmConfig, count: int = GOLDEN_WINDOWS) -> WindowTable:
    """``count`` gated windows of the committed fixture's afdb-layout excerpt, spread over AF and not-AF."""
    loaded = load_set(fixture_dir.parent, "afdb")
    table = WindowTable.concat(
        [record_windows(r, config.windowing, config.cleaning, config.limits) for r in loaded.records], config.n_beats
    )
    rows = np.flatnonzero(table.quality_ok & (table.label >= 0))
    pick = rows[np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(np.int64)]
    return table.take(pick)


def write_golden(
    path: Path, fixture_dir: Path, config: RhythmConfig, float_bytes: bytes, int8_bytes: bytes, card: ModelCard
) -> None:
    """Golden windows with the float and int8 outputs (the tests hold the runtimes and the cut to them)."""
    table = golden_windows(fixture_dir, config)
    x = model_input(table.rr_s, config.encoding)
    p_float = FloatModel(float_bytes).predict(x)
    int8 = open_model(int8_bytes, name=NAME, version=card.version)
    p_int8 = np.asarray(int8.predict(x), dtype=np.float64).reshape(-1)
    golden = {
        "model": NAME,
        "sha256": card.tflite.sha256,
        "float_sha256": sha256_hex(float_bytes),
        "records": table.record.tolist(),
        "start_index": table.start_index.tolist(),
        "window_sha256": [window_sha(r) for r in table.rr_s],
        "labels": table.label.tolist(),
        "float_outputs": [round(float(v), 7) for v in p_float],
        "int8_outputs": [round(float(v), 7) for v in p_int8],
        "int8_runtime": int8.runtime,
    }
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in golden.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{\n" + lines + "\n}\n", encoding="utf-8")


def window_sha(rr: npt.NDArray[np.float64]) -> str:
    from agent.signals.digest import window_sha256

    return window_sha256(rr)
