"""Acknowledged messages leave the outbox without an fsync of their own; everything else stays synchronous=FULL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import PRIORITY_ALERT, Store

FULL = 2


def synchronous(store: Store) -> int:
    return int(store._conn.execute("PRAGMA synchronous").fetchone()[0])


def test_outbox_done_removes_the_rows_and_leaves_the_connection_at_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "v.db")
    assert synchronous(store) == FULL
    store.write_batch(outbox=[(PRIORITY_ALERT, f"vigil/h/w/alert/k{i}", b"{}", 1, False) for i in range(5)])
    pending = store.outbox_pending(10)
    store.outbox_done([m.seq for m in pending[:3]])
    assert [m.topic for m in store.outbox_pending(10)] == ["vigil/h/w/alert/k3", "vigil/h/w/alert/k4"]
    assert synchronous(store) == FULL  # the next batch is durable before it is acknowledged downstream
    store.close()
    reopened = Store(tmp_path / "v.db")  # and the removal was committed
    assert reopened.outbox_depth() == 2


def test_a_failing_outbox_done_also_leaves_the_connection_at_full(tmp_path: Path) -> None:
    store = Store(tmp_path / "v.db")
    other = sqlite3.connect(tmp_path / "v.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock: the store's transaction cannot start
    store._conn.execute("PRAGMA busy_timeout = 0")
    with pytest.raises(StoreError):
        store.outbox_done([1])
    other.rollback()
    other.close()
    assert synchronous(store) == FULL
