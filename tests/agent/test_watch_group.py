"""Scaling out consumers: alerts from several agents shared by a group of subscribers (MQTT shared
subscriptions, ``$share/GROUP/...``) on a real mosquitto; ``vigil watch --group`` joins such a group."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.config import MqttConfig
from agent.errors import ConfigError
from agent.messages import RawNotification
from agent.watch import Watcher, shared_filter
from sim.bench_live import bench_config, cgm_address, cgm_payload, serving
from tests.conftest import Broker

VIGIL = [sys.executable, "-m", "agent.cli"]


def test_shared_filter_names_the_group() -> None:
    assert shared_filter("ops", "vigil/+/+/alert/+") == "$share/ops/vigil/+/+/alert/+"
    w = Watcher(MqttConfig(), lambda t, p: None, site="home", group="night-shift")
    assert w.topic == "$share/night-shift/vigil/home/+/alert/+"
    assert Watcher(MqttConfig(), lambda t, p: None).topic == "vigil/+/+/alert/+"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", " ops"])
def test_group_names_that_cannot_be_a_topic_level_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        shared_filter(bad, "vigil/+/+/alert/+")
    assert err.value.key == "--group"


def test_watchers_started_together_get_distinct_client_ids() -> None:
    ids = {Watcher(MqttConfig(), lambda t, p: None, group="g").client._client_id for _ in range(20)}
    assert len(ids) == 20


async def _two_agents_raise_alerts(tmp_path: Path, port: int, rounds: int) -> int:
    """Two agents (sites north and south, two wearers each) through the real core, store and publisher:
    every wearer's glucose alternates between urgent low and in range ``rounds`` times. Returns the number of
    alert messages the agents' publishers had acknowledged by the broker."""
    cfgs = [
        bench_config(tmp_path / f"{site}.db", port, 2, agent_id=f"agent-{site}", site=site)
        for site in ("north", "south")
    ]
    async with serving(cfgs[0]) as (north, pub_n, _), serving(cfgs[1]) as (south, pub_s, _):
        sent: Counter[str] = Counter()
        for agent in (north, south):
            agent.alert_listeners.append(lambda ev: sent.update([ev.id]))
        for k in range(rounds):
            for agent in (north, south):
                for i, wearer in enumerate(agent.wearers):
                    value = 45.0 if k % 2 == 0 else 140.0
                    agent.accept(RawNotification(wearer, cgm_address(i), "2AA7", cgm_payload(value, k), time.time()))
            await asyncio.sleep(0.05)
        while not (north.queue.empty() and south.queue.empty()):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert await pub_n.flush(10.0)
        assert await pub_s.flush(10.0)
        assert all(n == 1 for n in sent.values())
        return len(sent)


class Collector:
    def __init__(self, cfg: MqttConfig, group: str | None) -> None:
        self.ids: list[str] = []
        self.topics: list[str] = []
        self.lock = threading.Lock()
        self.watcher = Watcher(cfg, self._on, group=group)
        self.watcher.start()
        assert self.watcher.subscribed.wait(5)

    def _on(self, topic: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.ids.append(str(payload["id"]))
            self.topics.append(topic)


@pytest.mark.mqtt
def test_each_alert_of_several_agents_goes_to_exactly_one_member_of_a_group(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port)
    members = [Collector(cfg, "ops") for _ in range(3)]
    everyone = Collector(cfg, None)  # outside the group: gets every alert
    other_group = Collector(cfg, "audit")  # a second group: gets every alert too, once
    try:
        sent = asyncio.run(_two_agents_raise_alerts(tmp_path, mosquitto.port, rounds=6))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (
            sum(len(m.ids) for m in members) < sent or len(everyone.ids) < sent or len(other_group.ids) < sent
        ):
            time.sleep(0.05)
    finally:
        for c in (*members, everyone, other_group):
            c.watcher.stop()
    assert sent >= 12  # 2 agents x 2 wearers x 3 raises, and the clears
    shared = [i for m in members for i in m.ids]
    assert len(shared) == sent
    assert len(set(shared)) == sent  # no alert went to two members
    assert set(shared) == set(everyone.ids) == set(other_group.ids)
    assert len(everyone.ids) == len(other_group.ids) == sent
    assert sum(1 for m in members if m.ids) >= 2  # the broker spread them over the group
    assert {t.split("/")[1] for m in members for t in m.topics} == {"north", "south"}


@pytest.mark.mqtt
def test_vigil_watch_group_members_share_the_alerts_of_two_agents(mosquitto: Broker, tmp_path: Path) -> None:
    broker = f"{mosquitto.host}:{mosquitto.port}"
    procs = [
        subprocess.Popen(
            [*VIGIL, "watch", "--broker", broker, "--group", "caregivers", "--json", "--timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    lines: list[list[dict[str, Any]]] = [[], []]

    def read(i: int) -> None:
        out = procs[i].stdout
        assert out is not None
        for line in out:
            lines[i].append(json.loads(line))

    try:
        for proc in procs:  # each says so once its subscription is in place
            assert proc.stderr is not None
            assert proc.stderr.readline().startswith("vigil watch: subscribed to $share/caregivers/vigil/+/+/alert/+")
        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(2)]
        for r in readers:
            r.start()
        sent = asyncio.run(_two_agents_raise_alerts(tmp_path, mosquitto.port, rounds=4))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(len(x) for x in lines) < sent:
            time.sleep(0.05)
    finally:
        for proc in procs:
            proc.terminate()
            proc.communicate(timeout=10)
    got = [p["id"] for member in lines for p in member]
    assert len(got) == sent
    assert len(set(got)) == sent
    assert all(member for member in lines)  # both members had a share
    assert {p["site"] for member in lines for p in member} == {"north", "south"}
