"""Point-forecast, interval and time-lag metrics, all in mg/dL on the 5-minute grid.

- ``rmse``, ``mae``; ``mard_pct``: mean of ``|forecast - reference| / reference``, in percent.
- Clarke Error Grid (Clarke et al., Diabetes Care 1987), :func:`clarke_zones`, with the reference on x and
  the forecast on y, zone boundaries as commonly implemented from the paper:
  A: both <= 70, or the forecast within 20% of the reference;
  E: reference >= 180 and forecast <= 70, or reference <= 70 and forecast >= 180;
  C: reference 70-290 and forecast >= reference + 110, or reference 130-180 and forecast <= 7/5 * reference - 182;
  D: reference >= 240 and forecast 70-180, or reference <= 175/3 and forecast 70-180, or reference 175/3-70
  and forecast >= 6/5 * reference;
  B: everything else.
- ``coverage``: the share of references inside ``[lower, upper]``.
- Time lag (:class:`LagAccumulator`): the shift ``tau`` (0 to the horizon, in grid steps) that minimises the
  mean squared difference between the forecast for grid time ``s`` and the measured value at ``s - tau``. A
  forecast that only repeats the present (persistence) lags by the whole horizon; 0 is ideal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

ZONES = ("A", "B", "C", "D", "E")


def rmse(forecast: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    d = np.asarray(forecast, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d))) if d.size else float("nan")


def mae(forecast: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    d = np.asarray(forecast, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return float(np.mean(np.abs(d))) if d.size else float("nan")


def mard_pct(forecast: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    r = np.asarray(reference, dtype=np.float64)
    d = np.asarray(forecast, dtype=np.float64) - r
    return float(100.0 * np.mean(np.abs(d) / r)) if d.size else float("nan")


def coverage(reference: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    r = np.asarray(reference, dtype=np.float64)
    inside = (r >= np.asarray(lower)) & (r <= np.asarray(upper))
    return float(np.mean(inside)) if r.size else float("nan")


def clarke_zones(reference: npt.ArrayLike, forecast: npt.ArrayLike) -> npt.NDArray[np.str_]:
    """The Clarke zone letter of every (reference, forecast) pair."""
    r = np.asarray(reference, dtype=np.float64)
    p = np.asarray(forecast, dtype=np.float64)
    a = ((r <= 70) & (p <= 70)) | ((p <= 1.2 * r) & (p >= 0.8 * r))
    e = ((r >= 180) & (p <= 70)) | ((r <= 70) & (p >= 180))
    c = ((r >= 70) & (r <= 290) & (p >= r + 110)) | ((r >= 130) & (r <= 180) & (p <= 7.0 / 5.0 * r - 182))
    d = (
        ((r >= 240) & (p >= 70) & (p <= 180))
        | ((r <= 175.0 / 3.0) & (p <= 180) & (p >= 70))
        | ((r >= 175.0 / 3.0) & (r <= 70) & (p >= 6.0 / 5.0 * r))
    )
    return np.select([a, e, c, d], ["A", "E", "C", "D"], default="B")


def clarke_pct(reference: npt.ArrayLike, forecast: npt.ArrayLike) -> dict[str, float]:
    zones = clarke_zones(reference, forecast)
    n = max(int(zones.size), 1)
    return {z: float(100.0 * np.count_nonzero(zones == z) / n) for z in ZONES}


@dataclass
class LagAccumulator:
    """Squared differences per shift, summed over subjects; :meth:`lag_steps` gives the best shift."""

    max_shift: int
    sums: FloatArray = field(init=False)
    counts: IntArray = field(init=False)

    def __post_init__(self) -> None:
        self.sums = np.zeros(self.max_shift + 1)
        self.counts = np.zeros(self.max_shift + 1, dtype=np.int64)

    def add(self, target_index: IntArray, forecast: FloatArray, grid_index: IntArray, grid_values: FloatArray) -> None:
        """Forecasts for grid indices ``target_index`` of one subject whose grid is ``grid_index``/``grid_values``."""
        if grid_index.size == 0 or target_index.size == 0:
            return
        first = int(grid_index[0])
        for tau in range(self.max_shift + 1):
            at = np.asarray(target_index, dtype=np.int64) - tau - first
            ok = (at >= 0) & (at < grid_values.size)
            measured = np.full(at.shape, np.nan)
            measured[ok] = grid_values[at[ok]]
            ok &= np.isfinite(measured)
            d = forecast[ok] - measured[ok]
            self.sums[tau] += float(d @ d)
            self.counts[tau] += int(ok.sum())

    def lag_steps(self) -> int:
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = self.sums / self.counts
        if not np.any(np.isfinite(mse)):
            return -1
        return int(np.nanargmin(mse))
