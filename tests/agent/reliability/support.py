"""What the reliability tests share: the wearers' stories, the simulated world, the agent's configuration, an
independent subscriber, and the comparison of what the store holds with what the subscriber received.

The world is the simulator's: a chest strap (``sim.peripheral.heart_rate_strap``) and a CGM that keeps its
records and serves RACP backfill (``sim.cgm_device.CgmDevice``) per wearer, played into the production agent
through the simulator's bleak backend. Times are virtual (the player moves the agent's clock); the broker, the
SQLite files and the processes are real.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.config import Config, parse_config
from agent.core import Agent
from firmware_bridge.cgm import decode_cgm_measurement
from sim.cgm_device import CgmDevice
from sim.feeds import WearerDevices, glucose_notifications, story_feed
from sim.peripheral import SimWorld, heart_rate_strap
from sim.player import FeedEvent
from sim.stories import WearerStory, glucose_trace, heart_trace

# A night on a fixed date; on a five-minute boundary, so CGM records fall on whole minutes of their session.
START = datetime(2026, 2, 1, 22, 0, tzinfo=timezone.utc).timestamp()
SESSION = START - 86_400.0  # the CGM sensors were inserted a day earlier
SITE = "rel"
AGENT_ID = "rel-agent"
CONNECT_TIMEOUT_S = 30.0

Anchors = Sequence[tuple[float, float]]


@dataclass(frozen=True)
class Scenario:
    """Wearers over ``minutes`` of virtual time from :data:`START`, and the alert policy the agent runs with."""

    name: str
    minutes: float
    wearers: tuple[tuple[str, Anchors, Anchors], ...]  # (id, heart-rate anchors, glucose anchors), in minutes
    seed: int
    renotify_urgent_s: float = 300.0

    @property
    def end(self) -> float:
        return START + self.minutes * 60.0

    def stories(self) -> list[WearerStory]:
        rng = np.random.default_rng(self.seed)
        hours = self.minutes / 60.0
        out = []
        for wearer, heart, glucose in self.wearers:
            out.append(
                WearerStory(
                    wearer,
                    heart_trace(START, hours, _hours(heart), rng),
                    glucose_trace(START, hours, _hours(glucose), rng),
                    battery_pct=80,
                )
            )
        return out


def _hours(anchors: Anchors) -> list[tuple[float, float]]:
    return [(m / 60.0, v) for m, v in anchors]


# Three hours, two wearers: lows, an urgent low with re-announcements, highs, tachycardia and bradycardia, spread
# over the whole replay so that random kills land before, inside and after episodes.
KILL = Scenario(
    "kill",
    180.0,
    (
        (
            "w-ann",
            [(0, 65), (50, 65), (52, 132), (60, 132), (62, 70), (140, 70), (142, 36), (150, 36), (152, 62), (180, 64)],
            [(0, 150), (35, 66), (45, 50), (70, 48), (100, 120), (120, 190), (135, 262), (165, 170), (180, 150)],
        ),
        (
            "w-ben",
            [(0, 60), (25, 60), (27, 37), (35, 37), (37, 62), (95, 62), (97, 128), (105, 130), (107, 70), (180, 68)],
            [(0, 200), (15, 262), (40, 262), (60, 170), (90, 120), (110, 62), (125, 50), (140, 80), (180, 110)],
        ),
    ),
    seed=41,
)

# Ninety minutes at 60x: the broker is down from minute ~12 to ~72, when most of these alerts are raised.
OUTAGE = Scenario(
    "outage",
    90.0,
    (
        (
            "w-ann",
            [(0, 70), (5, 70), (6, 135), (9, 135), (10, 72), (38, 72), (40, 134), (48, 134), (50, 70), (90, 70)],
            [(0, 120), (10, 100), (20, 66), (28, 50), (35, 45), (55, 45), (68, 62), (80, 90), (90, 110)],
        ),
        (
            "w-ben",
            [(0, 60), (30, 60), (31, 36), (38, 36), (39, 60), (79, 60), (80, 130), (85, 130), (86, 64), (90, 64)],
            [(0, 170), (15, 200), (25, 262), (45, 262), (60, 160), (90, 150)],
        ),
    ),
    seed=42,
)

# One hour, one wearer. A tachycardia is raised at minute ~14, just before the disk fills (minute 15 to 40); while
# it is full the tachycardia clears, a low and an urgent low are raised and the urgent low is re-announced;
# everything clears after the space returns.
DISK = Scenario(
    "disk",
    60.0,
    (
        (
            "w-ann",
            [(0, 70), (12, 70), (13, 135), (20, 135), (21, 72), (60, 70)],
            [(0, 100), (8, 95), (18, 66), (26, 50), (36, 48), (44, 64), (52, 90), (60, 100)],
        ),
    ),
    seed=43,
)


def build_world(scenario: Scenario, start: float) -> tuple[SimWorld, list[WearerDevices]]:
    """The wearers' straps and CGMs as they are at ``start``: each CGM already holds every record it measured
    before ``start`` (a real sensor keeps them while the agent is down; the agent fetches them over RACP)."""
    world = SimWorld()
    devices = []
    for i, story in enumerate(scenario.stories()):
        strap, cgm = f"C0:FF:EE:00:{i:02X}:01", f"C0:FF:EE:00:{i:02X}:02"
        world.add(heart_rate_strap(strap, f"HRM-{i}", battery=story.battery_pct))
        device = CgmDevice(cgm, f"CGM-{i}", session_start=SESSION, battery=story.battery_pct, e2e_crc=True)
        assert story.glucose is not None
        for event in glucose_notifications(cgm, story.glucose, SESSION):
            if event.t < start:
                device.store(decode_cgm_measurement(event.data))
        world.add(device)
        devices.append(WearerDevices(story.wearer, strap, cgm))
    return world, devices


def feed(scenario: Scenario, devices: Sequence[WearerDevices], start: float, end: float) -> Iterator[FeedEvent]:
    """Every notification of every wearer from ``start`` (inclusive) to ``end`` (exclusive), in time order."""
    for event in story_feed(scenario.stories(), devices, SESSION):
        if event.t >= end:
            return
        if event.t >= start:
            yield event


def config(scenario: Scenario, db: Path, port: int, devices: Sequence[WearerDevices]) -> Config:
    return parse_config(
        {
            "agent": {"id": AGENT_ID, "site": SITE, "db": str(db)},
            "mqtt": {"host": "127.0.0.1", "port": port},
            "alerts": {"renotify_urgent_s": scenario.renotify_urgent_s},
            "wearers": [
                {
                    "id": d.wearer,
                    "devices": [{"kind": "hr_strap", "address": d.strap}, {"kind": "cgm", "address": d.cgm}],
                }
                for d in devices
            ],
        }
    )


async def wait_connected(agent: Agent, devices: Sequence[WearerDevices]) -> None:
    """Until every strap and CGM is connected (a notification before that would reach nobody)."""
    links = [(d.wearer, a) for d in devices for a in (d.strap, d.cgm) if a]
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not all(agent.wearers[w].links.get(a) == "connected" for w, a in links):
        if time.monotonic() > deadline:
            raise AssertionError(f"links not connected: {[(w, agent.wearers[w].links.get(a)) for w, a in links]}")
        await asyncio.sleep(0.01)


async def drained(agent: Agent) -> None:
    while not agent.queue.empty():
        await asyncio.sleep(0.01)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# -- the caregiver's side ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: dict[str, Any]
    retain: bool
    at: float  # time.monotonic() on arrival


class Subscriber:
    """A plain paho subscriber to ``vigil/#``, independent of the agent's code: what a caregiver's app sees.

    ``persistent``: an MQTT 3.1.1 session that outlives the connection (clean_session false), so the broker
    keeps the subscription and queues QoS 1 messages while the subscriber is away. It reconnects by itself.
    """

    def __init__(self, host: str, port: int, *, client_id: str, persistent: bool = False) -> None:
        self.messages: list[Received] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connects = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("the subscriber could not subscribe")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connects += 1
        client.subscribe("vigil/#", qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"raw": bytes(msg.payload).decode(errors="replace")}
        with self.lock:
            self.messages.append(Received(msg.topic, payload, bool(msg.retain), time.monotonic()))

    def alerts(self) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if "/alert/" in m.topic]

    def statuses(self) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.topic == f"vigil/{SITE}/agent/{AGENT_ID}/status"]

    def alert_ids(self) -> set[str]:
        return {m.payload["id"] for m in self.alerts()}

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# -- the store's side -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredAlert:
    rowid: int
    id: str
    wearer: str
    kind: str
    state: str
    episode: str
    payload: dict[str, Any]


def stored_alerts(db: Path) -> list[StoredAlert]:
    """Every row of the alerts table in the order it was committed (which is the order it was queued to send)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT rowid, id, wearer, kind, state, episode, payload FROM alerts ORDER BY rowid")
        out = [StoredAlert(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]
    conn.close()
    return out


@dataclass
class Delivery:
    """What the subscriber received against what the store says was raised."""

    stored: int
    received: int
    unique: int
    missing: list[str] = field(default_factory=list)  # stored, never received
    unexpected: list[str] = field(default_factory=list)  # received, not in the store
    differing: list[str] = field(default_factory=list)  # an id received with another payload than stored

    @property
    def duplicates(self) -> int:
        return self.received - self.unique

    def line(self) -> str:
        return (
            f"alerts stored {self.stored}, messages received {self.received} ({self.unique} distinct ids, "
            f"{self.duplicates} duplicates), missing {len(self.missing)}, unexpected {len(self.unexpected)}"
        )


def delivery(stored: Sequence[StoredAlert], received: Sequence[Received]) -> Delivery:
    by_id = {a.id: a for a in stored}
    seen: set[str] = set()
    report = Delivery(stored=len(stored), received=len(received), unique=0)
    for m in received:
        alert_id = m.payload["id"]
        if alert_id not in by_id:
            report.unexpected.append(alert_id)
        elif m.payload != by_id[alert_id].payload and alert_id not in report.differing:
            report.differing.append(alert_id)
        seen.add(alert_id)
    report.unique = len(seen)
    report.missing = [a.id for a in stored if a.id not in seen]
    return report


def first_arrival_order(received: Sequence[Received]) -> dict[str, list[str]]:
    """Per wearer, the alert ids in the order they first arrived."""
    out: dict[str, list[str]] = {}
    seen: set[str] = set()
    for m in received:
        alert_id = m.payload["id"]
        if alert_id not in seen:
            seen.add(alert_id)
            out.setdefault(m.payload["wearer"], []).append(alert_id)
    return out


def stored_order(stored: Sequence[StoredAlert]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in stored:
        out.setdefault(a.wearer, []).append(a.id)
    return out


def episode_problems(stored: Sequence[StoredAlert]) -> list[str]:
    """Episodes that are not raised once, then ongoing, then cleared at most once; or a kind raised again for a
    wearer while an episode of it is open."""
    problems = []
    open_episode: dict[tuple[str, str], str] = {}
    states: dict[str, list[str]] = {}
    for a in stored:
        key = (a.wearer, a.kind + "@" + str(a.payload.get("device") or ""))
        states.setdefault(a.episode, []).append(a.state)
        if a.state == "raised":
            if key in open_episode:
                problems.append(f"{key} raised again ({a.episode}) while {open_episode[key]} is open")
            open_episode[key] = a.episode
        elif a.state == "cleared":
            open_episode.pop(key, None)
    for episode, seq in states.items():
        if seq[0] != "raised" or seq.count("raised") != 1 or seq.count("cleared") > 1 or "cleared" in seq[:-1]:
            problems.append(f"episode {episode}: {seq}")
    return problems
