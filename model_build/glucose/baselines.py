"""The classic forecasters the model must beat, run on exactly the windows the model sees.

Each takes past windows ``(n, length)`` in mg/dL on the 5-minute grid (newest value last) and the horizons in
grid steps, and returns forecasts ``(n, len(horizons))`` in mg/dL.

- :func:`persistence`: zero-order hold, the last value.
- :func:`linear_extrapolation`: a least-squares line through the last ``span_steps + 1`` values (``span_steps``
  = 3..6, i.e. the last 15-30 minutes), extended to each horizon. The span is chosen on TRAIN validation.
- :func:`ar2`: Nightscout's AR2 (``lib/plugins/ar2.js``): on ``y = ln(BG / 140)`` the recursion
  ``y[k+1] = -0.723 * y[k-1] + 1.716 * y[k]`` in 5-minute steps from the last two grid values, each forecast
  ``140 * exp(y)`` clamped to 36-400 mg/dL (the recursion itself is not clamped, as in Nightscout).
- :class:`RidgeAR`: a ridge-regression autoregressive model: per horizon, the change from the last value
  regressed on the last ``order`` values (centred), penalty ``alpha``; fitted in closed form on TRAIN, ``order``
  and ``alpha`` chosen on TRAIN validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

AR2_REF_MG_DL = 140.0
AR2_COEFFICIENTS = (-0.723, 1.716)  # applied to (y[k-1], y[k])
AR2_MIN_MG_DL = 36.0
AR2_MAX_MG_DL = 400.0


def _steps(horizon_steps: Sequence[int]) -> list[int]:
    steps = [int(h) for h in horizon_steps]
    if not steps or min(steps) < 1:
        raise ValueError(f"horizons must be positive numbers of grid steps, got {steps}")
    return steps


def persistence(past: FloatArray, horizon_steps: Sequence[int]) -> FloatArray:
    steps = _steps(horizon_steps)
    out: FloatArray = np.repeat(np.asarray(past, dtype=np.float64)[:, -1:], len(steps), axis=1)
    return out


def linear_extrapolation(past: FloatArray, horizon_steps: Sequence[int], span_steps: int = 6) -> FloatArray:
    """Least-squares line through the last ``span_steps + 1`` values, evaluated ``h`` steps past the last."""
    steps = _steps(horizon_steps)
    p = np.asarray(past, dtype=np.float64)
    k = span_steps + 1
    if not 2 <= k <= p.shape[1]:
        raise ValueError(f"span_steps must be 1..{p.shape[1] - 1}, got {span_steps}")
    x = np.arange(-span_steps, 1, dtype=np.float64)  # the last value at x = 0
    xc = x - x.mean()
    recent = p[:, -k:]
    slope = recent @ xc / (xc @ xc)
    at_zero = recent.mean(axis=1) - slope * x.mean()
    out: FloatArray = at_zero[:, None] + slope[:, None] * np.asarray(steps, dtype=np.float64)[None, :]
    return out


def ar2(past: FloatArray, horizon_steps: Sequence[int]) -> FloatArray:
    steps = _steps(horizon_steps)
    p = np.asarray(past, dtype=np.float64)
    prev = np.log(p[:, -2] / AR2_REF_MG_DL)
    curr = np.log(p[:, -1] / AR2_REF_MG_DL)
    a_prev, a_curr = AR2_COEFFICIENTS
    by_step: dict[int, FloatArray] = {}
    for k in range(1, max(steps) + 1):
        prev, curr = curr, a_prev * prev + a_curr * curr
        by_step[k] = np.clip(AR2_REF_MG_DL * np.exp(curr), AR2_MIN_MG_DL, AR2_MAX_MG_DL)
    return np.stack([by_step[s] for s in steps], axis=1)


@dataclass(frozen=True)
class RidgeAR:
    """``forecast = last + mean_delta + (window[-order:] - mean_window) @ coef``, one column per horizon."""

    order: int
    alpha: float
    mean_window: FloatArray
    mean_delta: FloatArray
    coef: FloatArray  # (order, horizons)

    @classmethod
    def fit(cls, past: FloatArray, targets: FloatArray, *, order: int, alpha: float) -> RidgeAR:
        x = np.asarray(past, dtype=np.float64)[:, -order:]
        delta = np.asarray(targets, dtype=np.float64) - x[:, -1:]
        mean_x, mean_d = x.mean(axis=0), delta.mean(axis=0)
        xc = x - mean_x
        gram = xc.T @ xc
        # alpha is per sample, so the penalty means the same whatever the number of windows
        coef = np.linalg.solve(gram + alpha * x.shape[0] * np.eye(order), xc.T @ (delta - mean_d))
        return cls(order=order, alpha=alpha, mean_window=mean_x, mean_delta=mean_d, coef=coef)

    def predict(self, past: FloatArray) -> FloatArray:
        x = np.asarray(past, dtype=np.float64)[:, -self.order :]
        out: FloatArray = x[:, -1:] + self.mean_delta + (x - self.mean_window) @ self.coef
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "alpha": self.alpha,
            "mean_window": self.mean_window.tolist(),
            "mean_delta": self.mean_delta.tolist(),
            "coef": self.coef.tolist(),
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> RidgeAR:
        return cls(
            order=int(obj["order"]),
            alpha=float(obj["alpha"]),
            mean_window=np.asarray(obj["mean_window"], dtype=np.float64),
            mean_delta=np.asarray(obj["mean_delta"], dtype=np.float64),
            coef=np.asarray(obj["coef"], dtype=np.float64),
        )
