"""``AlertEngine.feed`` skips building a condition that cannot change anything (not past its threshold, no
episode open): whatever the readings, it must give exactly the events of feeding every rule's condition
through ``assess``, as it did before the shortcut."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from agent.alerts import RULES_BY_SIGNAL, SEVERITY_ORDER, AlertEngine, AlertEvent
from agent.config import AlertPolicy, Thresholds


def engine() -> AlertEngine:
    counter = itertools.count()
    return AlertEngine({"w1": Thresholds()}, AlertPolicy(renotify_urgent_s=600.0), new_id=lambda: f"id{next(counter)}")


def through_assess(eng: AlertEngine, signal: str, value: float, t: float) -> list[AlertEvent]:
    th = Thresholds()
    events: list[AlertEvent] = []
    for rule in RULES_BY_SIGNAL[signal]:
        events.extend(eng.assess(rule.condition("w1", value, t, th)))
    events.sort(key=lambda e: SEVERITY_ORDER.get(e.severity, 9))
    return events


values = st.one_of(
    st.floats(min_value=20, max_value=420),
    st.sampled_from([float("nan"), float("inf"), float("-inf"), 54.0, 59.0, 70.0, 75.0, 120.0, 115.0, 40.0]),
)


@given(st.lists(st.tuples(st.sampled_from(["glucose", "hr"]), values, st.floats(0, 400)), max_size=150))
def test_feed_gives_the_events_of_every_condition_through_assess(readings: list[tuple[str, float, float]]) -> None:
    fast, slow = engine(), engine()
    t = 0.0
    for signal, value, step in readings:
        t += step
        assert fast.feed("w1", signal, value, t) == through_assess(slow, signal, value, t)
        assert fast.tick(t) == slow.tick(t)
        assert fast.active() == slow.active()
