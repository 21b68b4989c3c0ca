"""sim.truth: the ground-truth rules, and keeping truth in a replay's database."""

from __future__ import annotations

import sqlite3

import numpy as np

from agent.config import AlertPolicy, Thresholds
from sim.signals import BeatLabel, Beats, Glucose
from sim.truth import (
    AF,
    battery_truth,
    glucose_truth,
    hr_truth,
    load_run,
    load_truth,
    outage_truth,
    rhythm_truth,
    runs,
    save_run,
    silence_truth,
)

T0 = 1_800_000_000.0


def test_runs_keep_short_ones_as_dont_care_and_merge_events() -> None:
    t = np.arange(0.0, 20.0)
    hit = np.zeros(20, dtype=bool)
    hit[2:7] = True  # 5 s: an event
    hit[8:12] = True  # 4 s, 1 s after: an event
    hit[15:16] = True  # 1 s: don't-care
    out = runs(t, hit, period=1.0, max_step=1.0, min_s=4.0, merge_s=2.0)
    assert out == [(2.0, 12.0, True), (15.0, 16.0, False)]


def test_a_flickering_rate_is_no_event() -> None:
    t = np.arange(0.0, 300.0)
    hit = (np.arange(300) % 10) < 7  # above the threshold 7 s of every 10, for five minutes
    assert all(not scored for *_, scored in runs(t, hit, period=1.0, max_step=1.0, min_s=65, merge_s=60))


def test_glucose_events_last_fifteen_minutes() -> None:
    t = np.arange(0.0, 4 * 3600.0, 300.0)
    true = np.full(len(t), 120.0)
    true[6:12] = 60.0  # 30 min below 70
    true[8:11] = 50.0  # 15 min below 54
    true[20:22] = 65.0  # 10 min below 70: don't-care
    events = glucose_truth("w", Glucose(t, true, true), Thresholds(), T0)
    lows = [(e.start - T0, e.end - T0, e.scored) for e in events if e.kind == "glucose_low"]
    assert lows == [(1800.0, 3600.0, True), (6000.0, 6600.0, False)]
    urgent = [e for e in events if e.kind == "glucose_urgent_low"]
    assert [(e.start - T0, e.scored, e.detail["extreme_mg_dl"]) for e in urgent] == [(2400.0, True, 50.0)]


def test_heart_rate_events_need_the_sustain_and_exercise_is_dont_care() -> None:
    seconds = np.arange(1.0, 1001.0)
    hr = np.full(1000, 70.0)
    hr[99:199] = 130.0  # 100 s above 120
    hr[499:599] = 135.0  # during exercise
    hr[799:829] = 35.0  # 30 s below 40: too short
    th = Thresholds()
    events = hr_truth("w", seconds, hr, th, T0, exercise=[(450.0, 700.0)])
    tachy = [(e.start - T0, e.end - T0, e.scored) for e in events if e.kind == "heart_tachycardia"]
    assert tachy == [(100.0, 200.0, True), (500.0, 600.0, False)]
    assert [e.scored for e in events if e.kind == "heart_bradycardia"] == [False]


def test_af_truth_from_labels_counts_five_minutes_and_more() -> None:
    labels = np.zeros(2000, dtype=np.uint8)
    labels[100:500] = BeatLabel.AF  # 400 s
    labels[800:900] = BeatLabel.AF  # 100 s: don't-care
    labels[1200:1300] = BeatLabel.OTHER  # flutter: don't-care
    beats = Beats.from_rr(np.ones(2000), labels)
    events = rhythm_truth("w", beats, T0)
    assert all(e.kind == AF for e in events)
    assert [(e.start - T0, e.end - T0, e.scored) for e in events] == [
        (100.0, 500.0, True),
        (800.0, 900.0, False),
        (1200.0, 1300.0, False),
    ]


def test_sensor_truth_silences_outages_and_battery() -> None:
    deliveries = np.array([T0 + s for s in [*range(0, 100), *range(300, 400)]], dtype=float)
    stale = silence_truth("w", "AA", deliveries, 120.0, T0, T0 + 400)
    assert [(e.start - T0, e.end - T0, e.subject, e.scored) for e in stale] == [(99.0, 300.0, "AA", True)]
    outages = outage_truth("w", "AA", [(T0, T0 + 200), (T0 + 500, T0 + 1000)], AlertPolicy())
    assert [(e.start - T0, e.scored) for e in outages] == [(500.0, True)]
    levels = [(T0, 20), (T0 + 10, 14), (T0 + 20, 18), (T0 + 30, 20), (T0 + 40, 12)]
    low = battery_truth("w", "AA", levels, Thresholds(), T0 + 100)
    assert [(e.start - T0, e.end - T0) for e in low] == [(10.0, 30.0), (40.0, 100.0)]


def test_truth_round_trips_through_the_database() -> None:
    conn = sqlite3.connect(":memory:")
    empty = sqlite3.connect(":memory:")
    events = rhythm_truth("w", Beats.from_rr(np.ones(600), np.full(600, BeatLabel.AF, dtype=np.uint8)), T0)
    run = save_run(conn, scenario="s", kind="scenario", source="s.toml", start=T0, end=T0 + 600,
                   wearers={"w": {"strap": "AA"}}, meta={"truth_kinds": [AF]}, truth=events)  # fmt: skip
    loaded = load_run(conn)
    assert loaded is not None
    assert (loaded.id, loaded.scenario, loaded.wearers, loaded.wearer_days) == (run, "s", {"w": {"strap": "AA"}},
                                                                              600 / 86400)  # fmt: skip
    assert load_truth(conn, run) == events
    assert load_run(empty) is None
    conn.close()
    empty.close()
