"""Generated wearer stories: heart rhythm and glucose over a night, from a seed.

These are deliberately simple physiology, enough to drive the whole agent with events a caregiver would want
to hear about: a beat-by-beat RR series with respiratory sinus arrhythmia around a heart-rate curve, and a
glucose curve through anchor points with sensor noise. Tests that need a quick story use them (with
:mod:`sim.feeds`); scenarios with ground truth, real recordings and richer generators are :mod:`sim.scenario`,
:mod:`sim.sources` and :mod:`sim.generators`, and the demo plays the bundled scenario ``demo``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator

CGM_PERIOD_S = 300.0


@dataclass(frozen=True)
class HeartTrace:
    """Beats as RR intervals (seconds) with the time each beat ends (epoch seconds)."""

    beat_end: npt.NDArray[np.float64]
    rr_s: npt.NDArray[np.float64]


@dataclass(frozen=True)
class GlucoseTrace:
    t: npt.NDArray[np.float64]  # epoch seconds, every 5 minutes
    mg_dl: npt.NDArray[np.float64]


@dataclass(frozen=True)
class WearerStory:
    wearer: str
    heart: HeartTrace | None
    glucose: GlucoseTrace | None
    battery_pct: int = 90


def curve(anchors: Sequence[tuple[float, float]], t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """A smooth, overshoot-free curve through (hours from start, value) anchors, evaluated at hours ``t``."""
    xs = np.array([a[0] for a in anchors])
    ys = np.array([a[1] for a in anchors])
    return np.asarray(PchipInterpolator(xs, ys, extrapolate=True)(t))


def heart_trace(
    start: float, hours: float, bpm_anchors: Sequence[tuple[float, float]], rng: np.random.Generator
) -> HeartTrace:
    """Beats whose mean rate follows ``bpm_anchors`` with respiratory sinus arrhythmia (0.25 Hz, 4%) and
    beat-to-beat noise."""
    end = start + hours * 3600.0
    # The mean rate on a one-second grid, looked up per beat.
    grid = curve(bpm_anchors, np.arange(0.0, hours * 3600.0 + 2.0) / 3600.0)
    t = start
    ends: list[float] = []
    rrs: list[float] = []
    while t < end:
        h = float(grid[int(t - start)])
        rr = 60.0 / max(h, 20.0)
        rr *= 1.0 + 0.04 * np.sin(2 * np.pi * 0.25 * (t - start)) + rng.normal(0.0, 0.015)
        rr = float(np.clip(rr, 0.25, 2.5))
        t += rr
        ends.append(t)
        rrs.append(rr)
    return HeartTrace(beat_end=np.array(ends), rr_s=np.array(rrs))


def glucose_trace(
    start: float, hours: float, anchors: Sequence[tuple[float, float]], rng: np.random.Generator
) -> GlucoseTrace:
    t = start + np.arange(0.0, hours * 3600.0 + 1.0, CGM_PERIOD_S)
    mg = curve(anchors, (t - start) / 3600.0) + rng.normal(0.0, 2.0, size=t.shape)
    return GlucoseTrace(t=t, mg_dl=np.clip(np.round(mg, 1), 40.0, 400.0))


def demo_night(start: float, hours: float = 8.0, seed: int = 7) -> list[WearerStory]:
    """Two wearers over a night.

    * ``w-ann``: a nocturnal hypoglycaemia (below 70 after ~3 h, below 54 for about half an hour, treated), with
      the heart rate climbing during it.
    * ``w-ben``: an evening high above 250 corrected by insulin, a slow sleep bradycardia, and a spell of
      tachycardia on waking.
    Anchor times scale with ``hours`` so shorter runs keep every event.
    """
    rng = np.random.default_rng(seed)
    k = hours / 8.0

    def at(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        return [(h * k, v) for h, v in points]

    ann_glucose = at(
        [
            (0, 150),
            (1.5, 120),
            (3.0, 72),
            (3.5, 60),
            (4.0, 50),
            (4.4, 49),
            (4.6, 62),
            (5.2, 110),
            (6.0, 125),
            (8.0, 118),
        ]
    )
    ann_heart = at([(0, 64), (1, 58), (3.0, 60), (3.8, 84), (4.3, 96), (4.8, 80), (5.5, 62), (8.0, 60)])
    ben_glucose = at([(0, 215), (0.8, 262), (1.3, 272), (2.0, 240), (3.0, 180), (4.0, 150), (8.0, 140)])
    ben_heart = at(
        [
            (0, 62),
            (1.5, 55),
            (2.9, 50),
            (3.0, 36),
            (3.4, 35),
            (3.6, 48),
            (4.0, 56),
            (6.8, 58),
            (7.0, 128),
            (7.4, 132),
            (7.6, 80),
            (8.0, 66),
        ]
    )
    return [
        WearerStory(
            "w-ann",
            heart_trace(start, hours, ann_heart, rng),
            glucose_trace(start, hours, ann_glucose, rng),
            battery_pct=84,
        ),
        WearerStory(
            "w-ben",
            heart_trace(start, hours, ben_heart, rng),
            glucose_trace(start, hours, ben_glucose, rng),
            battery_pct=67,
        ),
    ]
