"""RR cleaning, windows and features: hand-computed answers, properties, and batch/row identity."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.signals import rr as rr_module
from agent.signals.errors import SignalError
from agent.signals.rr import (
    ARTIFACT_CLASSES,
    BeatClass,
    RRCleaning,
    RRWindowing,
    clean_rr,
    cosen,
    nrmssd,
    pnn50,
    rmssd,
    rr_windows,
    sample_entropy,
    shannon_entropy,
    window_starts,
)

N, E, A = BeatClass.NORMAL, BeatClass.ECTOPIC, BeatClass.OUT_OF_RANGE

# --------------------------------------------------------------------------------------------- known answers


def test_rmssd_nrmssd_pnn50_by_hand() -> None:
    rr = [0.8, 0.9, 0.7, 1.0]  # differences 0.1, -0.2, 0.3
    assert rmssd(rr) == pytest.approx(math.sqrt((0.01 + 0.04 + 0.09) / 3), rel=1e-12)
    assert nrmssd(rr) == pytest.approx(math.sqrt(0.14 / 3) / 0.85, rel=1e-12)
    assert pnn50(rr) == 1.0
    # differences 30, 70, -10, 110 ms: two of four exceed 50 ms; exactly 50 ms does not count
    assert pnn50([1.000, 1.030, 1.100, 1.090, 1.200]) == pytest.approx(0.5)
    assert pnn50([1.0, 1.05, 1.1], threshold_s=0.0501) == 0.0


def test_shannon_entropy_by_hand() -> None:
    assert shannon_entropy([0.8] * 10) == 0.0
    # two equally full bins (the first and the last): ln 2 / ln 16
    assert shannon_entropy([0.8] * 8 + [1.2] * 8) == pytest.approx(math.log(2) / math.log(16), rel=1e-12)
    # sixteen values, one in each bin: uniform, the maximum
    assert shannon_entropy(np.linspace(0.6, 1.2, 16)) == pytest.approx(1.0, rel=1e-12)
    # 3 of 4 in the first bin, 1 in the last, with 2 bins
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)
    assert shannon_entropy([1.0, 1.0, 1.0, 2.0], bins=2) == pytest.approx(expected, rel=1e-12)


# Worked by hand (units: ms, r = 30). m = 1: templates 800 820 950 810 830 (the last value only extends);
# pairs within 30: (0,1) (0,3) (0,4) (1,3) (1,4) (3,4) -> B = 6; of those, the next values also match for
# (0,3): 820/830 and (1,4): 950/960 -> A = 2. m = 2: the only match is (800,820)~(810,830) -> B = 1,
# and 950~960 extends it -> A = 1.
HAND = [800.0, 820.0, 950.0, 810.0, 830.0, 960.0]


def test_sample_entropy_by_hand() -> None:
    assert sample_entropy(HAND, m=1, r_s=30.0) == pytest.approx(math.log(3), rel=1e-12)
    assert sample_entropy(HAND, m=2, r_s=30.0) == pytest.approx(0.0, abs=1e-15)


def test_cosen_by_hand() -> None:
    mean = sum(HAND) / 6
    expected = math.log(3) + math.log(60.0) - math.log(mean)
    assert cosen(HAND, m=1, r_s=30.0) == pytest.approx(expected, rel=1e-12)
    # unit-free: the same series in seconds with r in seconds gives the same COSEn
    assert cosen(np.array(HAND) / 1000, m=1, r_s=0.03) == pytest.approx(expected, rel=1e-9)


def test_sample_entropy_undefined_cases() -> None:
    assert math.isnan(sample_entropy([0.0, 100.0, 200.0, 300.0], m=1, r_s=30.0))  # B = 0
    assert sample_entropy([800.0, 810.0, 900.0, 1200.0], m=1, r_s=30.0) == math.inf  # A = 0 < B
    assert sample_entropy([0.8] * 12, m=2, r_s=0.03) == 0.0  # everything matches


def naive_counts(x: list[float], m: int, r: float) -> tuple[int, int]:
    count = len(x) - m
    b = a = 0
    for i, j in combinations(range(count), 2):
        if all(abs(x[i + k] - x[j + k]) <= r for k in range(m)):
            b += 1
            a += abs(x[i + m] - x[j + m]) <= r
    return b, a


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(300, 1500), min_size=4, max_size=40),
    st.integers(1, 2),
    st.integers(5, 80),
)
def test_sample_entropy_matches_a_naive_count(x: list[int], m: int, r: int) -> None:
    if len(x) < m + 2:
        return
    b, a = naive_counts([float(v) for v in x], m, float(r))
    got = float(sample_entropy(x, m=m, r_s=float(r)))
    if b == 0:
        assert math.isnan(got)
    elif a == 0:
        assert got == math.inf
    else:
        assert got == pytest.approx(-math.log(a / b), rel=1e-12)


# ---------------------------------------------------------------------------------------------------- cleaning

clean_series = st.builds(
    lambda base, eps: base * (1.0 + np.array(eps)),
    st.floats(0.4, 1.5),
    st.lists(st.floats(-0.05, 0.05), min_size=3, max_size=200),
)


@settings(max_examples=300, deadline=None)
@given(clean_series)
def test_cleaning_never_changes_a_clean_series(rr: np.ndarray) -> None:
    cleaned = clean_rr(rr)
    assert cleaned.rr_s.tobytes() == rr.tobytes()
    assert not cleaned.beat_class.any()


@pytest.mark.parametrize("ticks", [[100] * 40, [100] * 20 + [101] * 20, [100, 101] * 20])
def test_quantised_series_with_zero_spread_is_not_flagged(ticks: list[int]) -> None:
    # nsr2db's 1/128 s ticks at rest: the quartile deviation of dRR is 0, so only the floor keeps these clean
    rr = np.array(ticks) / 128.0
    assert not clean_rr(rr).beat_class.any()


def sinus(n: int = 40, level: float = 1.0) -> np.ndarray:
    return np.full(n, level)


def test_premature_beat_is_ectopic_and_interpolated() -> None:
    rr = sinus()
    rr[20], rr[21] = 0.6, 1.4  # coupling interval and compensatory pause
    cleaned = clean_rr(rr)
    assert list(cleaned.beat_class[18:24]) == [N, N, E, E, N, N]
    assert np.array_equal(cleaned.rr_s, sinus())


def test_premature_beat_whose_pause_does_not_compensate_is_ectopic_too() -> None:
    # The subspace test does not call this pause ectopic (the next interval stays long); as long/short it
    # would count as a sensor artifact.
    rr = 1.0 + 0.03 * np.sin(np.arange(40.0))
    rr[20:23] = 0.79, 1.36, 1.37
    assert list(clean_rr(rr).beat_class[19:24]) == [N, E, E, N, N]


def test_missed_beat_is_classified_and_corrected_in_place() -> None:
    rr = sinus(level=0.8)
    rr[20] = 1.6
    cleaned = clean_rr(rr)
    assert cleaned.beat_class[20] == BeatClass.MISSED
    assert np.count_nonzero(cleaned.beat_class) == 1
    assert cleaned.rr_s.shape == rr.shape
    assert np.array_equal(cleaned.rr_s, sinus(level=0.8))


def test_extra_beat_flags_both_halves() -> None:
    rr = sinus()
    rr[20], rr[21] = 0.4, 0.6  # one true interval split by a false detection
    cleaned = clean_rr(rr)
    assert list(cleaned.beat_class[20:22]) == [BeatClass.EXTRA, BeatClass.EXTRA]
    assert np.count_nonzero(cleaned.beat_class) == 2
    assert np.array_equal(cleaned.rr_s, sinus())


def test_out_of_range_and_nan_are_interpolated_between_good_neighbours() -> None:
    rr = np.linspace(0.8, 1.2, 41)
    expected = rr.copy()
    rr[10], rr[11], rr[30] = np.nan, 3.0, 0.1
    cleaned = clean_rr(rr)
    assert list(np.flatnonzero(cleaned.beat_class == A)) == [10, 11, 30]
    np.testing.assert_allclose(cleaned.rr_s, expected, rtol=1e-12)


def test_edges_hold_the_nearest_good_value_and_all_bad_is_clipped() -> None:
    rr = sinus(12, 0.9)
    rr[0] = rr[-1] = 5.0
    cleaned = clean_rr(rr)
    assert cleaned.rr_s[0] == 0.9
    assert cleaned.rr_s[-1] == 0.9
    hopeless = clean_rr([5.0, np.nan, 0.1, 9.0])
    assert list(hopeless.rr_s) == [2.0, 1.125, 0.25, 2.0]
    assert (hopeless.beat_class == A).all()


def test_irregular_rhythm_is_mostly_left_alone() -> None:
    # AF-like: independent intervals. The adaptive threshold widens with the spread, so few are touched;
    # on afdb's TRAIN AFIB windows 2.2% of intervals are flagged (see the module docstring's figures).
    rng = np.random.default_rng(7)
    rr = rng.uniform(0.4, 1.2, size=(100, 82))
    flagged = np.mean(clean_rr(rr).beat_class != N)
    assert flagged < 0.02


def test_rows_are_cleaned_independently_and_bit_identically() -> None:
    rng = np.random.default_rng(3)
    rows = np.concatenate([rng.uniform(0.4, 1.2, (5, 50)), 0.9 + rng.normal(0, 0.02, (5, 50))])
    rows[2, 10] = 2.5
    rows[7, 30] = 0.45
    together = clean_rr(rows)
    for i, row in enumerate(rows):
        alone = clean_rr(row)
        assert alone.rr_s.tobytes() == together.rr_s[i].tobytes()
        assert alone.beat_class.tobytes() == together.beat_class[i].tobytes()


def test_cleaning_parameters_are_validated() -> None:
    with pytest.raises(SignalError) as info:
        RRCleaning(min_rr_s=2.0, max_rr_s=1.0)
    assert info.value.parameter == "min_rr_s/max_rr_s"
    with pytest.raises(SignalError):
        RRCleaning(median_beats=10)
    with pytest.raises(SignalError):
        clean_rr([0.8, 0.9])


# ----------------------------------------------------------------------------------------------------- windows


@st.composite
def streams(draw: st.DrawFn) -> tuple[RRWindowing, np.ndarray, np.ndarray]:
    windowing = RRWindowing(
        n_beats=draw(st.integers(8, 40)),
        hop=draw(st.integers(1, 20)),
        context=draw(st.integers(1, 12)),
        lookahead=draw(st.integers(0, 3)),
    )
    rr = np.array(draw(st.lists(st.floats(0.3, 1.6), min_size=0, max_size=150)))
    return windowing, np.cumsum(rr), rr


@settings(max_examples=200, deadline=None)
@given(streams())
def test_windows_have_exactly_n_beats_on_the_hop_grid(stream: tuple[RRWindowing, np.ndarray, np.ndarray]) -> None:
    w, t, rr = stream
    windows = rr_windows(t, rr, w)
    expected = max(0, (len(rr) - w.width) // w.hop + 1)
    assert len(windows) == expected
    assert windows.rr_s.shape == (expected, w.n_beats) == windows.beat_class.shape == windows.raw_rr_s.shape
    assert list(windows.start_index) == [w.context + k * w.hop for k in range(expected)]
    for k in range(expected):
        s = int(windows.start_index[k])
        window = windows.window(k)
        assert window.raw_rr_s.tobytes() == rr[s : s + w.n_beats].tobytes()
        assert window.t_end_s == t[s + w.n_beats - 1]
        assert window.t_start_s == t[s] - rr[s]
        assert window.time_gaps == 0


def test_artifact_classes_are_every_flag_but_ectopic() -> None:
    assert set(ARTIFACT_CLASSES) == set(BeatClass) - {BeatClass.NORMAL, BeatClass.ECTOPIC}


def test_window_starts_counts_from_the_first_beat() -> None:
    w = RRWindowing(n_beats=10, hop=4, context=3, lookahead=2)
    assert list(window_starts(14, w)) == []
    assert list(window_starts(15, w)) == [3]
    assert list(window_starts(23, w)) == [3, 7, 11]


def test_quality_figures_of_a_window() -> None:
    w = RRWindowing(n_beats=20, hop=20, context=5, lookahead=2)
    rr = np.full(27, 1.0)
    rr[8], rr[9] = 0.6, 1.4  # a premature beat: two ectopic intervals
    rr[15] = 3.0  # out of range: an artifact
    t = np.cumsum(rr)
    t[20:] += 5.0  # the link dropped before beat 20: its time jumps 5 s more than its interval
    (window,) = [rr_windows(t, rr, w).window(0)]
    assert window.ectopic_share == 2 / 20
    assert window.artifact_share == 1 / 20
    assert window.time_gaps == 1
    assert window.sha256 == rr_windows(t, rr, w).window(0).sha256
    assert not window.rr_s.flags.writeable


def test_chunked_batches_equal_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    rr = np.concatenate([rng.uniform(0.4, 1.2, 400), 0.9 + rng.normal(0, 0.02, 400)])
    rr[rng.integers(0, 800, 20)] = rng.uniform(0.1, 3.0, 20)
    t = np.cumsum(rr)
    w = RRWindowing(n_beats=32, hop=3)
    whole = rr_windows(t, rr, w)
    monkeypatch.setattr(rr_module, "_CHUNK_WINDOWS", 7)
    chunked = rr_windows(t, rr, w)
    for name in ("start_index", "rr_s", "beat_class", "artifact_share", "ectopic_share", "t_start_s"):
        assert getattr(whole, name).tobytes() == getattr(chunked, name).tobytes(), name


def test_features_of_one_window_equal_those_of_the_batch() -> None:
    rng = np.random.default_rng(5)
    batch = rng.uniform(0.4, 1.2, (50, 64))
    for feature in (rmssd, nrmssd, pnn50, shannon_entropy, cosen):
        together = feature(batch)
        assert together.shape == (50,)
        for i in range(50):
            assert float(feature(batch[i])) == float(together[i]), feature.__name__


def test_windowing_is_validated() -> None:
    with pytest.raises(SignalError) as info:
        RRWindowing(n_beats=4, hop=1)
    assert info.value.parameter == "n_beats"
    with pytest.raises(SignalError):
        RRWindowing(n_beats=16, hop=1, context=0)
    w = RRWindowing(n_beats=8, hop=1, context=2)
    with pytest.raises(SignalError):
        rr_windows([0.0, 1.0], [1.0], w)
    with pytest.raises(SignalError):
        rr_windows([0.0, math.nan], [1.0, 1.0], w)
    with pytest.raises(SignalError):
        rr_windows(np.arange(20.0), np.ones(20), w, starts=[1])
