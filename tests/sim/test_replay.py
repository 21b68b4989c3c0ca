"""sim.replay and sim.score: a scenario with known events through the whole agent, scored exactly."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sim.replay import ReplayError, fresh_db, from_scenario, parse_broker, run_replay
from sim.score import episodes, score_db

KNOWN = Path(__file__).parents[1] / "fixtures" / "scenarios" / "known.toml"


@pytest.fixture(scope="module")
def known_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("known") / "replay.db"
    result = run_replay(from_scenario(KNOWN), db, speed=None, broker="none")
    assert result.stats["notifications"]["rejected"] == 3  # the three corrupt strap notifications
    assert result.stats["notifications"]["dropped"] == 0
    return db


# (events, sensitivity, false alerts, false alerts per wearer-day) per kind: see the fixture's comments. One
# wearer for four hours is 1/6 of a wearer-day, so one false alert is 6 per day. The compression low at 3:30
# is the only false alert: the CGM read 48 mg/dL while the glucose was about 115.
EXPECTED = {
    "glucose_low": (1, 1.0, 1, 6.0),
    "glucose_urgent_low": (1, 1.0, 1, 6.0),
    "glucose_high": (1, 1.0, 0, 0.0),
    "glucose_urgent_high": (1, 1.0, 0, 0.0),
    # The run at 2:15 is exercise: the agent's alerts there are neither detections nor false alerts.
    "heart_tachycardia": (1, 1.0, 0, 0.0),
    "heart_bradycardia": (1, 1.0, 0, 0.0),
    # The strap silent for 5 minutes, and the CGM silent while out of range.
    "sensor_stale": (2, 1.0, 0, 0.0),
    "sensor_disconnected": (1, 1.0, 0, 0.0),
    "sensor_battery_low": (1, 1.0, 0, 0.0),
}


def test_a_replay_of_known_events_is_scored_exactly(known_db: Path) -> None:
    result = score_db(known_db)
    assert (result["scenario"], result["wearers"], result["hours"]) == ("known", 1, 4.0)
    kinds = result["kinds"]
    for kind, (events, sensitivity, false, per_day) in EXPECTED.items():
        k = kinds[kind]
        assert (k["events"], k["sensitivity"], k["false_alerts"], k["false_alerts_per_day"]) == (
            events,
            sensitivity,
            false,
            per_day,
        ), kind
    # The AF episode at 0:30 is in the truth whatever the agent's rhythm detector makes of it.
    assert kinds["heart_irregular_rhythm"]["events"] == 1
    # Lead (+) or lag (-) in minutes: the heart-rate rules wait for 60 s of it, a lost link for 5 minutes;
    # a battery alert comes with the reading that crosses the threshold.
    assert kinds["heart_tachycardia"]["median_lead_min"] == pytest.approx(-1.0, abs=0.02)
    assert kinds["heart_bradycardia"]["median_lead_min"] == pytest.approx(-1.0, abs=0.02)
    assert kinds["sensor_disconnected"]["median_lead_min"] == pytest.approx(-5.0, abs=0.05)
    assert kinds["sensor_battery_low"]["median_lead_min"] == 0.0
    # The strap's silence is noticed 2 minutes after its last notification, the CGM's 15 after its last reading.
    assert kinds["sensor_stale"]["lead_min"]["min"] == pytest.approx(-15.0, abs=0.05)
    assert kinds["sensor_stale"]["lead_min"]["max"] == pytest.approx(-2.0, abs=0.05)


def test_the_truth_and_the_run_are_in_the_replay_database(known_db: Path) -> None:
    with contextlib.closing(sqlite3.connect(known_db)) as conn:
        (runs,) = conn.execute("SELECT count(*) FROM sim_run").fetchone()
        (truth,) = conn.execute("SELECT count(*) FROM sim_truth WHERE scored = 1").fetchone()
        raised = [e for e in episodes(conn) if e.kind == "sensor_disconnected"]
    assert runs == 1
    assert truth == 11  # the 11 events of EXPECTED and the AF episode
    assert len(raised) == 1
    assert raised[0].subject == "C0:FF:EE:00:00:02"
    assert raised[0].cleared is not None


def raised_alerts(db: Path) -> list[tuple[str, float]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [(e.kind, e.raised) for e in episodes(conn)]


def test_the_same_alerts_at_real_time_multiples_and_at_maximum_speed(tmp_path: Path) -> None:
    first_80_min: Any = from_scenario(KNOWN, hours=80 / 60)
    run_replay(first_80_min, tmp_path / "max.db", speed=None, broker="none")
    run_replay(from_scenario(KNOWN, hours=80 / 60), tmp_path / "paced.db", speed=2400.0, broker="none")
    fast, paced = raised_alerts(tmp_path / "max.db"), raised_alerts(tmp_path / "paced.db")
    assert [k for k, _ in fast] == [k for k, _ in paced]
    assert {"glucose_low", "glucose_urgent_low"} <= {k for k, _ in fast}
    for (_, a), (_, b) in zip(fast, paced, strict=True):
        assert a == pytest.approx(b, abs=1.0)


def test_a_replay_never_overwrites_a_database_that_is_not_a_replay(tmp_path: Path) -> None:
    agents = tmp_path / "vigil.db"
    with contextlib.closing(sqlite3.connect(agents)) as conn:
        conn.execute("CREATE TABLE readings (id INTEGER)")
        conn.commit()
    with pytest.raises(ReplayError):
        fresh_db(agents)
    assert agents.exists()
    text = tmp_path / "notes.db"
    text.write_text("not sqlite")
    with pytest.raises(ReplayError):
        fresh_db(text)


def test_score_refuses_a_database_without_a_replay(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    sqlite3.connect(db).close()
    with pytest.raises(ReplayError):
        score_db(db)
    with pytest.raises(ReplayError):
        score_db(tmp_path / "missing.db")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, ("embedded", "127.0.0.1", 0)),
        ("none", ("none", "127.0.0.1", 0)),
        ("mqtt://broker.lan:1884", ("external", "broker.lan", 1884)),
        ("10.0.0.2:1883", ("external", "10.0.0.2", 1883)),
        ("broker.lan", ("external", "broker.lan", 1883)),
    ],
)
def test_broker_urls(url: str | None, expected: tuple[str, str, int]) -> None:
    assert parse_broker(url) == expected


def test_a_bad_broker_url_is_refused() -> None:
    with pytest.raises(ReplayError):
        parse_broker("mqtt://host:port")
