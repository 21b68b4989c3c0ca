"""How the short-recording protocol holds up against beat-detector errors, measured on TRAIN only.

    flock /tmp/vigil-train.lock python -m model_build.rhythm.robustness --data ../shared/data --json OUT

cinc2017's RR intervals come from a QRS detector run on a handheld single-lead ECG (WFDB ``wqrs``; its
PROVENANCE.md warns of detector errors), where afdb's and nsr2db's come from reviewed annotations. This study
asks, on TRAIN records alone, how much such errors cost: the TRAIN 30 s snippets of each fold (the build's
short-recording validation, :func:`model_build.rhythm.build.snippets`) are scored by the model trained on the
other folds, clean and again after :func:`detector_errors` has put missed and extra beats into them at a given
share of beats. The rest of the protocol is the build's own: the card's cleaning and quality gate, the mean
probability of a snippet's gated windows, the threshold fitted as the build fits it (Youden on the out-of-fold
afdb windows). No TEST record is read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model_build.rhythm.data import RRRecord
from model_build.rhythm.errors import RhythmBuildError

DEFAULT_RATES = (0.0, 0.01, 0.03, 0.05)
# wqrs works at the ECG's sampling rate: cinc2017 is sampled at 300 Hz.
DETECTOR_FS_HZ = 300.0
JITTER_S = 0.004
# A false detection (a T wave, noise) lands this far into the interval it splits.
SPLIT_AT = (0.3, 0.6)


def detector_errors(
    record: RRRecord,
    rate: float,
    rng: np.random.Generator,
    *,
    jitter_s: float = JITTER_S,
    fs_hz: float | None = DETECTOR_FS_HZ,
) -> RRRecord:
    """``record`` as an imperfect QRS detector might have seen it.

    Each beat, with probability ``rate / 2``, is missed (its interval merges with the next one) or, with
    probability ``rate / 2``, gains a false detection (its interval splits at ``SPLIT_AT`` of its length).
    Every detected beat time then moves by Gaussian jitter (``jitter_s``) and is rounded to the detector's
    sample clock (``fs_hz``; ``None``: not rounded). Per-beat rhythm labels follow the beats: a merged
    interval keeps the label of the beat that ends it, both halves of a split one keep its label. The record
    starts where it started and ends within the jitter of where it ended.
    """
    if not (0.0 <= rate <= 1.0):
        raise RhythmBuildError(f"the detector error rate must be within [0, 1], got {rate}")
    rr = np.asarray(record.rr_s, dtype=np.float64)
    n = rr.size
    draw = rng.random(n)
    pieces: list[float] = []
    source: list[int] = []  # for each output interval, the input beat whose label it carries
    i = 0
    while i < n:
        if draw[i] < rate / 2.0 and i + 1 < n:  # missed: this beat is not detected
            pieces.append(float(rr[i] + rr[i + 1]))
            source.append(i + 1)
            i += 2
            continue
        if draw[i] < rate:  # an extra detection inside this interval
            f = rng.uniform(*SPLIT_AT)
            pieces.extend((float(rr[i]) * f, float(rr[i]) * (1.0 - f)))
            source.extend((i, i))
        else:
            pieces.append(float(rr[i]))
            source.append(i)
        i += 1
    beats = np.cumsum(np.asarray(pieces)) + (rng.normal(0.0, jitter_s, len(pieces)) if jitter_s > 0 else 0.0)
    if fs_hz is not None:
        beats = np.round(beats * fs_hz) / fs_hz
    beats = np.maximum.accumulate(beats)  # jitter cannot reorder beats
    new_rr = np.diff(np.concatenate([[0.0], beats]))
    t0 = float(record.t_s[0] - record.rr_s[0]) if n else 0.0
    idx = np.asarray(source, dtype=np.int64)
    rhythm = None if record.rhythm is None else record.rhythm[idx]
    return RRRecord(record.set, record.record, t0 + beats, new_rr, rhythm=rhythm, label=record.label)


def _figures(labels: npt.NDArray[np.str_], scores: npt.NDArray[np.float64], threshold: float) -> dict[str, float]:
    a, n = labels == "A", labels == "N"
    scored = np.isfinite(scores)
    filled = np.nan_to_num(scores, nan=-1.0)  # unscored: no AF call, below every threshold
    call = filled >= threshold
    cut95 = float(np.quantile(filled[n], 0.95)) if n.any() else math.nan
    return {
        "snippets_a": int(a.sum()),
        "snippets_n": int(n.sum()),
        "unscored_a_share": float(np.mean(~scored[a])) if a.any() else math.nan,
        "unscored_n_share": float(np.mean(~scored[n])) if n.any() else math.nan,
        "sensitivity": float(np.mean(call[a])) if a.any() else math.nan,
        "specificity": float(np.mean(~call[n])) if n.any() else math.nan,
        "sensitivity_at_specificity_0.95": float(np.mean(filled[a] > cut95)) if a.any() else math.nan,
    }


def study(data_root: Path, rates: Sequence[float], seed: int, progress: Any) -> dict[str, Any]:
    from model_build.rhythm import model as rhythm_model
    from model_build.rhythm.build import cut_train, fold_models, load_train, short_scores, short_snippets_by_fold
    from model_build.rhythm.config import CHOSEN
    from model_build.rhythm.metrics import youden_threshold
    from model_build.rhythm.windows import record_key

    config = CHOSEN
    started = time.monotonic()
    records, files = load_train(data_root, progress)
    records.sort(key=record_key)
    tw = cut_train(records, files, config, progress)
    by_fold = short_snippets_by_fold(tw, config)
    oof = np.full(len(tw.table), math.nan)
    parts: dict[float, list[tuple[npt.NDArray[np.str_], npt.NDArray[np.float64]]]] = {r: [] for r in rates}
    for f, model in fold_models(tw, config, oof, progress):

        def predictor(x: npt.NDArray[np.float32], m: Any = model) -> npt.NDArray[np.float64]:
            return rhythm_model.predict(m, x)

        for rate in rates:
            rng = np.random.default_rng([seed, f, round(rate * 1e6)])
            pieces = [detector_errors(snippet, rate, rng) for snippet in by_fold[f]]
            scored = short_scores(pieces, config, predictor)
            parts[rate].append((scored.labels, scored.scores))
    ev = tw.afdb_eval
    threshold = youden_threshold(oof[ev], tw.table.label[ev], np.linspace(0.05, 0.95, 181))
    table = []
    for rate in rates:
        labels = np.concatenate([p[0] for p in parts[rate]])
        scores = np.concatenate([p[1] for p in parts[rate]])
        table.append({"error_rate": rate, **_figures(labels, scores, threshold)})
    return {
        "what": "TRAIN 30 s snippets, out of fold, with simulated beat-detector errors (model_build.rhythm.robustness)",
        "threshold": threshold,
        "jitter_s": JITTER_S,
        "detector_fs_hz": DETECTOR_FS_HZ,
        "seed": seed,
        "seconds": round(time.monotonic() - started, 1),
        "table": table,
    }


def main(argv: Sequence[str] | None = None) -> int:
    from model_build.rhythm.build import progress_bar
    from model_build.rhythm.cli import default_data_root

    parser = argparse.ArgumentParser(
        prog="python -m model_build.rhythm.robustness",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    parser.add_argument("--data", type=Path, default=None, help="data root (default: $VIGIL_DATA, else ../shared/data)")
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULT_RATES), help="shares of beats in error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    result = study(args.data or default_data_root(), args.rates, args.seed, progress_bar(not args.no_progress))
    print(f"threshold {result['threshold']:.3f}; {result['seconds']} s")
    print("error rate  unscored A  unscored N  sensitivity  specificity  sens@spec0.95")
    for row in result["table"]:
        print(
            f"{row['error_rate']:10.3f}  {row['unscored_a_share']:10.4f}  {row['unscored_n_share']:10.4f}"
            f"  {row['sensitivity']:11.4f}  {row['specificity']:11.4f}  {row['sensitivity_at_specificity_0.95']:13.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
