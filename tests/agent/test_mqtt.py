"""The publisher against a real mosquitto: QoS 1 delivery from the outbox, ack-before-delete, buffering while
the broker is away, retained status with an offline will."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from agent.config import MqttConfig
from agent.mqtt import Publisher, make_client, status_payload
from agent.store import PRIORITY_ALERT, Store
from agent.watch import Watcher
from tests.conftest import Broker, free_port, start_mosquitto


class Collector:
    def __init__(self, cfg: MqttConfig) -> None:
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.watcher = Watcher(cfg, self._on)
        self.watcher.start()
        assert self.watcher.subscribed.wait(5)

    def _on(self, topic: str, payload: dict[str, Any]) -> None:
        with self.lock:
            self.got.append(payload)

    def ids(self) -> list[str]:
        with self.lock:
            return [p["id"] for p in self.got]


def queue_alerts(store: Store, n: int, start: int = 0) -> None:
    rows = [
        (PRIORITY_ALERT, "vigil/home/w1/alert/glucose_low", json.dumps({"id": f"a{i}"}).encode(), 1, False)
        for i in range(start, start + n)
    ]
    store.write_batch(outbox=rows)


async def wait_for(cond: Any, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if cond():
            return True
        await asyncio.sleep(0.02)
    return bool(cond())


def test_outbox_is_delivered_in_order_and_removed_only_after_ack(mosquitto: Broker, tmp_path: Path) -> None:
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, inflight=5)
    store = Store(tmp_path / "v.db")
    queue_alerts(store, 50)
    sub = Collector(cfg)

    async def main() -> None:
        pub = Publisher(
            cfg,
            store,
            client_id="agent-t",
            status_topic="vigil/home/agent/t/status",
            offline_payload=status_payload("offline"),
        )
        task = asyncio.create_task(pub.run())
        assert await pub.flush(10)
        assert pub.acked == 50
        queue_alerts(store, 10, start=50)
        pub.wake()
        assert await pub.flush(10)
        await pub.close(status_payload("offline"))
        task.cancel()

    asyncio.run(main())
    assert asyncio.run(wait_for(lambda: len(sub.ids()) == 60))
    sub.watcher.stop()
    assert sub.ids() == [f"a{i}" for i in range(60)]
    assert store.outbox_depth() == 0


@pytest.mark.mqtt
def test_broker_away_agent_buffers_then_delivers(tmp_path: Path) -> None:
    port = free_port()
    cfg = MqttConfig(host="127.0.0.1", port=port)
    store = Store(tmp_path / "v.db")
    queue_alerts(store, 5)

    async def main() -> None:
        pub = Publisher(
            cfg,
            store,
            client_id="agent-t",
            status_topic="vigil/home/agent/t/status",
            offline_payload=status_payload("offline"),
            retry_delay=lambda attempt: 0.2,
        )
        task = asyncio.create_task(pub.run())
        assert await wait_for(lambda: pub.last_error is not None, 5)
        assert not pub.connected
        assert "cannot connect" in (pub.last_error or "")
        assert store.outbox_depth() == 5  # nothing lost while the broker is away
        broker = await asyncio.to_thread(_start_on, tmp_path, port)
        try:
            sub = await asyncio.to_thread(Collector, cfg)
            assert await pub.flush(10)
            assert await wait_for(lambda: len(sub.ids()) == 5)
            assert sub.ids() == [f"a{i}" for i in range(5)]
            await pub.close(status_payload("offline"))
            sub.watcher.stop()
        finally:
            task.cancel()
            broker.stop()

    asyncio.run(main())


def _start_on(tmp: Path, port: int) -> Broker:
    return start_mosquitto(tmp, port=port)


def test_status_online_then_offline_will_on_crash(mosquitto: Broker, tmp_path: Path) -> None:
    """A clean close publishes offline; a dropped connection leaves the broker to publish the will."""
    cfg = MqttConfig(host=mosquitto.host, port=mosquitto.port, keepalive_s=5)
    topic = "vigil/home/agent/t/status"
    seen: list[dict[str, Any]] = []
    got = threading.Event()
    watcher = make_client(cfg, "status-watch")

    def on_message(c: paho.Client, u: Any, m: paho.MQTTMessage) -> None:
        seen.append(json.loads(m.payload))
        got.set()

    watcher.on_message = on_message
    watcher.connect(cfg.host, cfg.port)
    watcher.subscribe(topic, qos=1)
    watcher.loop_start()
    store = Store(tmp_path / "v.db")

    async def main() -> None:
        pub = Publisher(
            cfg,
            store,
            client_id="agent-t",
            status_topic=topic,
            offline_payload=status_payload("offline", agent="t"),
        )
        task = asyncio.create_task(pub.run())
        assert await wait_for(lambda: pub.connected)
        pub.publish_direct(topic, status_payload("online", agent="t"), retain=True)
        assert await wait_for(lambda: any(s["state"] == "online" for s in seen))
        # Simulate a crash: the socket goes away without a DISCONNECT packet.
        sock = pub.client.socket()
        assert sock is not None
        sock.close()  # type: ignore[union-attr]
        task.cancel()

    asyncio.run(main())
    assert asyncio.run(wait_for(lambda: seen and seen[-1]["state"] == "offline", 15))
    watcher.loop_stop()
    watcher.disconnect()
    assert seen[-1] == {"state": "offline", "agent": "t"}
