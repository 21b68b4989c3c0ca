"""The rule engine: raise once, clear with hysteresis, sustain heart-rate alerts, resume after a restart."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.alerts import AlertEngine, CommandError, Condition, Restored
from agent.config import AlertPolicy, Thresholds


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
    again.restore({("w1", "glucose_low", ""): Restored(raised.episode, 0.0)})
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


def urgent_low_engine(**policy: float) -> AlertEngine:
    counter = itertools.count()
    return AlertEngine({"w1": Thresholds()}, AlertPolicy(**policy), new_id=lambda: f"id{next(counter):04d}")


def test_unacknowledged_urgent_alert_is_announced_again_until_acknowledged() -> None:
    eng = urgent_low_engine(renotify_urgent_s=900)
    (urgent,) = [e for e in eng.feed("w1", "glucose", 50, 0) if e.kind == "glucose_urgent_low"]
    assert eng.tick(899) == []
    (again,) = eng.tick(900)
    assert (again.state, again.episode, again.kind) == ("ongoing", urgent.episode, "glucose_urgent_low")
    assert again.id != urgent.id
    assert "not acknowledged" in again.reason
    assert eng.tick(1000) == []
    (acked,) = eng.acknowledge("w1", episode=urgent.episode[:6], kind=None, by="nurse-3", t=1100)
    assert acked.state == "ongoing"
    assert acked.acknowledged == {"by": "nurse-3", "at": 1100}
    assert eng.tick(5000) == []  # acknowledged: no more repeats
    cleared = [e for e in eng.feed("w1", "glucose", 100, 6000) if e.kind == "glucose_urgent_low"]
    assert cleared[0].state == "cleared"


def test_warning_alerts_are_not_repeated_by_default() -> None:
    eng = urgent_low_engine()
    eng.feed("w1", "glucose", 65, 0)
    assert eng.tick(10_000) == []


def test_acknowledge_errors() -> None:
    eng = urgent_low_engine()
    with pytest.raises(CommandError):
        eng.acknowledge("w1", episode="abcdef", kind=None, by="x", t=0)  # nothing active
    eng.feed("w1", "glucose", 65, 0)
    with pytest.raises(CommandError):
        eng.acknowledge("w1", episode="id", kind=None, by="x", t=0)  # prefix too short
    with pytest.raises(CommandError):
        eng.acknowledge("w1", episode=None, kind=None, by="x", t=0)
    (ev,) = eng.acknowledge("w1", episode=None, kind="glucose_low", by="x", t=1)
    assert ev.kind == "glucose_low"


def test_snooze_holds_back_new_episodes_and_is_capped_for_urgent_kinds() -> None:
    eng = urgent_low_engine(snooze_max_s=3600, snooze_max_urgent_s=1800)
    assert eng.snooze("w1", episode=None, kind="glucose_low", seconds=7200, by="me", t=0) == []
    assert [e.kind for e in eng.feed("w1", "glucose", 65, 100)] == []  # snoozed: no raise
    # The snooze was capped at an hour; the low still holding afterwards raises then.
    assert [e.kind for e in eng.feed("w1", "glucose", 65, 3599)] == []
    assert [e.kind for e in eng.feed("w1", "glucose", 65, 3601)] == ["glucose_low"]
    eng2 = urgent_low_engine(snooze_max_s=3600, snooze_max_urgent_s=1800)
    eng2.feed("w1", "glucose", 50, 0)
    events = eng2.snooze("w1", episode=None, kind="glucose_urgent_low", seconds=7200, by="me", t=10)
    assert [e.acknowledged for e in events] == [{"by": "me", "at": 10, "snoozed_until": 1810}]
    with pytest.raises(CommandError):
        eng2.snooze("w1", episode=None, kind="glucose_low", seconds=-5, by="me", t=10)


def test_restored_episode_keeps_its_condition_for_repeats() -> None:
    cond = Condition("w1", "glucose_urgent_low", True, 0.0, "urgent", "urgent low glucose: glucose 50 mg/dL")
    eng = urgent_low_engine(renotify_urgent_s=900)
    eng.restore({("w1", "glucose_urgent_low", ""): Restored("ep0001", 0.0, cond)})
    (again,) = eng.tick(1000)
    assert (again.episode, again.state) == ("ep0001", "ongoing")


def test_restart_keeps_the_repeat_rhythm_and_the_acknowledgement() -> None:
    """A restarting agent must not page anyone at every start, nor forget that someone answered."""
    cond = Condition("w1", "glucose_urgent_low", True, 0.0, "urgent", "urgent low glucose: glucose 50 mg/dL")
    eng = urgent_low_engine(renotify_urgent_s=900)
    # Raised at 0, announced again at 900 and at 1800; the agent restarts at 1850.
    eng.restore({("w1", "glucose_urgent_low", ""): Restored("ep0001", 0.0, cond, last_sent=1800.0)})
    assert eng.tick(1850) == []
    assert [e.state for e in eng.tick(2700)] == ["ongoing"]
    acked = urgent_low_engine(renotify_urgent_s=900)
    acked.restore(
        {("w1", "glucose_urgent_low", ""): Restored("ep0002", 0.0, cond, 100.0, {"by": "nurse", "at": 100.0})}
    )
    assert acked.tick(5000) == []
