"""`vigil demo`, the quick start's first command, on a shortened night of the bundled `demo` scenario."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.store import Store
from sim.demo import run_demo
from sim.score import score_db


def alert_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(f"  {s} " in line for s in ("RAISED", "ONGOING", "CLEARED"))]


def raised_alerts(lines: list[str]) -> list[tuple[str, str]]:
    """(wearer, kind) of each RAISED line, sorted (lines of the same minute may come in either order)."""
    return sorted((line.split()[4], line.split()[5].rstrip(":")) for line in lines if " RAISED " in line)


def test_demo_prints_each_alert_and_a_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    rc = run_demo(out=tmp_path / "demo", hours=2.0, speed=None, stream=out)
    text = out.getvalue()
    assert rc == 0, text
    lines = alert_lines(text)
    raised = {kind for _, kind in raised_alerts(lines)}
    # The scenario's known events in its first two hours (sim/scenarios/demo.toml): w-ann's nocturnal low,
    # w-ben's high and tachycardia, and w-ben's CGM out of range for 25 minutes.
    known = {
        "glucose_low",
        "glucose_urgent_low",
        "glucose_high",
        "glucose_urgent_high",
        "heart_tachycardia",
        "sensor_disconnected",
        "sensor_stale",
    }
    assert known <= raised
    n = len(lines)
    assert f"alert messages received by the subscriber: {n} of {n}, 0 duplicates dropped" in text
    assert sum(" CLEARED " in line and line.split()[5].rstrip(":") in known for line in lines) == 6
    assert "0 dropped, 0 rejected by the codecs" in text
    db = tmp_path / "demo" / "vigil.db"
    assert f"database: {db.resolve()}" in text
    assert "Score of demo" in text
    score = score_db(db)["kinds"]
    for kind in (
        "glucose_low",
        "glucose_urgent_low",
        "glucose_urgent_high",
        "heart_tachycardia",
        "sensor_disconnected",
        "glucose_predicted_low",  # the forecaster, ahead of w-ann's low
        "heart_irregular_rhythm",  # the AF detector, on w-ann's AF
    ):
        assert score[kind]["sensitivity"] == 1.0, kind
        assert score[kind]["false_alerts"] == 0, kind
    assert score["heart_irregular_rhythm"]["events"] == 1  # w-ann's AF from 0:31
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    store = Store(db)
    counts = store.count_readings()
    # Every reading once, the CGM's backfilled ones included (5-minute readings, 1 Hz heart rate).
    assert counts["glucose"] == 2 * 2 * 12
    assert counts["hr"] == 2 * 2 * 3600
    assert len(store.alerts()) == len(lines)
    store.close()
    # A second run starts from a fresh database rather than resuming the first night's alerts: it raises the
    # same alerts again. (Not necessarily as many re-announcements: at full speed an "ongoing" falls due when a
    # batch or a wall-clock tick finds it due, so one near the end of the two hours may or may not make it.)
    out2 = io.StringIO()
    assert run_demo(out=tmp_path / "demo", hours=2.0, speed=None, stream=out2) == 0
    lines2 = alert_lines(out2.getvalue())
    assert raised_alerts(lines2) == raised_alerts(lines)
    assert f"{len(lines2)} of {len(lines2)}, 0 duplicates dropped" in out2.getvalue()


def test_demo_rejects_a_silly_length(tmp_path: Path) -> None:
    with pytest.raises(AgentError):
        run_demo(out=tmp_path, hours=0, stream=io.StringIO())
