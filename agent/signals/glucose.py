"""CGM readings onto a fixed 5-minute grid with explicit gap rules, and the windows forecasters learn from.

Contract for the input (``resample_glucose``): times in seconds (any epoch, float64, finite), values in mg/dL as
float64, NaN allowed. The caller turns everything else into that first: device strings such as "Low"/"High",
mmol/L, impossible values and readings whose Sensor Status Annunciation makes them unusable (see
``agent.signals.quality``) arrive here as NaN or not at all. Readings may come in any order (a CGM backfills
after a reconnect), at 5 or 15 minute intervals, with jitter, and more than once.

Rules, in order:

1. NaN (and infinite) readings are dropped: a NaN means "no usable value at that time", the same as no
   reading.
2. Readings are sorted by time. Readings sharing one timestamp become one, their median (for two, their mean),
   which does not depend on the order they arrived in.
3. The grid is ``origin_s + k * step_s`` (default: every 5 minutes since the epoch, so every wearer and every
   data set share grid times), from the first grid time at or after the first reading to the last grid time
   at or before the last reading. Nothing is extrapolated past the last reading, so the newest grid value is
   up to one step old; the window's time span says so.
4. A grid time equal to a reading's time takes that reading exactly. Otherwise, with ``a`` the last reading
   before it and ``b`` the first after it, it is linearly interpolated between them when ``t_b - t_a <=
   max_gap_s`` and NaN when the gap is longer. So no value is ever invented across a gap longer than
   ``max_gap_s``, and every grid value lies between two real readings at most ``max_gap_s`` apart.

``max_gap_s`` defaults to 20 minutes, measured on the TRAIN sets. t1d-uom's 15-minute sensor history comes 15
or 16 minutes apart (15.2% of its gaps are exactly 15 min, 1.3% lie in (15, 20] min), so a 15-minute limit would
throw much of it away. The price, measured by deleting readings from regular 5-minute stretches and
interpolating across the hole: mean absolute error 1.7 / 2.3 / 2.9 / 3.9 mg/dL for 10 / 15 / 20 / 30-minute
gaps on azt1d (99th percentile 10.5 / 13.7 / 16.5 / 22.0), 1.9 / 2.7 / 3.5 / 5.0 on brist1d-open (99th
percentile 10.8 / 13.8 / 17.5 / 25.2). Duplicated timestamps occur (azt1d 5,175, t1d-uom 15,915; in t1d-uom
mostly with equal values, in a few subjects from two overlapping sensors), hence rule 2.

Windows (``glucose_windows``): the past window ending at grid index e holds values ``e - length + 1 .. e``;
its targets are the values ``horizon / step`` steps after e (default horizons +15, +30, +45, +60 minutes). A
window is kept only when its past and its targets are all finite. A grid value depends only on the readings
within ``max_gap_s`` of it, so the agent's rolling buffer, which keeps only recent readings, computes the same
values, and it cuts its current window with this same function and no horizons (it has no future).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from agent.signals.digest import readonly_copy, window_sha256
from agent.signals.errors import SignalError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STEP_S = 300.0
DEFAULT_HORIZONS_S = (900.0, 1800.0, 2700.0, 3600.0)


@dataclass(frozen=True)
class GlucoseGridding:
    """How readings become a grid: ``step_s`` apart, aligned to ``origin_s``, gaps up to ``max_gap_s`` bridged."""

    step_s: float = STEP_S
    max_gap_s: float = 1200.0
    origin_s: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.step_s) and self.step_s > 0.0):
            raise SignalError("step_s", self.step_s, "must be a finite number > 0")
        if not (np.isfinite(self.max_gap_s) and self.max_gap_s >= 0.0):
            raise SignalError("max_gap_s", self.max_gap_s, "must be a finite number >= 0")
        if not np.isfinite(self.origin_s):
            raise SignalError("origin_s", self.origin_s, "must be finite")


@dataclass(frozen=True)
class GlucoseWindowing:
    """Past windows of ``length`` grid steps and targets ``horizons_s`` after their end.

    ``length`` belongs to the model (issue 6 chooses it; a model bundle records it)."""

    length: int
    horizons_s: tuple[float, ...] = DEFAULT_HORIZONS_S
    gridding: GlucoseGridding = field(default_factory=GlucoseGridding)

    def __post_init__(self) -> None:
        if self.length < 1:
            raise SignalError("length", self.length, "must be >= 1")
        steps = [h / self.gridding.step_s for h in self.horizons_s]
        if any(s <= 0 or s != round(s) for s in steps) or list(self.horizons_s) != sorted(set(self.horizons_s)):
            raise SignalError("horizons_s", self.horizons_s, "must be increasing positive multiples of step_s")

    @property
    def horizon_steps(self) -> IntArray:
        return np.array([round(h / self.gridding.step_s) for h in self.horizons_s], dtype=np.int64)


@dataclass(frozen=True, eq=False)
class GlucoseGrid:
    """Grid times (``origin_s + index * step_s``) and values (mg/dL, NaN where the gap rule says so)."""

    index: IntArray
    t_s: FloatArray
    mg_dl: FloatArray


@dataclass(frozen=True, eq=False)
class GlucoseWindow:
    """The past window the agent feeds a forecaster; ``t_start_s``/``t_end_s`` are its first and last grid times.

    ``mg_dl`` is read-only: a window is shared (the rolling buffer caches it) and its hash must stay true.
    """

    end_index: int
    t_start_s: float
    t_end_s: float
    mg_dl: FloatArray

    @cached_property
    def sha256(self) -> str:
        return window_sha256(self.mg_dl)


@dataclass(frozen=True, eq=False)
class GlucoseWindows:
    """Many windows, one per row: past values, targets (one column per horizon) and grid index of each end."""

    end_index: IntArray
    t_start_s: FloatArray
    t_end_s: FloatArray
    past: FloatArray
    targets: FloatArray

    def __len__(self) -> int:
        return int(self.end_index.shape[0])

    def window(self, i: int) -> GlucoseWindow:
        return GlucoseWindow(
            end_index=int(self.end_index[i]),
            t_start_s=float(self.t_start_s[i]),
            t_end_s=float(self.t_end_s[i]),
            mg_dl=readonly_copy(self.past[i]),
        )


def grid_time(index: npt.ArrayLike, gridding: GlucoseGridding) -> FloatArray:
    """Time of grid points by absolute index (the one formula both paths use)."""
    return np.asarray(gridding.origin_s + np.asarray(index, dtype=np.int64) * gridding.step_s, dtype=np.float64)


def readings(t_s: npt.ArrayLike, mg_dl: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Rules 1-2: drop NaN values, sort by time, merge equal timestamps to their median."""
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(mg_dl, dtype=np.float64)
    if t.ndim != 1 or v.shape != t.shape:
        raise SignalError("t_s/mg_dl", (t.shape, v.shape), "need two 1-D arrays of the same length")
    if not np.all(np.isfinite(t)):
        raise SignalError("t_s", t.shape, "reading times must be finite")
    usable = np.isfinite(v)
    t, v = t[usable], v[usable]
    order = np.lexsort((v, t))  # by time, then value: duplicates sorted, so the median is order-free
    t, v = t[order], v[order]
    if t.size == 0 or np.all(t[1:] != t[:-1]):
        return t, v
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    counts = np.diff(np.r_[starts, t.size])
    low = starts + (counts - 1) // 2
    high = starts + counts // 2
    return t[starts], (v[low] + v[high]) / 2.0


