"""The agent and model_build cut identical windows from the same readings.

Readings go one by one into the rolling buffer the agent keeps; every window it offers is compared, bit for
bit, with the batch windowing ``model_build`` runs on the same readings.
"""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.signals.errors import SignalError
from agent.signals.glucose import GlucoseGridding, GlucoseWindow, GlucoseWindowing, glucose_windows, resample_glucose
from agent.signals.rr import RRCleaning, RRWindow, RRWindowing, rr_windows
from agent.signals.windows import GlucoseBuffer, RRBuffer, WearerWindows

T0 = 1_700_000_000.0
ON_GRID = 1_700_000_100.0  # a multiple of 300 s


def assert_same_rr(a: RRWindow, b: RRWindow) -> None:
    for f in fields(RRWindow):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert type(x) is type(y), f.name
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, f.name
            assert x.tobytes() == y.tobytes(), f.name
        else:
            assert x == y or (math.isnan(x) and math.isnan(y)), f.name
    assert a.sha256 == b.sha256


def assert_same_glucose(a: GlucoseWindow, b: GlucoseWindow) -> None:
    assert (a.end_index, a.t_start_s, a.t_end_s) == (b.end_index, b.t_start_s, b.t_end_s)
    assert a.mg_dl.tobytes() == b.mg_dl.tobytes()
    assert a.sha256 == b.sha256


# ---------------------------------------------------------------------------------------------------------- RR


