"""The intake waits ``BATCH_LINGER_S`` for company only while notifications come faster than that: a burst is
written in few durable transactions, a wearer in real time without a wait (and its wake-up) per notification."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import agent.core as core
from agent.config import parse_config
from agent.core import ARRIVAL_GAP_MAX_S, BATCH_LINGER_S, Agent
from agent.messages import RawNotification
from agent.store import Store
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement

T0 = 1_700_000_000.0
STRAP = "AA:00:00:00:00:01"


def hr(bpm: int, t: float) -> RawNotification:
    data = encode_heart_rate_measurement(HeartRateMeasurement(bpm, sensor_contact=SensorContact.DETECTED))
    return RawNotification("w1", STRAP, "2A37", data, t)


@pytest.fixture
def agent(tmp_path: Path) -> Agent:
    # heart_batch_s 0: the linger alone (tests/agent/test_heart_batch.py covers heart-rate notifications waiting).
    cfg = parse_config(
        {"agent": {"heart_batch_s": 0}, "wearers": [{"id": "w1", "devices": [{"kind": "hr_strap", "address": STRAP}]}]}
    )
    return Agent(cfg, Store(tmp_path / "v.db"))


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_company_is_expected_while_notifications_come_faster_than_the_linger(agent: Agent) -> None:
    clock = FakeMonotonic()
    agent.monotonic = clock

    def burst(n: int, gap_s: float = 0.001) -> list[bool]:
        flags = []
        for _ in range(n):
            clock.now += gap_s
            agent.accept(hr(70, T0))
            flags.append(agent.company_expected())
        return flags

    assert not agent.company_expected()  # nothing heard yet
    # A burst from the start (the worst case: the mean starts at ARRIVAL_GAP_MAX_S) is recognised within 17
    # notifications, as the docstring says; the first note's gap is the silence before it.
    flags = burst(20)
    assert flags.index(True) == 17
    assert all(flags[17:])
    assert ARRIVAL_GAP_MAX_S * 0.75**17 < BATCH_LINGER_S <= ARRIVAL_GAP_MAX_S * 0.75**16
    # Ten wearers' straps in real time, one every 100 ms: no waiting.
    assert not any(burst(50, 0.1)[10:])
    # A burst after them, 1 ms apart: under 10 ms after 8 notes from a 100 ms mean.
    flags = burst(20)
    assert flags.index(True) == 8
    assert all(flags[8:])
    # An hour of silence counts as ARRIVAL_GAP_MAX_S: the next note finds no company expected.
    clock.now += 3600.0
    agent.accept(hr(70, T0))
    assert not agent.company_expected()
    assert burst(20).index(True) <= 17


async def _run(agent: Agent, gaps_s: list[float], monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], int]:
    """Feed one notification per gap through ``Agent.process``; the batch sizes it handled, and how often it
    waited for company."""
    sizes: list[int] = []
    lingered = 0
    real_handle, real_sleep = agent.handle, asyncio.sleep

    def handle(batch: Any) -> None:
        notes = list(batch)
        sizes.append(len(notes))
        real_handle(notes)

    async def sleep(delay: float, *args: Any) -> Any:
        nonlocal lingered
        if delay == BATCH_LINGER_S:
            lingered += 1
        return await real_sleep(delay, *args)

    monkeypatch.setattr(agent, "handle", handle)
    monkeypatch.setattr(core.asyncio, "sleep", sleep)
    task = asyncio.create_task(agent.process())
    for i, gap in enumerate(gaps_s):
        agent.accept(hr(70, T0 + i))
        await real_sleep(gap)
    while not agent.queue.empty():
        await real_sleep(0.01)
    await real_sleep(3 * BATCH_LINGER_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return sizes, lingered


def test_sparse_notifications_are_handled_without_waiting(agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes, lingered = asyncio.run(_run(agent, [0.05] * 8, monkeypatch))
    assert lingered == 0
    assert sizes == [1] * 8
    assert sum(agent.store.count_readings().values()) == 8


def test_a_burst_waits_for_company_and_is_written_in_fewer_transactions(
    agent: Agent, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes, lingered = asyncio.run(_run(agent, [0.0005] * 60, monkeypatch))
    assert lingered >= 1
    assert sum(sizes) == 60
    assert len(sizes) < 30
    assert sum(agent.store.count_readings().values()) == 60