def resample_glucose(t_s: npt.ArrayLike, mg_dl: npt.ArrayLike, gridding: GlucoseGridding | None = None) -> GlucoseGrid:
    """Readings at any times -> values on the grid, by rules 1-4 of the module docstring."""
    g = gridding or GlucoseGridding()
    t, v = readings(t_s, mg_dl)
    if t.size == 0:
        return GlucoseGrid(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    first = int(np.ceil((t[0] - g.origin_s) / g.step_s))
    last = int(np.floor((t[-1] - g.origin_s) / g.step_s))
    index = np.arange(first, last + 1, dtype=np.int64)
    times = grid_time(index, g)
    inside = (times >= t[0]) & (times <= t[-1])  # guards the ceil/floor above against rounding
    index, times = index[inside], times[inside]
    return GlucoseGrid(index=index, t_s=times, mg_dl=_interpolate(t, v, times, g.max_gap_s))


def _interpolate(t: FloatArray, v: FloatArray, at: FloatArray, max_gap_s: float) -> FloatArray:
    """Rule 4 for sorted, distinct reading times ``t`` and query times ``at`` within [t[0], t[-1]]."""
    a = np.clip(np.searchsorted(t, at, side="right") - 1, 0, t.size - 1)
    b = np.minimum(a + 1, t.size - 1)
    exact = t[a] == at
    gap = t[b] - t[a]
    bridged = (b > a) & (gap <= max_gap_s)
    safe_gap = np.where(bridged, gap, 1.0)
    line = v[a] + (v[b] - v[a]) * ((at - t[a]) / safe_gap)
    return np.where(exact, v[a], np.where(bridged, line, np.nan))


def glucose_windows(grid: GlucoseGrid, windowing: GlucoseWindowing) -> GlucoseWindows:
    """Every window whose past (``length`` values) and targets (at ``horizons_s``) are all finite."""
    length, steps = windowing.length, windowing.horizon_steps
    reach = int(steps[-1]) if steps.size else 0
    values = grid.mg_dl
    n_ends = values.size - length + 1 - reach
    if n_ends <= 0:
        empty = np.zeros((0, length))
        return GlucoseWindows(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), empty, np.zeros((0, steps.size)))
    ends = np.arange(length - 1, length - 1 + n_ends)
    past = sliding_window_view(values, length)[:n_ends]
    targets = values[ends[:, None] + steps[None, :]]
    keep = np.isfinite(past).all(axis=-1) & np.isfinite(targets).all(axis=-1)
    kept = ends[keep]
    return GlucoseWindows(
        end_index=grid.index[kept],
        t_start_s=grid.t_s[kept - length + 1],
        t_end_s=grid.t_s[kept],
        past=np.ascontiguousarray(past[keep]),
        targets=targets[keep],
    )