def night_of_beats(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Sinus, an AF run, premature beats, detector errors and a dropped link, stamped like agent.core does."""
    rng = np.random.default_rng(seed)
    rr = 0.95 + 0.05 * np.sin(np.arange(n) / 3.0) + rng.normal(0, 0.01, n)
    af = slice(n // 3, n // 2)
    rr[af] = rng.uniform(0.35, 1.1, af.stop - af.start)
    for i in rng.integers(10, n - 10, 40):
        rr[i], rr[i + 1] = rr[i] * 0.6, rr[i + 1] * 1.4
    rr[rng.integers(0, n, 30)] = rng.choice([0.1, 2.6, math.nan], 30)
    t = T0 + np.cumsum(np.nan_to_num(rr, nan=1.0))
    t += rng.uniform(-0.3, 0.3, n)  # notification jitter
    t[2 * n // 3 :] += 40.0  # the link dropped for 40 s
    return t, rr


def feed_rr(buffer: RRBuffer, t: np.ndarray, rr: np.ndarray, ask_every: int = 1) -> list[RRWindow]:
    """Feed beats one by one, asking for the current window after every ``ask_every``-th beat."""
    seen: list[RRWindow] = []
    for k, (ti, ri) in enumerate(zip(t, rr, strict=True), start=1):
        buffer.add(float(ti), float(ri))
        if k % ask_every:
            continue
        window = buffer.window()
        if window is not None and (not seen or window.start_index != seen[-1].start_index):
            seen.append(window)
    return seen


@pytest.mark.parametrize("ask_every", [1, 7])
@pytest.mark.parametrize(("n_beats", "hop", "horizon_s"), [(64, 16, 60.0), (30, 1, 3600.0), (128, 64, 30.0)])
def test_rolling_rr_windows_equal_the_batch_bit_for_bit(
    n_beats: int, hop: int, horizon_s: float, ask_every: int
) -> None:
    t, rr = night_of_beats(seed=n_beats)
    windowing = RRWindowing(n_beats=n_beats, hop=hop)
    # A short horizon makes the buffer evict and compact many times over the night; asking only every 7th
    # beat makes it hold a window's segment for up to hop - 1 beats after the window completed.
    rolling = feed_rr(RRBuffer(windowing, horizon_s=horizon_s), t, rr, ask_every)
    batch = rr_windows(t, rr, windowing)
    by_start = {int(batch.start_index[k]): batch.window(k) for k in range(len(batch))}
    assert len(rolling) > 10
    if ask_every == 1:
        assert [w.start_index for w in rolling] == list(by_start)
    for window in rolling:
        assert_same_rr(window, by_start[window.start_index])
    assert {w.time_gaps for w in rolling} == {0, 1}  # the dropped link shows up in some windows
    assert max(w.ectopic_share for w in rolling) > 0
    assert max(w.artifact_share for w in rolling) > 0


@settings(max_examples=60, deadline=None)
@given(
    st.integers(8, 40),
    st.integers(1, 12),
    st.integers(1, 10),
    st.integers(0, 3),
    st.lists(st.one_of(st.floats(0.2, 2.5), st.just(math.nan)), min_size=0, max_size=160),
    st.floats(1.0, 100.0),
    st.integers(1, 25),
)
def test_rolling_rr_windows_equal_the_batch_for_any_stream(
    n_beats: int, hop: int, context: int, lookahead: int, rr_list: list[float], horizon_s: float, ask_every: int
) -> None:
    windowing = RRWindowing(n_beats=n_beats, hop=hop, context=context, lookahead=lookahead)
    rr = np.array(rr_list)
    t = T0 + np.cumsum(np.nan_to_num(rr, nan=0.5))
    # Asked only now and then, the buffer must still hold every beat of the newest window's segment.
    rolling = feed_rr(RRBuffer(windowing, RRCleaning(), horizon_s=horizon_s), t, rr, ask_every)
    batch = rr_windows(t, rr, windowing)
    by_start = {int(batch.start_index[k]): batch.window(k) for k in range(len(batch))}
    if ask_every == 1:
        assert len(rolling) == len(batch)
    for window in rolling:
        assert_same_rr(window, by_start[window.start_index])


def test_rr_buffer_is_bounded_and_keeps_the_horizon() -> None:
    t, rr = night_of_beats(seed=1, n=5000)
    buffer = RRBuffer(RRWindowing(n_beats=32, hop=8), horizon_s=120.0)
    for ti, ri in zip(t, rr, strict=True):
        buffer.add(float(ti), float(ri))
    kept_t, kept_rr = buffer.beats()
    assert buffer.beats_seen == 5000
    assert kept_t.size <= 4 * 120
    assert kept_t[0] >= t[-1] - 120.0 - 1e-9
    # and no fewer: every beat of the last 120 s (or the width + hop beats the next window needs, if more)
    w = buffer.windowing
    assert kept_t.size == max(np.count_nonzero(t >= t[-1] - 120.0), w.width + w.hop)
    assert kept_rr.tobytes() == rr[-kept_t.size :].tobytes()


# ----------------------------------------------------------------------------------------------------- glucose


def cgm_day(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A day of 5-minute readings with jitter, a 15-minute stretch, duplicates, NaNs and a 40-minute gap."""
    rng = np.random.default_rng(seed)
    t = T0 + 17.0 + np.arange(288) * 300.0 + rng.uniform(-20, 20, 288)
    v = 140 + 50 * np.sin(np.arange(288) / 20.0) + rng.normal(0, 3, 288)
    v[rng.integers(0, 288, 8)] = np.nan
    keep = np.ones(288, bool)
    keep[100:130] = np.arange(30) % 3 == 0  # a 15-minute sensor for 2.5 hours
    keep[200:208] = False  # 45 minutes without readings
    t, v = t[keep], v[keep]
    dup = rng.integers(0, t.size, 10)
    return np.r_[t, t[dup]], np.r_[v, v[dup] + rng.normal(0, 2, 10)]


def batch_window_now(t: np.ndarray, v: np.ndarray, windowing: GlucoseWindowing) -> GlucoseWindow | None:
    """What model_build's batch code says the window ending at the newest grid point is."""
    grid = resample_glucose(t, v, windowing.gridding)
    windows = glucose_windows(grid, GlucoseWindowing(windowing.length, (), windowing.gridding))
    if len(windows) == 0 or grid.index.size == 0 or windows.end_index[-1] != grid.index[-1]:
        return None
    return windows.window(len(windows) - 1)


@pytest.mark.parametrize("order", ["in_order", "backfilled"])
def test_rolling_glucose_windows_equal_the_batch_bit_for_bit(order: str) -> None:
    t, v = cgm_day(seed=4)
    arrival = np.arange(t.size)
    if order == "backfilled":  # readings arrive up to an hour late, in bursts, as after reconnects
        rng = np.random.default_rng(9)
        arrival = np.argsort(t + rng.choice([0.0, 0.0, 0.0, 3600.0], t.size), kind="stable")
    windowing = GlucoseWindowing(length=12)
    buffer = GlucoseBuffer(windowing, horizon_s=3 * 3600.0)
    offered = 0
    for k in range(1, arrival.size + 1):
        i = arrival[k - 1]
        buffer.add(float(t[i]), float(v[i]))
        so_far = arrival[:k]
        expected = batch_window_now(t[so_far], v[so_far], windowing)
        got = buffer.window()
        assert (got is None) == (expected is None), k
        if got is not None and expected is not None:
            assert_same_glucose(got, expected)
            offered += 1
    assert offered > 150


def test_in_order_windows_are_the_training_windows() -> None:
    t, v = cgm_day(seed=5)
    order = np.argsort(t, kind="stable")
    windowing = GlucoseWindowing(length=6)
    buffer = GlucoseBuffer(windowing, horizon_s=7200.0)
    offered: dict[int, GlucoseWindow] = {}
    for i in order:
        buffer.add(float(t[i]), float(v[i]))
        window = buffer.window()
        if window is not None:
            offered[window.end_index] = window
    training = glucose_windows(resample_glucose(t, v), GlucoseWindowing(6, ()))
    assert set(offered) <= {int(e) for e in training.end_index}
    assert len(offered) > 200
    for k in range(len(training)):
        window = training.window(k)
        if window.end_index in offered:
            assert_same_glucose(offered[window.end_index], window)


def test_glucose_buffer_ignores_unusable_and_ancient_readings() -> None:
    buffer = GlucoseBuffer(GlucoseWindowing(length=3), horizon_s=3600.0)
    for k in range(3):
        buffer.add(ON_GRID + 300.0 * k, 100.0 + k)
    before = buffer.window()
    assert before is not None
    assert list(before.mg_dl) == [100.0, 101.0, 102.0]
    buffer.add(ON_GRID + 600.0, math.nan)
    buffer.add(ON_GRID - 7200.0, 500.0)
    after = buffer.window()
    assert after is not None
    assert after.mg_dl.tobytes() == before.mg_dl.tobytes()
    assert buffer.grid().t_s[0] == ON_GRID


def test_glucose_buffer_is_bounded() -> None:
    buffer = GlucoseBuffer(GlucoseWindowing(length=6), horizon_s=3600.0)
    for k in range(5000):
        buffer.add(T0 + 60.0 * k, 100.0)
    grid = buffer.grid()
    assert grid.t_s[-1] - grid.t_s[0] <= 3600.0
    assert buffer._n <= buffer._capacity


def test_horizon_must_cover_a_window() -> None:
    with pytest.raises(SignalError) as info:
        GlucoseBuffer(GlucoseWindowing(length=24), horizon_s=3600.0)
    assert info.value.parameter == "horizon_s"


def test_wearer_windows_without_a_part() -> None:
    wearer = WearerWindows(None, GlucoseWindowing(length=2, gridding=GlucoseGridding()))
    wearer.add_rr(ON_GRID, 0.8)
    wearer.add_glucose(ON_GRID, 100.0)
    wearer.add_glucose(ON_GRID + 300.0, 101.0)
    assert wearer.rr_window() is None
    window = wearer.glucose_window()
    assert window is not None
    assert list(window.mg_dl) == [100.0, 101.0]
