"""The rule engine: raise once, clear with hysteresis, sustain heart-rate alerts, resume after a restart."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agent.alerts import AlertEngine
from agent.config import Thresholds


def engine(**th: float) -> AlertEngine:
    counter = itertools.count()
    return AlertEngine({"w1": Thresholds(**th)}, new_id=lambda: f"id{next(counter)}")


def kinds(events: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(e.kind, e.state) for e in events]


def test_glucose_low_raises_once_and_clears_past_hysteresis() -> None:
    eng = engine()
    t = 0.0
    out = []
    for v in [100, 80, 69, 68, 71, 69, 72, 74, 75, 90]:
        out.extend(eng.feed("w1", "glucose", v, t))
        t += 300
    assert kinds(out) == [("glucose_low", "raised"), ("glucose_low", "cleared")]
    raised, cleared = out
    assert raised.values["glucose_mg_dl"] == 69
    assert raised.thresholds == {"glucose_low": 70.0, "glucose_hysteresis": 5.0}
    assert "below the threshold of 70 mg/dL" in raised.reason
    assert cleared.values["glucose_mg_dl"] == 75
    assert cleared.episode == raised.episode
    assert cleared.id != raised.id


def test_urgent_low_comes_first_and_both_levels_track() -> None:
    eng = engine()
    out = eng.feed("w1", "glucose", 50, 0)
    assert kinds(out) == [("glucose_urgent_low", "raised"), ("glucose_low", "raised")]
    assert out[0].severity == "urgent"
    out = eng.feed("w1", "glucose", 60, 300)
    assert kinds(out) == [("glucose_urgent_low", "cleared")]


def test_high_and_urgent_high() -> None:
    eng = engine()
    out = eng.feed("w1", "glucose", 260, 0)
    assert sorted(kinds(out)) == [("glucose_high", "raised"), ("glucose_urgent_high", "raised")]


def test_tachycardia_needs_to_be_sustained() -> None:
    eng = engine(hr_sustain_s=60)
    out = []
    for t in range(0, 50):
        out.extend(eng.feed("w1", "hr", 130, float(t)))
    out.extend(eng.feed("w1", "hr", 100, 50.0))  # a dip resets the pending condition
    for t in range(51, 120):
        out.extend(eng.feed("w1", "hr", 130, float(t)))
    assert kinds(out) == [("heart_tachycardia", "raised")]
    assert out[0].t == 111.0
    assert "has been for 60 s" in out[0].reason


def test_unknown_wearer_is_ignored() -> None:
    assert engine().feed("stranger", "glucose", 40, 0) == []


def test_restore_does_not_raise_again() -> None:
    eng = engine()
    (raised,) = [e for e in eng.feed("w1", "glucose", 65, 0) if e.kind == "glucose_low"]
    again = engine()
    again.restore({("w1", "glucose_low"): (raised.episode, 0.0)})
    assert again.feed("w1", "glucose", 64, 300) == []
    (cleared,) = again.feed("w1", "glucose", 90, 600)
    assert cleared.episode == raised.episode
    assert cleared.state == "cleared"


@given(st.lists(st.floats(min_value=40, max_value=400), min_size=1, max_size=200))
def test_states_alternate_per_kind(values: list[float]) -> None:
    """Whatever the trace, each kind goes raised, cleared, raised, ... and never twice in a row."""
    eng = engine()
    last: dict[str, str] = {}
    for i, v in enumerate(values):
        for e in eng.feed("w1", "glucose", v, i * 300.0):
            assert last.get(e.kind, "cleared") != e.state
            last[e.kind] = e.state


def test_sensor_out_of_range_values_raise_without_infinite_numbers() -> None:
    """A CGM's "High" (+INF) raises urgent high; the payload carries no non-JSON number."""
    eng = engine()
    out = eng.feed("w1", "glucose", float("inf"), 0)
    urgent = next(e for e in out if e.kind == "glucose_urgent_high")
    assert urgent.values["glucose_mg_dl"] is None
    assert urgent.values["out_of_range"] == "above"
    assert "above the sensor's measuring range" in urgent.reason
    low = engine().feed("w1", "glucose", float("-inf"), 0)
    assert {e.kind for e in low} == {"glucose_urgent_low", "glucose_low"}
