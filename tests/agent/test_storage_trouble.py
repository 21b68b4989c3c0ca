"""A full store does not silence alerts; retention keeps the file within its limits and says what it pruned."""

from __future__ import annotations

import json
from pathlib import Path

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.messages import RawNotification
from agent.store import Reading, Store

T0 = 1_700_000_000.0
CGM = "AA:00:00:00:00:02"


def cgm(mg_dl: int, t: float) -> RawNotification:
    # CGM Measurement record: size 6, no flags, SFLOAT glucose (exponent 0), time offset 5 min.
    return RawNotification("w1", CGM, "2AA7", bytes([0x06, 0x00, mg_dl & 0xFF, (mg_dl >> 8) & 0x0F, 5, 0]), t)


def make_agent(tmp_path: Path, **store: float) -> tuple[Agent, list[tuple[str, bytes, bool]]]:
    cfg = parse_config(
        {
            "store": store,
            "wearers": [{"id": "w1", "devices": [{"kind": "cgm", "address": CGM}]}],
        }
    )
    agent = Agent(cfg, Store(tmp_path / "v.db"), clock=VirtualClock(T0))
    sent: list[tuple[str, bytes, bool]] = []
    agent.on_volatile = sent.extend
    return agent, sent


def fill_up(store: Store) -> None:
    """SQLite's page limit stands in for a full disk: no page more than the file has now."""
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")


def test_full_store_alerts_from_memory_then_recovers(tmp_path: Path) -> None:
    agent, sent = make_agent(tmp_path)
    agent.link_state("w1", CGM, "connected")
    agent.handle([cgm(120, T0)])
    assert agent.storage_state() == "ok"
    fill_up(agent.store)
    # Enough readings to need new pages, and a low glucose among them.
    agent.handle([cgm(100, T0 + 60 * i) for i in range(1, 400)] + [cgm(60, T0 + 60 * 400)])
    assert agent.storage_state().startswith("degraded")
    assert agent.unsaved_readings == 400
    alerts = [json.loads(p) for topic, p, _ in sent if "/alert/" in topic]
    assert [(a["kind"], a["state"]) for a in alerts] == [("glucose_low", "raised")]
    assert agent.store.alerts() == []  # nothing could be written
    # Space returns: the next tick writes what was held, and the alert is on record.
    agent.store.db.execute("PRAGMA max_page_count = 1073741823")
    agent.tick(T0 + 60 * 401)
    assert agent.storage_state() == "ok"
    assert agent.unsaved_readings == 0
    assert agent.store.count_readings() == {"glucose": 401}
    assert [a.id for a in agent.store.alerts()] == [alerts[0]["id"]]
    assert agent.store.outbox_depth() == 0 or all(
        "/alert/" not in m.topic for m in agent.store.outbox_pending(100)
    )  # the alert already went out from memory: not queued twice


def test_retention_by_age_and_size(tmp_path: Path) -> None:
    store = Store(tmp_path / "v.db")
    day = 86400.0
    old = [Reading("w1", "s", "hr", T0 - 40 * day + i, 60.0) for i in range(1000)]
    new = [Reading("w1", "s", "hr", T0 - day + i, 60.0, {"pad": "x" * 200}) for i in range(20_000)]
    store.write_batch(readings=old + new)
    report = store.prune(T0, max_age_s=30 * day, max_bytes=10**9)
    assert report.readings_by_age == 1000
    assert report.readings_by_size == 0
    assert store.count_readings() == {"hr": 20_000}
    limit = store.used_bytes() // 2
    report = store.prune(T0, max_age_s=30 * day, max_bytes=limit)
    assert report.readings_by_size > 0
    assert store.used_bytes() <= limit
    oldest = store.db.execute("SELECT min(t) FROM readings").fetchone()[0]
    assert oldest > T0 - day + report.readings_by_size - 1  # the oldest went first


def test_agent_prunes_on_schedule_and_reports(tmp_path: Path) -> None:
    agent, _ = make_agent(tmp_path, retention_days=1, prune_every_s=600)
    agent.store.write_batch(readings=[Reading("w1", CGM, "glucose", T0 - 2 * 86400, 100.0)])
    agent.tick(T0 + 599)
    assert agent.last_prune is None
    agent.tick(T0 + 600)
    assert agent.last_prune is not None
    assert agent.last_prune.readings_by_age == 1
    assert agent.stats.pruned == 1
