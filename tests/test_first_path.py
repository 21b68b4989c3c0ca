"""The first path through every part, end to end against a real mosquitto broker:

simulated strap and CGM (sim bleak backend) -> production BLE link -> firmware_bridge codecs -> agent core ->
SQLite store -> rule alerts -> outbox -> MQTT QoS 1 -> an independent subscriber, checked field by field.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.daemon import run_daemon
from agent.store import Store
from sim.bleak_backend import sim_backends
from sim.feeds import build_world, story_feed
from sim.player import play
from sim.stories import WearerStory, glucose_trace, heart_trace
from tests.conftest import Broker

START = 1_760_000_000.0  # 2025-10-09T08:53:20Z
HOURS = 2.0


def story() -> WearerStory:
    rng = np.random.default_rng(3)
    # Glucose falls through 70 at ~0.5 h and through 54 at ~0.8 h, recovers by 1.5 h.
    glucose = glucose_trace(
        START, HOURS, [(0, 100), (0.5, 70), (0.8, 50), (1.0, 45), (1.3, 62), (1.6, 110), (2.0, 120)], rng
    )
    # Heart rate goes up to ~140 bpm between 1.0 and 1.3 h.
    heart = heart_trace(START, HOURS, [(0, 70), (0.95, 70), (1.0, 140), (1.3, 140), (1.35, 72), (2.0, 70)], rng)
    return WearerStory("w-test", heart, glucose, battery_pct=55)


class RawSubscriber:
    """A plain paho subscriber, independent of the agent's own watch code."""

    def __init__(self, broker: Broker) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="field-checker")
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe("vigil/#", qos=1), self.ready.set())
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.ready.wait(5)

    def _on_message(self, c: paho.Client, u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append(msg)

    def alerts(self) -> list[paho.MQTTMessage]:
        with self.lock:
            return [m for m in self.messages if "/alert/" in m.topic]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_alerts_reach_a_subscriber_with_every_field(mosquitto: Broker, tmp_path: Path) -> None:
    stories = [story()]
    world, devices = build_world(stories)
    cfg = parse_config(
        {
            "agent": {"id": "agent-t", "site": "ward-3", "db": str(tmp_path / "vigil.db")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "wearers": [
                {
                    "id": "w-test",
                    "devices": [
                        {"kind": "hr_strap", "address": devices[0].strap},
                        {"kind": "cgm", "name": "CGM-0"},
                    ],
                    "thresholds": {"hr_high": 120, "hr_sustain_s": 60},
                }
            ],
        }
    )
    sub = RawSubscriber(mosquitto)
    clock = VirtualClock(START)
    backends = sim_backends(world)

    async def scenario(agent: Agent) -> None:
        for _ in range(500):
            if sorted(agent.wearers["w-test"].links.values()) == ["connected", "connected"]:
                break
            await asyncio.sleep(0.01)
        await play(world, story_feed(stories, devices, START - 86400), clock, backpressure=agent.backpressure)
        while not agent.queue.empty():
            await asyncio.sleep(0.01)

    result = asyncio.run(
        run_daemon(cfg, clock=clock, scanner_backend=backends.scanner, client_backend=backends.client, until=scenario)
    )
    assert result.flushed
    assert result.agent.stats.dropped == 0
    assert result.agent.stats.rejected == 0
    for _ in range(200):
        if len(sub.alerts()) >= 6:
            break
        threading.Event().wait(0.02)
    sub.stop()

    msgs = sub.alerts()
    got = [(m.topic, json.loads(m.payload)) for m in msgs]
    kinds = [(p["kind"], p["state"]) for _, p in got if p["state"] != "ongoing"]
    assert kinds == [
        ("glucose_low", "raised"),
        ("glucose_urgent_low", "raised"),
        ("heart_tachycardia", "raised"),
        ("heart_tachycardia", "cleared"),
        ("glucose_urgent_low", "cleared"),
        ("glucose_low", "cleared"),
    ]
    ids = set()
    for msg, (topic, p) in zip(msgs, got, strict=True):
        assert msg.qos == 1
        assert not msg.retain
        assert topic == f"vigil/ward-3/w-test/alert/{p['kind']}"
        assert set(p) == {
            "schema",
            "id",
            "episode",
            "site",
            "agent",
            "wearer",
            "kind",
            "severity",
            "state",
            "time",
            "condition_since",
            "device",
            "acknowledged",
            "reason",
            "values",
            "thresholds",
            "source",
        }
        assert re.fullmatch(r"[0-9a-f]{32}", p["id"])
        assert p["id"] not in ids
        ids.add(p["id"])
        assert (p["site"], p["agent"], p["wearer"], p["schema"]) == ("ward-3", "agent-t", "w-test", 1)
        t = datetime.fromisoformat(p["time"].replace("Z", "+00:00")).timestamp()
        assert START <= t <= START + HOURS * 3600 + 60
        assert p["source"] == {"type": "rule"}
        assert p["reason"]
    # The urgent low lasts about half an hour unacknowledged: it is announced again every 15 minutes.
    ongoing = [p for _, p in got if p["state"] == "ongoing"]
    assert [p["kind"] for p in ongoing] == ["glucose_urgent_low"] * len(ongoing)
    assert len(ongoing) >= 1
    assert all(p["reason"].startswith("still urgent low glucose") for p in ongoing)
    assert all(p["acknowledged"] is None and p["device"] is None for _, p in got)
    by = {(p["kind"], p["state"]): p for _, p in got}
    assert {p["episode"] for p in ongoing} == {by[("glucose_urgent_low", "raised")]["episode"]}
    low = by[("glucose_low", "raised")]
    assert low["severity"] == "warning"
    assert low["values"]["glucose_mg_dl"] < 70
    assert low["thresholds"] == {"glucose_low": 70.0, "glucose_hysteresis": 5.0}
    assert f"{low['values']['glucose_mg_dl']:g} mg/dL is below the threshold of 70 mg/dL" in low["reason"]
    urgent = by[("glucose_urgent_low", "raised")]
    assert urgent["severity"] == "urgent"
    assert urgent["values"]["glucose_mg_dl"] < 54
    assert by[("glucose_low", "cleared")]["episode"] == low["episode"]
    assert by[("glucose_low", "cleared")]["values"]["glucose_mg_dl"] >= 75
    tachy = by[("heart_tachycardia", "raised")]
    assert tachy["values"]["hr_bpm"] > 120
    assert tachy["thresholds"] == {"hr_high": 120.0, "hr_hysteresis": 5.0, "hr_sustain_s": 60.0}
    since = datetime.fromisoformat(tachy["condition_since"].replace("Z", "+00:00")).timestamp()
    raised_at = datetime.fromisoformat(tachy["time"].replace("Z", "+00:00")).timestamp()
    assert 60 <= raised_at - since <= 62
    # Tachycardia starts ~1.0 h in; the raise comes a sustained minute later.
    assert START + 3600 <= raised_at <= START + 1.1 * 3600

    # What was published is what was stored, and the outbox is empty.
    store = Store(tmp_path / "vigil.db")
    stored = {a.id: a.payload for a in store.alerts()}
    assert stored == {p["id"]: p for _, p in got}
    assert store.outbox_depth() == 0
    counts = store.count_readings()
    assert counts["hr"] >= HOURS * 3600 - 5
    assert counts["glucose"] == int(HOURS * 12) + 1
    assert counts["battery"] == 2
    store.close()
