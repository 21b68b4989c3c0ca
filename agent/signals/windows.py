"""The per-wearer rolling buffer: readings in one at a time, the current RR and glucose windows out on demand.

The agent keeps one ``WearerWindows`` per wearer in memory. It is bounded (the last ``horizon_s`` of beats and of
glucose readings, with fixed-size arrays) and cuts its windows with the batch functions ``model_build`` uses,
``agent.signals.rr.rr_windows`` and ``agent.signals.glucose.glucose_windows``, applied to the part of the
buffer the window depends on. Both batch functions are defined so that a window depends only on readings near
it (an RR window on its segment of ``RRWindowing.width`` beats, a glucose grid value on readings within
``max_gap_s``), which is what makes the agent's windows identical, bit for bit, to the ones ``model_build``
cuts from the same readings. ``tests/agent/signals/test_windows.py`` checks that by feeding readings one by
one.

RR. Beats are taken in arrival order (``agent.core`` stamps each with the end time of its interval) and
numbered from the first one the buffer received; ``rr_window()`` is the newest complete window on the
``hop`` grid of those numbers, or ``None`` before the first. The buffer always keeps the beats the next window
needs, whatever their age, so a long silence cannot make it cut a different window than the batch would (that
window has a time gap and fails the quality gate).

Glucose. Readings may arrive out of order and more than once (a CGM backfills after a reconnect); the buffer
keeps the finite ones from the last ``horizon_s`` before the newest (older arrivals are ignored; storage is a
fixed array, compacted when full) and
``glucose_window()`` is the past window ending at the newest grid point, or ``None`` when that window has a
gap or is not yet full. The buffer keeps raw readings rather than grid points, because a backfilled reading can
change grid values that were already computed.

Cost, measured on the build host (x86_64, one core): ``add`` a few µs a beat at most (old beats are let go one by one,
constant work a beat whatever the horizon); a new RR window 0.35-0.4 ms (cleaning one segment; cached until the
next window is due, so with a hop of 32 beats about 16 µs a beat on average); ``glucose_window()`` 0.1 ms after
a new reading (it resamples only the readings its window depends on; cached until the next reading). A Raspberry
Pi is several times slower; none of this is per notification work that grows with the number of readings kept.
``agent.rhythm`` keeps only the beats its next window needs and, for a batch, cuts its windows in one call.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from agent.signals.errors import SignalError
from agent.signals.glucose import (
    GlucoseGrid,
    GlucoseWindow,
    GlucoseWindowing,
    glucose_windows,
    grid_time,
    resample_glucose,
)
from agent.signals.rr import FloatArray, RRCleaning, RRWindow, RRWindowing, rr_windows

DEFAULT_HORIZON_S = 2 * 3600.0
# RR capacity is sized for this many beats a second over the horizon (240 bpm, the cleaning's default range).
_MAX_BEATS_PER_S = 4.0
# Glucose capacity: one reading a minute (FreeStyle Libre 3 and Dexcom G7 send no more often), doubled for
# duplicates and backfill.
_MAX_READINGS_PER_S = 2.0 / 60.0


class RRBuffer:
    """The beats of one wearer: bounded storage and the current window."""

    def __init__(
        self, windowing: RRWindowing, cleaning: RRCleaning | None = None, *, horizon_s: float = DEFAULT_HORIZON_S
    ) -> None:
        if not (math.isfinite(horizon_s) and horizon_s > 0.0):
            raise SignalError("horizon_s", horizon_s, "must be a finite number > 0")
        self.windowing = windowing
        self.cleaning = cleaning or RRCleaning()
        self.horizon_s = horizon_s
        self._keep_at_least = windowing.width + windowing.hop
        self._capacity = max(math.ceil(horizon_s * _MAX_BEATS_PER_S), self._keep_at_least)
        # Twice the capacity, so the live beats stay one contiguous slice; compacted when the end is reached.
        self._t = np.empty(2 * self._capacity)
        self._rr = np.empty(2 * self._capacity)
        self._lo = 0
        self._hi = 0
        self._dropped = 0
        self._cached: RRWindow | None = None

    @property
    def beats_seen(self) -> int:
        """Beats received since the buffer was created (window ``start_index`` counts from the first)."""
        return self._dropped + self._hi - self._lo

    def add(self, t_s: float, rr_s: float) -> None:
        """One interval, ``rr_s`` seconds long, that ended at ``t_s``; any float, NaN included (an artifact)."""
        if not math.isfinite(t_s):
            raise SignalError("t_s", t_s, "beat times must be finite")
        if self._hi == self._t.size:
            live = self._hi - self._lo
            self._t[:live] = self._t[self._lo : self._hi]
            self._rr[:live] = self._rr[self._lo : self._hi]
            self._lo, self._hi = 0, live
        self._t[self._hi] = t_s
        self._rr[self._hi] = rr_s
        self._hi += 1
        self._evict(t_s)

    def _evict(self, newest: float) -> None:
        live = self._hi - self._lo
        if live > self._capacity:
            self._drop(live - self._capacity)
            live = self._capacity
        # The leading beats older than the horizon, one at a time: a beat rarely lets go of more than one, and
        # a search over every beat kept would cost the whole horizon at every beat.
        cutoff = newest - self.horizon_s
        t, lo, count = self._t, self._lo, 0
        while live - count > self._keep_at_least and t[lo + count] < cutoff:
            count += 1
        if count:
            self._drop(count)

    def _drop(self, count: int) -> None:
        self._lo += count
        self._dropped += count

    def beats(self) -> tuple[FloatArray, FloatArray]:
        """Copies of the retained beat times and intervals, oldest first."""
        return self._t[self._lo : self._hi].copy(), self._rr[self._lo : self._hi].copy()

    def window(self) -> RRWindow | None:
        """The newest complete window, or ``None`` before the first one."""
        w = self.windowing
        seen = self.beats_seen
        if seen < w.width:
            return None
        start = w.context + (seen - w.width) // w.hop * w.hop
        if self._cached is not None and self._cached.start_index == start:
            return self._cached
        lo = self._lo + start - w.context - self._dropped
        assert lo >= self._lo, "the buffer let go of beats its newest window needs"  # kept: width + hop beats
        segment = slice(lo, lo + w.width)
        batch = rr_windows(
            self._t[segment], self._rr[segment], w, self.cleaning, starts=[w.context], index_offset=start - w.context
        )
        self._cached = batch.window(0)
        return self._cached


class GlucoseBuffer:
    """The CGM readings of one wearer: bounded storage and the current past window."""

    def __init__(self, windowing: GlucoseWindowing, *, horizon_s: float = DEFAULT_HORIZON_S) -> None:
        g = windowing.gridding
        needed = (windowing.length - 1) * g.step_s + g.max_gap_s
        if not (math.isfinite(horizon_s) and horizon_s > needed):
            raise SignalError("horizon_s", horizon_s, f"must exceed the {needed} s a window depends on")
        self.windowing = windowing
        self.horizon_s = horizon_s
        self._past_only = GlucoseWindowing(windowing.length, (), g)
        self._capacity = max(math.ceil(horizon_s * _MAX_READINGS_PER_S), 4 * windowing.length)
        self._t = np.empty(self._capacity)
        self._v = np.empty(self._capacity)
        self._n = 0
        self._newest = -math.inf
        self._cached: tuple[GlucoseWindow | None] | None = None

    def add(self, t_s: float, mg_dl: float) -> None:
        """One reading; NaN and infinite values (no usable value) and readings older than the horizon are ignored."""
        if not math.isfinite(t_s):
            raise SignalError("t_s", t_s, "reading times must be finite")
        if not math.isfinite(mg_dl) or t_s < self._newest - self.horizon_s:
            return
        if self._n == self._capacity:
            self._compact(max(self._newest, t_s))
        if self._n == self._capacity:  # more readings inside the horizon than planned: keep the newest half
            order = np.argsort(self._t[: self._n], kind="stable")[self._n // 2 :]
            self._keep(np.sort(order))
        self._t[self._n] = t_s
        self._v[self._n] = mg_dl
        self._n += 1
        self._newest = max(self._newest, t_s)
        self._cached = None

    def _compact(self, newest: float) -> None:
        self._keep(np.flatnonzero(self._t[: self._n] >= newest - self.horizon_s))

    def _keep(self, index: npt.NDArray[np.intp]) -> None:
        count = index.size
        self._t[:count] = self._t[index]
        self._v[:count] = self._v[index]
        self._n = count

    def grid(self) -> GlucoseGrid:
        """The readings of the last ``horizon_s`` on the grid (the oldest values may lack older neighbours)."""
        t, v = self._t[: self._n], self._v[: self._n]
        recent = t >= self._newest - self.horizon_s
        return resample_glucose(t[recent], v[recent], self.windowing.gridding)

    def window(self) -> GlucoseWindow | None:
        """The past window ending at the newest grid point, or ``None`` when it is incomplete or has a gap."""
        if self._cached is None:
            self._cached = (self._cut(),)
        return self._cached[0]

    def _cut(self) -> GlucoseWindow | None:
        if self._n == 0:
            return None
        g = self.windowing.gridding
        last = math.floor((self._newest - g.origin_s) / g.step_s)
        first_time = float(grid_time(last - self.windowing.length + 1, g))
        t, v = self._t[: self._n], self._v[: self._n]
        near = t >= first_time - g.max_gap_s
        windows = glucose_windows(resample_glucose(t[near], v[near], g), self._past_only)
        if len(windows) == 0 or windows.end_index[-1] != last:
            return None
        return windows.window(len(windows) - 1)


class WearerWindows:
    """One wearer's buffers. A part whose windowing is ``None`` keeps nothing and has no window."""

    def __init__(
        self,
        rr: RRWindowing | None,
        glucose: GlucoseWindowing | None,
        *,
        cleaning: RRCleaning | None = None,
        horizon_s: float = DEFAULT_HORIZON_S,
    ) -> None:
        self.rr = None if rr is None else RRBuffer(rr, cleaning, horizon_s=horizon_s)
        self.glucose = None if glucose is None else GlucoseBuffer(glucose, horizon_s=horizon_s)

    def add_rr(self, t_s: float, rr_s: float) -> None:
        if self.rr is not None:
            self.rr.add(t_s, rr_s)

    def add_glucose(self, t_s: float, mg_dl: float) -> None:
        if self.glucose is not None:
            self.glucose.add(t_s, mg_dl)

    def rr_window(self) -> RRWindow | None:
        return None if self.rr is None else self.rr.window()

    def glucose_window(self) -> GlucoseWindow | None:
        return None if self.glucose is None else self.glucose.window()
