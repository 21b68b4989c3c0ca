"""sim.generators: heartbeats with HRV and rhythm events, and glucose, from a seed."""

from __future__ import annotations

import numpy as np
import pytest

from sim.generators import (
    SLEEP_HRV,
    Hrv,
    add_ectopics,
    af_beats,
    anchored_glucose,
    exercise_bpm,
    sinus_beats,
    splice,
)
from sim.signals import BeatLabel, Beats


def rng(seed: int = 1) -> np.random.Generator:
    return np.random.default_rng(seed)


def spectrum_peak(rr: np.ndarray, t: np.ndarray, lo: float, hi: float) -> float:
    """The frequency (Hz) of the largest peak of the RR series' spectrum in [lo, hi], resampled at 4 Hz."""
    grid = np.arange(t[0], t[-1], 0.25)
    x = np.interp(grid, t, rr)
    x = x - x.mean()
    power = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2
    f = np.fft.rfftfreq(len(x), 0.25)
    band = (f >= lo) & (f <= hi)
    return float(f[band][np.argmax(power[band])])


def test_sinus_rhythm_follows_the_rate_with_respiratory_and_mayer_waves() -> None:
    beats = sinus_beats(1800, [(0, 60)], rng(), hrv=Hrv(cv=0.05, lf_hf=1.0, resp_hz=0.25, vlf=0.0))
    assert abs(60.0 / beats.rr.mean() - 60.0) < 1.0
    assert 0.035 < beats.rr.std() / beats.rr.mean() < 0.065
    assert np.allclose(np.diff(beats.t), beats.rr[1:])
    assert (beats.label == BeatLabel.SINUS).all()
    assert spectrum_peak(beats.rr, beats.t, 0.15, 0.4) == pytest.approx(0.25, abs=0.02)  # RSA
    assert spectrum_peak(beats.rr, beats.t, 0.05, 0.15) == pytest.approx(0.10, abs=0.02)  # Mayer waves


def test_the_same_seed_gives_the_same_beats_and_sleep_changes_variability() -> None:
    a = sinus_beats(600, [(0, 60)], rng(3))
    b = sinus_beats(600, [(0, 60)], rng(3))
    assert np.array_equal(a.t, b.t)
    slept = sinus_beats(3600, [(0, 60)], rng(3), hrv_at=[(1800, 3600, SLEEP_HRV)])
    awake, asleep = slept.window(0, 1700), slept.window(1900, 3600)
    assert asleep.rr.std() / asleep.rr.mean() > awake.rr.std() / awake.rr.mean()


def test_af_is_irregular_and_labelled_and_splices_into_sinus() -> None:
    af = af_beats(600, 110, rng())
    assert (af.label == BeatLabel.AF).all()
    assert 0.2 < af.rr.std() / af.rr.mean() < 0.3
    # No respiratory structure: successive intervals are uncorrelated.
    assert abs(np.corrcoef(af.rr[:-1], af.rr[1:])[0, 1]) < 0.1
    sinus = sinus_beats(1800, [(0, 60)], rng(2))
    joined = splice(sinus, af, 600, 1200)
    assert (joined.label[(joined.t >= 620) & (joined.t < 1180)] == BeatLabel.AF).all()
    assert (joined.label[joined.t < 600] == BeatLabel.SINUS).all()
    assert np.all(np.diff(joined.t) > 0)
    assert np.allclose(np.diff(joined.t), joined.rr[1:])


def test_ectopic_beats_come_early_with_a_compensatory_pause() -> None:
    sinus = sinus_beats(3600, [(0, 60)], rng(4))
    with_ectopics = add_ectopics(sinus, 60, rng(4))
    ectopic = np.flatnonzero(with_ectopics.label == BeatLabel.ECTOPIC)
    assert 50 <= len(ectopic) // 2 <= 90
    # Beat times other than the premature ones are unchanged: the pair spans two sinus intervals.
    kept = with_ectopics.label != BeatLabel.ECTOPIC
    kept[ectopic[1::2]] = True
    assert np.allclose(with_ectopics.t[kept], sinus.t[kept])
    assert (with_ectopics.rr[ectopic[::2]] < 0.8 * sinus.rr[ectopic[::2]]).all()


def test_exercise_raises_the_rate_to_its_peak_and_recovers() -> None:
    rate = exercise_bpm(lambda t: np.full(len(t), 60.0), [(600.0, 1200.0, 150.0)])
    t = np.array([0.0, 700.0, 1000.0, 1199.0, 1600.0])
    r = rate(t)
    assert r[0] == 60.0
    assert 60.0 < r[1] < 150.0
    assert r[2] == pytest.approx(150.0)
    assert r[4] == pytest.approx(60.0)


def test_anchored_glucose_is_truth_plus_noise_every_five_minutes() -> None:
    g = anchored_glucose(3 * 3600, [(0, 100), (1.5, 60), (3, 120)], rng(), noise_mg_dl=3.0)
    assert len(g) == 37
    assert np.all(np.diff(g.t) == 300)
    assert g.true[18] == pytest.approx(60.0, abs=0.5)
    assert np.abs(g.sensor - g.true).max() < 15
    assert np.array_equal(g.sensor, np.round(g.sensor))
    quiet = anchored_glucose(3600, [(0, 100)], rng(), noise_mg_dl=0.0)
    assert (quiet.sensor == 100).all()


def test_hr_per_second_is_what_a_strap_sends() -> None:
    beats = Beats.from_rr(np.array([0.5, 0.5, 1.5, 1.0]), np.zeros(4, dtype=np.uint8))
    seconds, bpm = beats.hr_per_second(4)
    # Beats end at 0.5, 1.0, 2.5, 3.5: second 1 holds two of 0.5 s, second 2 none (carried), 3 one of 1.5 s.
    assert list(seconds) == [1, 2, 3, 4]
    assert list(np.round(bpm)) == [120, 120, 40, 60]
