"""`vigil demo`, the quick start's first command, on a shortened night."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.store import Store
from sim.demo import run_demo


def test_demo_prints_each_alert_and_a_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    rc = run_demo(out=tmp_path / "demo", hours=2.0, speed=None, stream=out)
    text = out.getvalue()
    assert rc == 0, text
    alert_lines = [
        line for line in text.splitlines() if any(f"  {s} " in line for s in ("RAISED", "ONGOING", "CLEARED"))
    ]
    raised = {line.split()[5].rstrip(":") for line in alert_lines if " RAISED " in line}
    assert raised == {
        "glucose_low",
        "glucose_urgent_low",
        "glucose_high",
        "glucose_urgent_high",
        "heart_bradycardia",
        "heart_tachycardia",
    }
    n = len(alert_lines)
    assert f"alert messages received by the subscriber: {n} of {n}, 0 duplicates dropped" in text
    assert sum(" CLEARED " in line for line in alert_lines) == 6
    assert "0 dropped, 0 rejected by the codecs" in text
    db = tmp_path / "demo" / "vigil.db"
    assert f"database: {db.resolve()}" in text
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    store = Store(db)
    counts = store.count_readings()
    assert counts["glucose"] == 2 * (2 * 12 + 1)
    assert counts["hr"] > 2 * 2 * 3600 - 10
    assert len(store.alerts()) == len(alert_lines)
    store.close()
    # A second run starts from a fresh database rather than resuming the first night's alerts.
    out2 = io.StringIO()
    assert run_demo(out=tmp_path / "demo", hours=2.0, speed=None, stream=out2) == 0
    assert f"{n} of {n}" in out2.getvalue()


def test_demo_rejects_a_silly_length(tmp_path: Path) -> None:
    with pytest.raises(AgentError):
        run_demo(out=tmp_path, hours=0, stream=io.StringIO())
