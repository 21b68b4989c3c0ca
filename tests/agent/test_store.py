"""The store: owner-only file, WAL, migrations, batched durable writes, the outbox's order."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import MIGRATIONS, PRIORITY_ALERT, PRIORITY_STATE, Reading, Store, StoredAlert


def test_file_is_owner_only_wal_and_migrated(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "vigil.db"
    store = Store(path)
    store.write_batch(readings=[Reading("w1", "strap", "hr", 1.0, 60.0)])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for companion in (path.with_name("vigil.db-wal"), path.with_name("vigil.db-shm")):
        if companion.exists():
            assert stat.S_IMODE(companion.stat().st_mode) & 0o077 == 0
    assert store.schema_version == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_reopen_keeps_data_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    s = Store(path)
    s.write_batch(readings=[Reading("w1", "cgm", "glucose", 1.0, 99.0, {"trend_mg_dl_per_min": -1.0})])
    s.close()
    s = Store(path)
    assert s.count_readings() == {"glucose": 1}
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as info:
        Store(path)
    assert info.value.operation == "migrate"


def test_batch_is_atomic(tmp_path: Path) -> None:
    s = Store(tmp_path / "v.db")
    alert = StoredAlert("a1", "e1", "w1", "glucose_low", "warning", "raised", 1.0, {"id": "a1"})
    s.write_batch(alerts=[alert])
    # The reading is valid but the alert's payload cannot be serialised: nothing may be written.
    bad = StoredAlert("a2", "e2", "w1", "glucose_low", "warning", "raised", 2.0, {"x": object()})
    with pytest.raises(StoreError):
        s.write_batch(readings=[Reading("w1", "cgm", "glucose", 2.0, 60.0)], alerts=[bad])
    assert s.count_readings() == {}
    assert [a.id for a in s.alerts()] == ["a1"]
    s.close()


def test_outbox_alerts_first_in_order_and_state_coalesced(tmp_path: Path) -> None:
    s = Store(tmp_path / "v.db")
    s.write_batch(outbox=[(PRIORITY_STATE, "v/s/w1/state", b"old", 1, True)])
    s.write_batch(outbox=[(PRIORITY_ALERT, "v/s/w1/alert/glucose_low", b"a1", 1, False)])
    s.write_batch(outbox=[(PRIORITY_STATE, "v/s/w1/state", b"new", 1, True)])
    s.write_batch(outbox=[(PRIORITY_ALERT, "v/s/w1/alert/glucose_low", b"a2", 1, False)])
    pending = s.outbox_pending(10)
    assert [m.payload for m in pending] == [b"a1", b"a2", b"new"]
    assert s.outbox_pending(10, exclude=[pending[0].seq])[0].payload == b"a2"
    s.outbox_done([pending[0].seq])
    assert s.outbox_depth() == 2
    s.close()


def test_active_alert_state_round_trip(tmp_path: Path) -> None:
    s = Store(tmp_path / "v.db")
    s.write_batch(alert_state=[("w1", "glucose_low", "e1", 10.0)])
    assert s.active_alerts() == {("w1", "glucose_low"): ("e1", 10.0)}
    s.write_batch(alert_state=[("w1", "glucose_low", None, 20.0)])
    assert s.active_alerts() == {}
    s.close()


def test_extras_are_stored_as_json_dumps_writes_them(tmp_path: Path) -> None:
    """The store keeps the JSON of one-string extras (every heart rate's contact status) instead of encoding
    it again for each reading: the stored text is still exactly json.dumps of each reading's extra."""
    extras = [
        {"contact": "detected"},
        {"contact": "not_detected"},
        {"contact": "detected"},
        {"contact": "détecté \u2764"},
        {"a": 1},
        {"a": 1.0},
        {"a": True},
        {"a": None},
        {"a": "x", "b": "y"},
        {"time_offset_min": 5, "status": ["device_battery_low"]},
        None,
        {},
    ]
    store = Store(tmp_path / "x.db")
    for _ in range(2):  # the second time from what the first one kept
        store.write_batch(readings=[Reading("w", "d", "hr", float(i), 60.0, e) for i, e in enumerate(extras)])
    store.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    stored = [row[0] for row in conn.execute("SELECT extra FROM readings ORDER BY id")]
    conn.close()
    assert stored == [json.dumps(e) if e else None for e in extras] * 2
