"""Glucose resampling and windows: the gap rules as properties, hand-computed grids, and window cutting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.signals.errors import SignalError
from agent.signals.glucose import (
    GlucoseGridding,
    GlucoseWindowing,
    glucose_windows,
    readings,
    resample_glucose,
)

T0 = 1_700_000_100.0  # a grid time (a multiple of 300 s)


def grid_of(times: list[float], values: list[float], **kw: float) -> tuple[list[float], list[float]]:
    grid = resample_glucose(times, values, GlucoseGridding(**kw))
    return list(grid.t_s - T0), list(grid.mg_dl)


def test_readings_on_the_grid_are_taken_exactly_and_short_gaps_are_bridged() -> None:
    times, values = grid_of([T0, T0 + 300, T0 + 900], [100.0, 110.0, 140.0])
    assert times == [0.0, 300.0, 600.0, 900.0]
    assert values == [100.0, 110.0, 125.0, 140.0]


def test_a_gap_longer_than_the_limit_stays_nan() -> None:
    _, values = grid_of([T0, T0 + 1500], [100.0, 150.0])
    assert values[0] == 100.0
    assert values[-1] == 150.0
    assert all(math.isnan(v) for v in values[1:-1])
    _, bridged = grid_of([T0, T0 + 1200], [100.0, 140.0])  # exactly the limit: bridged
    assert bridged == [100.0, 110.0, 120.0, 130.0, 140.0]
    _, narrow = grid_of([T0, T0 + 1200], [100.0, 140.0], max_gap_s=900.0)
    assert narrow[0] == 100.0
    assert narrow[-1] == 140.0
    assert all(math.isnan(v) for v in narrow[1:-1])


def test_jittered_readings_are_interpolated_and_nothing_is_extrapolated() -> None:
    times, values = grid_of([T0 + 30, T0 + 330, T0 + 620], [100.0, 110.0, 120.0])
    assert times == [300.0, 600.0]  # no grid point before the first reading or after the last
    assert values == pytest.approx([109.0, 119.3103448275862], rel=1e-12)


def test_nan_and_infinite_readings_count_as_missing() -> None:
    _, values = grid_of([T0, T0 + 300, T0 + 600], [100.0, math.nan, 120.0])
    assert values == [100.0, 110.0, 120.0]
    _, values = grid_of([T0, T0 + 300, T0 + 1800], [100.0, math.inf, 120.0])
    assert values[0] == 100.0
    assert all(math.isnan(v) for v in values[1:-1])


def test_duplicates_become_their_median_whatever_their_order() -> None:
    t, v = readings([T0, T0, T0, T0 + 300, T0 + 300], [120.0, 100.0, 101.0, 90.0, 95.0])
    assert list(t - T0) == [0.0, 300.0]
    assert list(v) == [101.0, 92.5]


def test_an_empty_or_all_nan_input_gives_an_empty_grid() -> None:
    assert resample_glucose([], []).t_s.size == 0
    assert resample_glucose([T0], [math.nan]).mg_dl.size == 0


def test_inputs_are_validated() -> None:
    with pytest.raises(SignalError) as info:
        resample_glucose([T0, math.nan], [100.0, 100.0])
    assert info.value.parameter == "t_s"
    with pytest.raises(SignalError):
        resample_glucose([T0], [1.0, 2.0])
    with pytest.raises(SignalError):
        GlucoseWindowing(length=12, horizons_s=(900.0, 1000.0))
    with pytest.raises(SignalError):
        GlucoseGridding(step_s=0.0)


# ------------------------------------------------------------------------------------------------- properties

offsets = st.lists(
    st.tuples(
        st.floats(0.0, 6 * 3600.0, allow_nan=False).map(lambda x: round(x, 1)),
        st.one_of(st.floats(40.0, 400.0), st.just(math.nan)),
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(offsets, st.sampled_from([0.0, 600.0, 900.0, 1200.0, 1800.0]))
def test_resampling_never_invents_values_across_long_gaps(pairs: list[tuple[float, float]], max_gap: float) -> None:
    t = np.array([T0 + p[0] for p in pairs])
    v = np.array([p[1] for p in pairs])
    grid = resample_glucose(t, v, GlucoseGridding(max_gap_s=max_gap))
    usable = np.isfinite(v)
    tu, vu = t[usable], v[usable]
    for g, value in zip(grid.t_s, grid.mg_dl, strict=True):
        before, after = tu[tu <= g], tu[tu >= g]
        bracketed = before.size > 0 and after.size > 0 and after.min() - before.max() <= max_gap
        if not bracketed:
            assert math.isnan(value), "a value was invented across a gap"
            continue
        assert math.isfinite(value), "a bridgeable gap was left empty"
        near = vu[(tu >= before.max()) & (tu <= after.min())]
        assert near.min() - 1e-9 <= value <= near.max() + 1e-9


@settings(max_examples=200, deadline=None)
@given(offsets, st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_grid(pairs: list[tuple[float, float]], rnd: object) -> None:
    shuffled = list(pairs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a = resample_glucose([T0 + p[0] for p in pairs], [p[1] for p in pairs])
    b = resample_glucose([T0 + p[0] for p in shuffled], [p[1] for p in shuffled])
    assert a.t_s.tobytes() == b.t_s.tobytes()
    assert a.mg_dl.tobytes() == b.mg_dl.tobytes()


# ---------------------------------------------------------------------------------------------------- windows


def test_windows_pair_a_past_with_its_targets_and_skip_gaps() -> None:
    values = [100.0 + i for i in range(30)]
    values[20] = math.nan
    grid = resample_glucose([T0 + 300.0 * i for i in range(30)], values, GlucoseGridding(max_gap_s=0.0))
    windowing = GlucoseWindowing(length=4, horizons_s=(900.0, 1800.0), gridding=GlucoseGridding(max_gap_s=0.0))
    windows = glucose_windows(grid, windowing)
    ends = [int(e - grid.index[0]) for e in windows.end_index]
    # ends 3..23 exist (targets up to +6 steps); every window touching index 20 in its past or targets goes
    assert ends == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 15, 16, 18, 19]
    first = windows.window(0)
    assert list(first.mg_dl) == [100.0, 101.0, 102.0, 103.0]
    assert list(windows.targets[0]) == [106.0, 109.0]
    assert (first.t_start_s, first.t_end_s) == (T0, T0 + 900.0)
    assert first.sha256 == windows.window(0).sha256 != windows.window(1).sha256


def test_a_grid_shorter_than_a_window_gives_no_window() -> None:
    grid = resample_glucose([T0, T0 + 300.0], [100.0, 101.0])
    assert len(glucose_windows(grid, GlucoseWindowing(length=3, horizons_s=()))) == 0
    assert len(glucose_windows(grid, GlucoseWindowing(length=2, horizons_s=()))) == 1
    assert len(glucose_windows(grid, GlucoseWindowing(length=2))) == 0
