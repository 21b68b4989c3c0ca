"""Measure the alternatives on TRAIN (record-wise cross-validation) and write the table the choices rest on.

    flock /tmp/vigil-train.lock python -m model_build.rhythm.select --data ../shared/data

Each candidate (window length, input encoding, width, epochs) goes through the build's own
``cut_train`` + ``cross_validate`` on the TRAIN records only (5 folds by record), and is scored on its
out-of-fold predictions: afdb window figures at its own Youden threshold, nsr2db's specificity at that
threshold, and the short-recording protocol on 30 s TRAIN snippets (unscored snippets count as "no AF").
The classic baselines are fitted on the same windows. The rule, fixed before the table was made: the
candidate with the highest ``min(window F1, snippet F1)`` (both bars of the issue, measured on TRAIN).

Writes ``model_build/rhythm/selection.json`` (copied into the model card's ``build.selection``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from model_build.rhythm.baseline import fit_baselines
from model_build.rhythm.build import cross_validate, cut_train, load_train, progress_bar, short_figures
from model_build.rhythm.cli import default_data_root
from model_build.rhythm.config import CHOSEN, RhythmConfig
from model_build.rhythm.metrics import scores_at, youden_threshold
from model_build.rhythm.model import ModelSpec
from model_build.rhythm.windows import record_key

SELECTION_PATH = Path(__file__).resolve().parent / "selection.json"

CANDIDATES: tuple[tuple[int, str, int, int], ...] = (
    # n_beats, encoding, width, epochs
    (32, "rr_relative_v1", 16, 10),
    (32, "rr_relative_density_v1", 16, 10),
    (32, "rr_relative_density_cosen_v1", 16, 10),
    (16, "rr_relative_density_cosen_v1", 16, 10),
    (24, "rr_relative_density_cosen_v1", 16, 10),
    (64, "rr_relative_density_cosen_v1", 16, 10),
    (32, "rr_relative_density_cosen_v1", 8, 10),
    (32, "rr_relative_density_cosen_v1", 24, 15),
    # added once 24 beats led the table: the width and epochs at 24 beats
    (24, "rr_relative_density_cosen_v1", 8, 10),
    (24, "rr_relative_density_cosen_v1", 24, 15),
)


def candidate_config(n: int, encoding: str, width: int, epochs: int) -> RhythmConfig:
    return replace(
        CHOSEN, n_beats=n, hop=n // 2, encoding=encoding, model=replace(ModelSpec(), width=width, epochs=epochs)
    )


def evaluate_candidate(records: Any, files: Any, config: RhythmConfig, progress: Any) -> dict[str, Any]:
    started = time.monotonic()
    tw = cut_train(records, files, config, progress)
    cv = cross_validate(tw, config, progress)
    ev = tw.afdb_eval
    y = tw.table.label[ev]
    thr = youden_threshold(cv.oof[ev], y, np.linspace(0.05, 0.95, 181))
    s = scores_at(cv.oof[ev], y, thr)
    nsr = (tw.part != "afdb-train") & tw.table.quality_ok
    short = short_figures(cv.short, thr)
    a = cv.short.labels == "A"
    calls = np.isfinite(cv.short.scores) & (np.nan_to_num(cv.short.scores, nan=-1.0) >= thr)
    short_f1 = scores_at(calls.astype(np.float64), a.astype(np.int64), 0.5).f1
    baseline, both = fit_baselines(tw.table.rr_s[ev], y)
    return {
        "n_beats": config.n_beats,
        "hop": config.hop,
        "encoding": config.encoding,
        "width": config.model.width,
        "epochs": config.model.epochs,
        "threshold": thr,
        "afdb_auc": s.auc,
        "afdb_sensitivity": s.sensitivity,
        "afdb_specificity": s.specificity,
        "afdb_ppv": s.ppv,
        "afdb_f1": s.f1,
        "nsr2db_specificity": float(np.mean(cv.oof[nsr] < thr)),
        "short_sensitivity": short["sensitivity"],
        "short_specificity": short["specificity"],
        "short_unscored_a": short["unscored_a"] / max(short["recordings_a"], 1.0),
        "short_f1": short_f1,
        "criterion": min(s.f1, short_f1),
        "baseline_f1": {b.name: b.train_f1 for b in both},
        "baseline": baseline.name,
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_build.rhythm.select", description=__doc__)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=SELECTION_PATH)
    parser.add_argument("--only", type=int, nargs="*", help="indices of CANDIDATES to run (default: all)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    bar = progress_bar(not args.no_progress)
    records, files = load_train(args.data or default_data_root(), bar)
    records.sort(key=record_key)
    previous = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {"candidates": []}
    rows = {json.dumps(r["key"]): r for r in previous["candidates"]}
    for i, (n, enc, width, epochs) in enumerate(CANDIDATES):
        if args.only is not None and i not in args.only:
            continue
        row = evaluate_candidate(records, files, candidate_config(n, enc, width, epochs), bar)
        row["key"] = [n, enc, width, epochs]
        rows[json.dumps(row["key"])] = row
        print(json.dumps(row), flush=True)
        out = {
            "rule": "highest min(afdb window F1, short-snippet F1), out of fold on TRAIN",
            "candidates": list(rows.values()),
        }
        args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
