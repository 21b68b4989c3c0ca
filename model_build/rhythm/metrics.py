"""Window- and episode-level figures (numpy only, no scikit-learn).

Window level, for labels 1 (AF) and 0 (not AF), predictions ``score >= threshold``:
sensitivity TP/(TP+FN), specificity TN/(TN+FP), PPV TP/(TP+FP), F1 2TP/(2TP+FP+FN), and the AUC as the
Mann-Whitney statistic (ties count one half). A ratio whose denominator is zero is NaN, reported as ``null``;
so is F1 on windows without any AF (nsr2db), where it would only restate the false positives.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class WindowScores:
    n: int
    positives: int
    sensitivity: float
    specificity: float
    ppv: float
    f1: float
    auc: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else math.nan


def confusion(pred: npt.ArrayLike, y: npt.ArrayLike) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(y) == 1
    return (
        int(np.sum(p & t)),
        int(np.sum(p & ~t)),
        int(np.sum(~p & t)),
        int(np.sum(~p & ~t)),
    )


def scores_at(score: npt.ArrayLike, y: npt.ArrayLike, threshold: float) -> WindowScores:
    s = np.asarray(score, dtype=np.float64)
    labels = np.asarray(y)
    tp, fp, fn, tn = confusion(s >= threshold, labels)
    return WindowScores(
        n=int(labels.size),
        positives=tp + fn,
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        ppv=_ratio(tp, tp + fp),
        f1=_ratio(2 * tp, 2 * tp + fp + fn) if tp + fn else math.nan,  # undefined without AF windows
        auc=auc(s, labels),
    )


def auc(score: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random AF window > that of a random non-AF one), ties 1/2."""
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(y) == 1
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    ranks = (upper - (counts - 1) / 2.0)[inverse.reshape(-1)]
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def youden_threshold(score: npt.ArrayLike, y: npt.ArrayLike, candidates: npt.ArrayLike | None = None) -> float:
    """The threshold maximising sensitivity + specificity (ties: the highest such threshold)."""
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(y) == 1
    grid = np.unique(s) if candidates is None else np.asarray(candidates, dtype=np.float64)
    best, best_j = float(grid[0]), -math.inf
    # Sort once and count with searchsorted: O((n + g) log n).
    pos, neg = np.sort(s[t]), np.sort(s[~t])
    for thr in grid:
        sens = 1.0 - np.searchsorted(pos, thr, side="left") / max(pos.size, 1)
        spec = np.searchsorted(neg, thr, side="left") / max(neg.size, 1)
        j = sens + spec
        if j >= best_j:
            best, best_j = float(thr), j
    return best


def sensitivity_at_specificity(score: npt.ArrayLike, y: npt.ArrayLike, specificity: float) -> tuple[float, float]:
    """(sensitivity, threshold) at the lowest threshold whose specificity is at least ``specificity``.

    A description of a curve, for reporting: a threshold read off TEST data is never used to decide anything.
    """
    s = np.asarray(score, dtype=np.float64)
    t = np.asarray(y) == 1
    neg = np.sort(s[~t])
    if neg.size == 0 or not t.any():
        return math.nan, math.nan
    for thr in np.unique(s):
        if np.searchsorted(neg, thr, side="left") / neg.size >= specificity:
            return float(np.mean(s[t] >= thr)), float(thr)
    return 0.0, math.inf


def clean_json(obj: object) -> object:
    """NaN and infinities to ``None``, numpy scalars to Python numbers, recursively (for JSON output)."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
