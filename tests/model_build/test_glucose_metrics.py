"""Baselines, metrics and the hypoglycaemia matching, checked by hand. numpy only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.alerts import AlertEngine, Condition
from agent.config import Thresholds
from agent.signals.glucose import GlucoseGrid
from model_build.glucose import baselines, hypo, metrics

STEPS = [3, 6, 9, 12]


def test_persistence_and_linear_extrapolation() -> None:
    past = np.array([[100.0, 102, 104, 106, 108, 110, 112, 114]])
    assert baselines.persistence(past, STEPS).tolist() == [[114.0] * 4]
    line = baselines.linear_extrapolation(past, STEPS, span_steps=3)
    np.testing.assert_allclose(line, [[120.0, 126.0, 132.0, 138.0]])
    noisy = past + np.array([0, 0, 0, 0, 1, -1, 1, -1])
    # last four: 109, 109, 113, 113 -> slope 1.6 per step through (-1.5, 111): 113.4 now, 115.0 one step on
    assert baselines.linear_extrapolation(noisy, [1], span_steps=3)[0, 0] == pytest.approx(115.0)


def test_ar2_is_nightscouts_recursion_on_log_glucose_clamped() -> None:
    past = np.array([[120.0, 110.0]])
    y_prev, y = math.log(120 / 140), math.log(110 / 140)
    expected = []
    for _ in range(12):
        y_prev, y = y, -0.723 * y_prev + 1.716 * y
        expected.append(min(max(140 * math.exp(y), 36.0), 400.0))
    np.testing.assert_allclose(baselines.ar2(past, list(range(1, 13)))[0], expected)
    falling = baselines.ar2(np.array([[100.0, 60.0]]), [12])
    assert falling[0, 0] == 36.0  # clamped at the bottom
    rising = baselines.ar2(np.array([[300.0, 380.0]]), [12])
    assert rising[0, 0] == 400.0


def test_ridge_ar_recovers_an_autoregressive_process() -> None:
    rng = np.random.default_rng(3)
    n = 6000
    x = np.zeros(n)
    x[:2] = 150
    for t in range(2, n):
        x[t] = 150 + 1.6 * (x[t - 1] - 150) - 0.64 * (x[t - 2] - 150) + rng.normal(0, 2)
    idx = np.arange(10, n - 12)
    past = np.stack([x[i - 9 : i + 1] for i in idx])
    target = x[idx + 1][:, None]
    model = baselines.RidgeAR.fit(past, target, order=2, alpha=1e-6)
    # forecast = last + delta: coefficient on x[t] is 1.6 - 1, on x[t-1] -0.64
    np.testing.assert_allclose(model.coef[:, 0], [-0.64, 0.6], atol=0.03)
    assert metrics.rmse(model.predict(past), target) == pytest.approx(2.0, abs=0.1)
    again = baselines.RidgeAR.from_json(model.to_json())
    np.testing.assert_array_equal(again.predict(past), model.predict(past))


def test_point_metrics() -> None:
    y = np.array([100.0, 200.0])
    f = np.array([110.0, 180.0])
    assert metrics.rmse(f, y) == pytest.approx(math.sqrt((100 + 400) / 2))
    assert metrics.mae(f, y) == 15.0
    assert metrics.mard_pct(f, y) == pytest.approx(10.0)
    assert metrics.coverage(y, [90, 210], [120, 250]) == 0.5


@pytest.mark.parametrize(
    ("reference", "forecast", "zone"),
    [
        (100, 115, "A"),
        (60, 65, "A"),  # both <= 70
        (100, 125, "B"),
        (100, 215, "C"),  # forecast >= reference + 110
        (150, 25, "C"),  # reference 130-180, forecast <= 7/5 ref - 182
        (50, 120, "D"),
        (300, 150, "D"),
        (250, 60, "E"),
        (60, 200, "E"),
    ],
)
def test_clarke_zones(reference: float, forecast: float, zone: str) -> None:
    assert metrics.clarke_zones([reference], [forecast]).tolist() == [zone]


def test_persistence_lags_by_its_horizon() -> None:
    t = np.arange(600)
    values = 150 + 50 * np.sin(t / 20.0)
    grid_index = t.astype(np.int64) + 1000
    for h in (3, 6):
        lag = metrics.LagAccumulator(h + 2)
        ends = grid_index[20:-20]
        lag.add(ends + h, values[20:-20], grid_index, values)  # forecast = the value at the end
        assert lag.lag_steps() == h


def grid(values: list[float], t0: float = 0.0) -> GlucoseGrid:
    v = np.asarray(values, dtype=float)
    return GlucoseGrid(np.arange(v.size, dtype=np.int64), t0 + 300.0 * np.arange(v.size), v)


def test_events_follow_the_consensus_definition() -> None:
    high, low = 120.0, 60.0
    trace = [high] * 8 + [low, low] + [high] * 4 + [low] * 4 + [high, low, low] + [high] * 3 + [math.nan] + [low] * 3
    events = hypo.hypo_events(grid(trace))
    # two lows too short to count; one event from index 14 that a 5-minute rise does not end; after a gap, an
    # event whose onset has no observed half hour before it
    assert [(e.onset_s / 300, e.end_s / 300, e.predictable) for e in events] == [(14, 21, True), (25, 27, False)]


def test_matching_alerts_with_events() -> None:
    trace = [120.0] * 20 + [60.0] * 6 + [120.0] * 40 + [68.0, 120.0] + [120.0] * 40
    truth = hypo.Truth.of(grid(trace))
    onset = 20 * 300.0
    episodes = [
        hypo.Episode(onset - 1200, onset + 600),  # warns, 20 min ahead
        hypo.Episode(onset - 3000, onset - 2400),  # cleared long before the window: false
        hypo.Episode(onset + 300, onset + 900),  # raised during the event: late
        hypo.Episode(66 * 300.0 - 600, 66 * 300.0 + 300),  # a dip below 70 (not an event) 10 min later: true
        hypo.Episode(90 * 300.0, 91 * 300.0),  # nothing follows: false
    ]
    counts = hypo.match(truth.events, episodes, truth)
    fig = counts.figures()
    assert (fig["events"], fig["predictable_events"], fig["detected_events"]) == (1, 1, 1)
    assert fig["sensitivity"] == 1.0
    assert fig["median_lead_min"] == 20.0
    assert (counts.false_alerts, counts.late_alerts, counts.dips) == (2, 1, 1)
    assert fig["false_alerts_per_day"] == pytest.approx(2 / (len(trace) * 300 / 86400))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.floats(40, 140), st.just(math.nan)), min_size=1, max_size=80),
    st.sampled_from([0.0, 300.0, 600.0]),
    st.sampled_from([5.0, 20.0]),
)
def test_the_fast_simulation_is_the_alert_engine(triggers: list[float], sustain: float, hysteresis: float) -> None:
    """Tuning replays thousands of settings with hypo.simulate; it must do what AlertEngine.assess does."""
    on = 80.0
    t = 1000.0 + 300.0 * np.arange(len(triggers))
    fast = hypo.simulate(t, np.asarray(triggers), on=on, off=on + hysteresis, sustain_s=sustain, end_s=1e9)
    engine = AlertEngine({"w": Thresholds()})
    raised: float | None = None
    slow: list[hypo.Episode] = []
    for ti, x in zip(t.tolist(), triggers, strict=True):
        if math.isnan(x):
            continue
        active = True if x < on else False if x >= on + hysteresis else None
        cond = Condition("w", "glucose_predicted_low", active, ti, "warning", "r", sustain_s=sustain)
        for ev in engine.assess(cond):
            if ev.state == "raised":
                raised = ev.t
            elif ev.state == "cleared" and raised is not None:
                slow.append(hypo.Episode(raised, ev.t))
                raised = None
    if raised is not None:
        slow.append(hypo.Episode(raised, 1e9))
    assert fast == slow
