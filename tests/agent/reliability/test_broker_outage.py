"""Broker outage: mosquitto stopped for 60 s (wall time) in the middle of a replay, then started again on the
same port. Every alert the agent raised is delivered, in order per wearer, none lost.

The replay runs at 60x real time, so the minute without a broker is an hour of the wearers' night, in which most
of the scenario's alerts are raised: they wait in the agent's SQLite outbox and go out after the reconnect.
The subscriber is a caregiver's app with a persistent session (MQTT clean_session false) on a broker with
persistence, so what the broker accepted before it stopped and what it receives while the app reconnects is
queued for it: the test is about the agent, not about a subscriber that happened to be away.

The publisher's reconnect backoff is capped at 5 s here instead of its default 60 s, so the test does not wait
up to a minute for the agent's next attempt after the broker is back (the backoff itself is unit-tested).
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import pytest

from agent.alerts import AlertEvent
from agent.backoff import backoff
from agent.clock import VirtualClock
from agent.core import Agent
from agent.daemon import run_daemon
from agent.mqtt import Publisher
from sim.bleak_backend import sim_backends
from sim.player import play
from tests.agent.reliability.support import (
    OUTAGE,
    START,
    Subscriber,
    build_world,
    config,
    delivery,
    drained,
    feed,
    first_arrival_order,
    stored_alerts,
    stored_order,
    wait_connected,
    wait_for,
)
from tests.conftest import start_mosquitto

pytestmark = [pytest.mark.reliability, pytest.mark.mqtt, pytest.mark.timeout(240)]

SPEED = 60.0
OUTAGE_AT = START + 12 * 60.0  # virtual time at which the broker is stopped
OUTAGE_S = 60.0  # wall seconds without a broker
RETRY_CAP_S = 5.0


def test_alerts_raised_while_the_broker_is_down_are_all_delivered_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wall0 = time.monotonic()
    broker = start_mosquitto(tmp_path, f"persistence true\npersistence_location {tmp_path}/\n")
    sub = Subscriber(broker.host, broker.port, client_id="caregiver", persistent=True)
    try:
        world, devices = build_world(OUTAGE, START)
        db = tmp_path / "vigil.db"
        clock = VirtualClock(START)
        backends = sim_backends(world)
        committed: list[tuple[float, AlertEvent]] = []  # (wall time, event) as each alert is committed
        marks: dict[str, float] = {}
        publishers: list[Publisher] = []

        def on_ready(agent: Agent, publisher: Publisher) -> None:
            publisher.retry_delay = functools.partial(backoff, cap=RETRY_CAP_S)
            publishers.append(publisher)
            agent.alert_listeners.append(lambda ev: committed.append((time.monotonic(), ev)))

        async def scenario(agent: Agent) -> None:
            await wait_connected(agent, devices)
            player = asyncio.create_task(play(world, feed(OUTAGE, devices, START, OUTAGE.end), clock, speed=SPEED))
            while clock.now() < OUTAGE_AT:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(broker.stop)
            marks["down"] = time.monotonic()
            await asyncio.sleep(OUTAGE_S)
            assert not publishers[0].connected
            await asyncio.to_thread(broker.start)
            marks["up"] = time.monotonic()
            while not publishers[0].connected:
                assert time.monotonic() - marks["up"] < 3 * RETRY_CAP_S, "the agent did not reconnect"
                await asyncio.sleep(0.05)
            marks["reconnected"] = time.monotonic()
            await player
            await drained(agent)

        result = asyncio.run(
            run_daemon(
                config(OUTAGE, db, broker.port, devices),
                clock=clock,
                scanner_backend=backends.scanner,
                client_backend=backends.client,
                until=scenario,
                on_ready=on_ready,
                flush_timeout=30.0,
            )
        )
        assert result.flushed
        assert result.agent.stats.dropped == 0
        stored = stored_alerts(db)
        wait_for(lambda: {a.id for a in stored} <= sub.alert_ids(), 15.0, "every stored alert at the subscriber")
        received = sub.alerts()
    finally:
        sub.stop()
        broker.stop()

    report = delivery(stored, received)
    assert report.missing == []
    assert report.unexpected == []
    assert report.differing == []
    assert first_arrival_order(received) == stored_order(stored)
    # The outage really was in the middle of things: alerts were raised before it, while the agent had no
    # broker (from the stop until its reconnect) and after.
    during = [ev for t, ev in committed if marks["down"] <= t < marks["reconnected"]]
    before = [ev for t, ev in committed if t < marks["down"]]
    after = [ev for t, ev in committed if t >= marks["reconnected"]]
    assert len(before) >= 1
    assert len(during) >= 10
    assert len(after) >= 1
    assert len(committed) == len(stored)
    arrival: dict[str, float] = {}
    for m in received:
        arrival.setdefault(m.payload["id"], m.at)
    waited = max(arrival[ev.id] - marks["up"] for ev in during)
    assert result.publisher.connects >= 2
    with capsys.disabled():
        print(
            f"\n[reliability/outage] broker down {marks['up'] - marks['down']:.1f} s (wall), agent reconnected "
            f"{marks['reconnected'] - marks['up']:.1f} s after it was back;"
            "\n  alerts raised before/without a broker/after: "
            f"{len(before)}/{len(during)}/{len(after)}; the last raised during the outage arrived {waited:.1f} s "
            f"after the broker was back\n  {report.line()}, order per wearer kept; "
            f"wall {time.monotonic() - wall0:.1f} s"
        )
