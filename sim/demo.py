"""``vigil demo``: a night of two simulated wearers through the whole agent, on one machine, with no hardware.

The wearers' straps and CGMs are virtual peripherals behind the simulator's bleak backend, so the agent's own
BLE link code connects to them, reads them and subscribes exactly as it would over BlueZ. An embedded amqtt
broker listens on a free loopback port; a subscriber prints each alert as it arrives; the agent's clock is a
virtual clock the player moves forward, so eight hours of night pass in about a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from agent.clock import VirtualClock
from agent.config import Config, parse_config
from agent.core import Agent
from agent.daemon import run_daemon
from agent.errors import AgentError
from agent.watch import Watcher, format_alert
from sim.bleak_backend import sim_backends
from sim.feeds import WearerDevices, build_world, story_feed
from sim.player import PlayStats, play
from sim.stories import demo_night

# The night starts at 22:00 UTC on a fixed date, so every run of the same seed tells the same story.
DEMO_START = datetime(2026, 1, 15, 22, 0, tzinfo=timezone.utc).timestamp()
SESSION_START = DEMO_START - 3 * 86400.0  # the CGM sensor was inserted three days earlier
CONNECT_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_broker(port: int) -> Any:
    """An amqtt broker on 127.0.0.1:port for the length of the block (anonymous, loopback only)."""
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise AgentError("the demo's embedded broker needs the 'demo' extra: pip install 'vigil[demo]'") from exc
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()


def demo_config(db: Path, port: int, devices: list[WearerDevices]) -> Config:
    wearers = []
    for d in devices:
        devs = []
        if d.strap:
            devs.append({"kind": "hr_strap", "address": d.strap})
        if d.cgm:
            devs.append({"kind": "cgm", "address": d.cgm})
        wearers.append({"id": d.wearer, "devices": devs})
    return parse_config(
        {
            "agent": {"id": "demo-agent", "site": "demo", "db": str(db)},
            # amqtt speaks MQTT 3.1.1 only.
            "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "3.1.1"},
            "wearers": wearers,
        }
    )


def _fresh_db(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    db = out / "vigil.db"
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(db) + suffix)
        if p.exists():
            p.unlink()
    return db


def _expected_links(devices: list[WearerDevices]) -> Iterator[tuple[str, str]]:
    for d in devices:
        for addr in (d.strap, d.cgm):
            if addr:
                yield d.wearer, addr


def run_demo(
    *, out: Path, hours: float = 8.0, speed: float | None = 600.0, seed: int = 7, stream: TextIO = sys.stdout
) -> int:
    """Run the demo and print alerts and a summary to ``stream``. Returns the process exit code."""
    if not 0 < hours <= 24:
        raise AgentError(f"--hours must be more than 0 and at most 24, got {hours}")
    for name in ("amqtt", "transitions", "vigil", "agent", "sim"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return asyncio.run(_demo(out, hours, speed, seed, stream))


async def _demo(out: Path, hours: float, speed: float | None, seed: int, stream: TextIO) -> int:
    wall0 = time.monotonic()
    db = _fresh_db(out)
    stories = demo_night(DEMO_START, hours, seed)
    world, devices = build_world(stories)
    port = _free_port()
    cfg = demo_config(db, port, devices)
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            stream.write(line + "\n")
            stream.flush()

    pace = "as fast as possible" if speed is None else f"at {speed:g}x real time"
    say(f"Vigil demo: {len(stories)} simulated wearers, {hours:g} hours of night {pace}.")
    say(f"Embedded MQTT broker on 127.0.0.1:{port}; alerts appear below as the subscriber receives them.\n")

    async with embedded_broker(port):
        watcher = Watcher(cfg.mqtt, lambda topic, payload: say(format_alert(payload)), client_id="vigil-demo-watch")
        await asyncio.to_thread(watcher.start)
        if not await asyncio.to_thread(watcher.subscribed.wait, 10.0):
            raise AgentError("the demo's subscriber could not subscribe to the embedded broker")
        clock = VirtualClock(DEMO_START)
        backends = sim_backends(world)
        played: list[PlayStats] = []

        async def scenario(agent: Agent) -> None:
            await _wait_connected(agent, list(_expected_links(devices)))
            feed = story_feed(stories, devices, SESSION_START)
            played.append(await play(world, feed, clock, speed=speed, backpressure=agent.backpressure))
            while not agent.queue.empty():
                await asyncio.sleep(0.01)

        result = await run_daemon(
            cfg, clock=clock, scanner_backend=backends.scanner, client_backend=backends.client, until=scenario
        )
        sent = sum(result.agent.stats.alerts.values())
        deadline = time.monotonic() + 10.0
        while watcher.received < sent and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(watcher.stop)

    wall = time.monotonic() - wall0
    stats = result.agent.stats
    raised = Counter(k.split(":")[0] for k, n in stats.alerts.items() for _ in range(n) if k.endswith(":raised"))
    cleared = sum(n for k, n in stats.alerts.items() if k.endswith(":cleared"))
    readings = sum(stats.readings.values())
    say("")
    say(f"Demo finished: {hours:g} simulated hours in {wall:.1f} s.")
    say(f"  notifications: {stats.accepted} accepted, {stats.dropped} dropped, {stats.rejected} rejected by the codecs")
    say(f"  readings stored: {readings} (" + ", ".join(f"{k} {v}" for k, v in sorted(stats.readings.items())) + ")")
    say(
        f"  alerts raised: {sum(raised.values())} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(raised.items()))
        + f"); cleared: {cleared}"
    )
    say(
        f"  alert messages received by the subscriber: {watcher.received} of {sent}, "
        f"{watcher.duplicates} duplicates dropped"
    )
    say(f"  outbox flushed to the broker: {'yes' if result.flushed else 'NO'}")
    say(f"  database: {db.resolve()}")
    ok = result.flushed and watcher.received == sent and played and stats.dropped == 0
    return 0 if ok else 1


async def _wait_connected(agent: Agent, links: list[tuple[str, str]]) -> None:
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(agent.wearers[w].links.get(addr) == "connected" for w, addr in links):
            return
        await asyncio.sleep(0.02)
    missing = [f"{w}/{a}" for w, a in links if agent.wearers[w].links.get(a) != "connected"]
    raise AgentError(f"demo: simulated devices did not connect within {CONNECT_TIMEOUT_S:.0f} s: {missing}")
