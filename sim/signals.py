"""The signals a scenario is made of, before they become GATT bytes: beats and glucose readings.

Times here are seconds from the scenario's start (relative), so sources and generators can be cut, shifted and
spliced freely; :mod:`sim.build` places them on the epoch time line when it makes the feed.

:class:`Beats` is a heart: the time each beat ends, its RR interval and a label per beat (:class:`BeatLabel`).
Labels carry the ground truth of rhythm: a recording's reference annotation (afdb) or what a generator made.

:class:`Glucose` is a CGM's readings every few minutes: what the sensor reports (``sensor``) and, where it is
known, the true value behind it (``true``; a generator knows it, a recording does not, and then the sensor's
value is the best truth there is). ``-inf``/``+inf`` are a sensor's "Low"/"High" (outside its measuring range).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.uint8]


class BeatLabel(IntEnum):
    """The rhythm a beat belongs to. ``OTHER`` (atrial flutter, junctional rhythm) is neither AF nor sinus: an
    AF alert there is neither a detection nor a false alert."""

    SINUS = 0
    AF = 1
    OTHER = 2
    ECTOPIC = 3  # a premature beat (or its compensatory pause) within sinus rhythm


@dataclass(frozen=True)
class Beats:
    """Beats: ``t`` (end of each beat, s from the scenario start, increasing), ``rr`` (s) and ``label``."""

    t: FloatArray
    rr: FloatArray
    label: LabelArray

    def __post_init__(self) -> None:
        if not (len(self.t) == len(self.rr) == len(self.label)):
            raise ValueError("Beats: t, rr and label differ in length")

    @classmethod
    def from_rr(cls, rr: FloatArray, label: LabelArray, start: float = 0.0) -> Beats:
        """Beats that follow each other from ``start``: beat k ends at start + rr[0] + ... + rr[k]."""
        rr = np.asarray(rr, dtype=np.float64)
        return cls(start + np.cumsum(rr), rr, np.asarray(label, dtype=np.uint8))

    @classmethod
    def empty(cls) -> Beats:
        return cls(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.t)

    @property
    def end(self) -> float:
        return float(self.t[-1]) if len(self.t) else 0.0

    def window(self, start: float, end: float) -> Beats:
        """The beats ending in [start, end), unshifted."""
        i0, i1 = np.searchsorted(self.t, [start, end], side="left")
        return Beats(self.t[i0:i1], self.rr[i0:i1], self.label[i0:i1])

    def shifted(self, dt: float) -> Beats:
        return Beats(self.t + dt, self.rr, self.label)

    @staticmethod
    def concat(parts: Sequence[Beats]) -> Beats:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Beats.empty()
        return Beats(
            np.concatenate([p.t for p in parts]),
            np.concatenate([p.rr for p in parts]),
            np.concatenate([p.label for p in parts]),
        )

    def hr_per_second(self, duration: float) -> tuple[FloatArray, FloatArray]:
        """The heart rate a strap reports once a second, at whole seconds 1..duration: 60 / the mean RR of the
        beats that ended in the second before, carried forward through seconds with no beat. NaN before the
        first beat. Returns (seconds, bpm)."""
        seconds = np.arange(1.0, np.floor(duration) + 1.0)
        if not len(self.t):
            return seconds, np.full(len(seconds), np.nan)
        csum = np.concatenate([[0.0], np.cumsum(self.rr)])
        hi = np.searchsorted(self.t, seconds, side="right")
        lo = np.searchsorted(self.t, seconds - 1.0, side="right")
        n = hi - lo
        mean = np.full(len(seconds), np.nan)
        has = n > 0
        mean[has] = (csum[hi[has]] - csum[lo[has]]) / n[has]
        # Carry the last value forward where a second holds no beat (a long RR interval).
        idx = np.where(has, np.arange(len(seconds)), -1)
        idx = np.maximum.accumulate(idx)
        carried = np.where(idx >= 0, mean[np.maximum(idx, 0)], np.nan)
        return seconds, 60.0 / carried


@dataclass(frozen=True)
class Glucose:
    """CGM readings: ``t`` (s from the scenario start), ``sensor`` (what the CGM reports, mg/dL) and ``true``
    (the glucose behind it; the sensor's own value when nothing better is known)."""

    t: FloatArray
    sensor: FloatArray
    true: FloatArray

    def __post_init__(self) -> None:
        if not (len(self.t) == len(self.sensor) == len(self.true)):
            raise ValueError("Glucose: t, sensor and true differ in length")

    def __len__(self) -> int:
        return len(self.t)

    def window(self, start: float, end: float) -> Glucose:
        i0, i1 = np.searchsorted(self.t, [start, end], side="left")
        return Glucose(self.t[i0:i1], self.sensor[i0:i1], self.true[i0:i1])

    def shifted(self, dt: float) -> Glucose:
        return Glucose(self.t + dt, self.sensor, self.true)
