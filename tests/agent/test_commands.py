"""Acknowledge and snooze over MQTT, against a real mosquitto and a running agent; malformed commands change
nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.daemon import run_daemon
from agent.messages import RawNotification
from agent.mqtt import Publisher, make_client
from sim.bleak_backend import sim_backends
from sim.peripheral import SimWorld
from tests.conftest import Broker

T0 = 1_700_000_000.0
CGM = "AA:00:00:00:00:02"
URGENT_LOW = bytes([0x06, 0x00, 0x32, 0x00, 0x05, 0x00])  # CGM record: 50 mg/dL at time offset 5 min


def test_ack_over_mqtt_and_with_vigil_ack(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "agent": {"id": "a1", "site": "ward", "db": str(tmp_path / "v.db")},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
            "alerts": {"renotify_urgent_s": 0},
            "wearers": [
                {"id": "w1", "devices": [{"kind": "cgm", "address": CGM}]},
                {"id": "w2", "devices": [{"kind": "cgm", "address": "AA:00:00:00:00:03"}]},
            ],
        }
    )
    clock = VirtualClock(T0)
    backends = sim_backends(SimWorld())
    rejected: list[str | None] = []
    outcome: dict[str, Any] = {}

    def on_ready(agent: Agent, publisher: Publisher) -> None:
        def spy(topic: str, payload: bytes) -> str | None:
            result = agent.command(topic, payload)
            rejected.append(result)
            return result

        publisher.on_message = spy

    async def scenario(agent: Agent) -> None:
        pub = await _connected(cfg)
        agent.accept(RawNotification("w1", CGM, "2AA7", URGENT_LOW, clock.now()))
        while len(agent.store.alerts()) < 2:
            await asyncio.sleep(0.01)
        urgent = next(a for a in agent.store.alerts() if a.kind == "glucose_urgent_low")
        before = len(agent.store.alerts())
        bad = [
            ("vigil/ward/w1/cmd/ack", b"{not json"),
            ("vigil/ward/w1/cmd/ack", json.dumps({"episode": "ffffffffff"}).encode()),
            ("vigil/ward/w1/cmd/ack", json.dumps({"episode": urgent.episode, "extra": 1}).encode()),
            ("vigil/ward/w1/cmd/reboot", b"{}"),
            ("vigil/ward/w2/cmd/ack", json.dumps({"episode": urgent.episode}).encode()),  # another wearer's topic
            ("vigil/ward/w1/cmd/snooze", json.dumps({"kind": "glucose_low", "minutes": "ten"}).encode()),
        ]
        for topic, payload in bad:
            pub.publish(topic, payload, qos=1)
        while len(rejected) < len(bad):
            await asyncio.sleep(0.01)
        assert all(r is not None for r in rejected), rejected
        assert len(agent.store.alerts()) == before  # nothing changed
        # A person acknowledges from a terminal, by the episode's first characters.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agent.cli", "ack", "--broker", f"{mosquitto.host}:{mosquitto.port}",
            "--site", "ward", "--wearer", "w1", "--episode", urgent.episode[:8], "--by", "night-nurse",
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        outcome["ack"] = (proc.returncode, out.decode(), err.decode())
        # And an app snoozes the low for 20 minutes over MQTT directly.
        pub.publish("vigil/ward/w1/cmd/snooze", json.dumps({"kind": "glucose_low", "minutes": 20, "by": "app"}), qos=1)
        while len(rejected) < len(bad) + 2:
            await asyncio.sleep(0.01)
        pub.loop_stop()
        pub.disconnect()

    asyncio.run(
        run_daemon(
            cfg,
            clock=clock,
            scanner_backend=backends.scanner,
            client_backend=backends.client,
            until=scenario,
            on_ready=on_ready,
        )
    )
    code, out, err = outcome["ack"]
    assert code == 0, err
    assert "ONGOING" in out
    assert "acknowledged by night-nurse" in out
    assert rejected[-2:] == [None, None]
    from agent.store import Store

    store = Store(tmp_path / "v.db")
    acks = [a.payload for a in store.alerts() if a.state == "ongoing"]
    assert [(p["kind"], p["acknowledged"]["by"]) for p in acks] == [
        ("glucose_urgent_low", "night-nurse"),
        ("glucose_low", "app"),
    ]
    assert acks[1]["acknowledged"]["snoozed_until"] > acks[1]["acknowledged"]["at"]
    store.close()


async def _connected(cfg: Any) -> Any:
    pub = make_client(cfg.mqtt, "test-commander")
    pub.connect(cfg.mqtt.host, cfg.mqtt.port)
    pub.loop_start()
    for _ in range(200):
        if pub.is_connected():
            break
        await asyncio.sleep(0.01)
    return pub
