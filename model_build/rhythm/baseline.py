"""The classic RR-irregularity detectors, fitted on TRAIN windows, scored on the same windows as the model.

- ``cosen``: COSEn (Lake & Moorman 2011, ``agent.signals.rr.cosen``, m = 1, r = 30 ms) at or above one threshold
  is AF. COSEn is undefined where no two intervals of the window lie within r of each other (NaN) and
  unbounded where no pair extends to length m + 1 (+inf): both mean "no regularity at all" and count as AF.
- ``nrmssd_shannon``: normalised RMSSD at or above ``a`` and Shannon entropy at or above ``b`` (Dash et al.
  2009 combine the two, with a turning-point test left out here).

Thresholds maximise sensitivity + specificity (Youden) on the afdb TRAIN windows that pass the quality gate,
the same criterion and windows the model's threshold is fitted on. The baseline the reports compare against
is the one with the higher F1 on those TRAIN windows (decided on TRAIN, before TEST is read).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.signals.rr import cosen, nrmssd, shannon_entropy
from model_build.rhythm.metrics import scores_at, youden_threshold

FloatArray = npt.NDArray[np.float64]


def cosen_score(rr_s: npt.ArrayLike) -> FloatArray:
    """COSEn per window with NaN (no matches at all) as +inf: both are maximal irregularity."""
    c = cosen(rr_s)
    return np.where(np.isnan(c), np.inf, c)


@dataclass(frozen=True)
class Baseline:
    """A fitted classic detector: ``name``, thresholds, and its F1 on the TRAIN windows it was fitted on."""

    name: str
    thresholds: dict[str, float]
    train_f1: float

    def predict(self, rr_s: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        if self.name == "cosen":
            return np.asarray(cosen_score(rr_s) >= self.thresholds["cosen"])
        out = (nrmssd(rr_s) >= self.thresholds["nrmssd"]) & (
            shannon_entropy(rr_s) >= self.thresholds["shannon_entropy"]
        )
        return np.asarray(out)

    def score(self, rr_s: npt.ArrayLike) -> FloatArray:
        """A continuous score for the AUC: COSEn, or the smaller margin of the two features over their thresholds."""
        if self.name == "cosen":
            return cosen_score(rr_s)
        a = nrmssd(rr_s) / self.thresholds["nrmssd"]
        b = shannon_entropy(rr_s) / self.thresholds["shannon_entropy"]
        return np.minimum(a, b)


def fit_cosen(rr_s: FloatArray, y: npt.NDArray[np.integer[Any]]) -> Baseline:
    score = cosen_score(rr_s)
    finite = score[np.isfinite(score)]
    thr = youden_threshold(score, y, np.quantile(finite, np.linspace(0.0, 1.0, 801)))
    return Baseline("cosen", {"cosen": thr}, scores_at(score, y, thr).f1)


def fit_nrmssd_shannon(rr_s: FloatArray, y: npt.NDArray[np.integer[Any]]) -> Baseline:
    a, b = nrmssd(rr_s), shannon_entropy(rr_s)
    t = np.asarray(y) == 1
    best: tuple[float, float, float] = (-1.0, 0.0, 0.0)
    for ta in np.quantile(a, np.linspace(0.02, 0.98, 97)):
        above = a >= ta
        for tb in np.quantile(b, np.linspace(0.0, 0.98, 50)):
            pred = above & (b >= tb)
            j = float(np.mean(pred[t]) + np.mean(~pred[~t]))
            if j > best[0]:
                best = (j, float(ta), float(tb))
    _, ta, tb = best
    pred = (a >= ta) & (b >= tb)
    f1 = scores_at(pred.astype(np.float64), y, 0.5).f1
    return Baseline("nrmssd_shannon", {"nrmssd": ta, "shannon_entropy": tb}, f1)


def fit_baselines(rr_s: FloatArray, y: npt.NDArray[np.integer[Any]]) -> tuple[Baseline, list[Baseline]]:
    """Fit both on TRAIN windows; return (the one with the higher TRAIN F1, both)."""
    both = [fit_cosen(rr_s, y), fit_nrmssd_shannon(rr_s, y)]
    return max(both, key=lambda b: b.train_f1), both
