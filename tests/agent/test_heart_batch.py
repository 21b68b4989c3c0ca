"""``[agent] heart_batch_s``: a heart-rate notification waits for company before its batch is written; anything
else ends the wait at once; nothing waiting is lost when the agent stops; replays never wait."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agent.clock import VirtualClock
from agent.config import AgentConfig, Config, parse_config
from agent.core import Agent
from agent.errors import ConfigError
from agent.messages import RawNotification
from agent.store import Store
from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement
from firmware_bridge.sfloat import SFloat

STRAP = "AA:00:00:00:00:01"
CGM = "CC:00:00:00:00:01"


def config(heart_batch_s: float) -> Config:
    return parse_config(
        {
            "agent": {"heart_batch_s": heart_batch_s},
            "wearers": [
                {
                    "id": "w1",
                    "devices": [{"kind": "hr_strap", "address": STRAP}, {"kind": "cgm", "address": CGM}],
                }
            ],
        }
    )


def hr(t: float) -> RawNotification:
    data = encode_heart_rate_measurement(HeartRateMeasurement(70, sensor_contact=SensorContact.DETECTED))
    return RawNotification("w1", STRAP, "2A37", data, t)


def cgm(t: float, mg_dl: float = 110.0) -> RawNotification:
    record = CgmMeasurementRecord(glucose=SFloat.from_value(mg_dl), time_offset_min=1)
    return RawNotification("w1", CGM, "2AA7", encode_cgm_measurement([record]), t)


class Recorder:
    """Wraps ``Agent.handle``: when each batch was handled (monotonic) and what was in it."""

    def __init__(self, agent: Agent) -> None:
        self.batches: list[tuple[float, list[RawNotification]]] = []
        real = agent.handle

        def handle(batch: Any) -> None:
            notes = list(batch)
            self.batches.append((time.monotonic(), notes))
            real(notes)

        setattr(agent, "handle", handle)  # noqa: B010  (an instance attribute over the method)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "v.db"


def test_heart_rate_notifications_wait_for_company_but_never_longer_than_the_limit(db: Path) -> None:
    agent = Agent(config(0.5), Store(db))
    rec = Recorder(agent)
    accepted: dict[float, float] = {}  # received_at -> when it was accepted (monotonic)

    async def run() -> None:
        task = asyncio.create_task(agent.process())
        for i in range(12):
            note = hr(1_700_000_000.0 + i)
            accepted[note.received_at] = time.monotonic()
            agent.accept(note)
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.8)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    sizes = [len(notes) for _, notes in rec.batches]
    assert sum(sizes) == 12
    assert len(sizes) <= 4, sizes  # one at a time would be 12 batches
    for handled_at, notes in rec.batches:
        for note in notes:
            assert handled_at - accepted[note.received_at] <= 0.5 + 0.2, (sizes, note.received_at)
    assert agent.store.count_readings()["hr"] == 12
    agent.store.close()


def test_a_glucose_notification_ends_the_wait_at_once(db: Path) -> None:
    agent = Agent(config(2.0), Store(db))
    rec = Recorder(agent)

    async def run() -> float:
        task = asyncio.create_task(agent.process())
        agent.accept(hr(1_700_000_000.0))
        await asyncio.sleep(0.1)
        assert rec.batches == []  # the heart rate waits
        sent = time.monotonic()
        agent.accept(cgm(1_700_000_000.1))
        while not rec.batches and time.monotonic() - sent < 1.5:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return sent

    sent = asyncio.run(run())
    assert len(rec.batches) == 1
    handled_at, notes = rec.batches[0]
    assert [n.characteristic for n in notes] == ["2A37", "2AA7"]  # together, in order
    assert handled_at - sent < 0.5  # not the 2 s the heart rate could have waited
    counts = agent.store.count_readings()
    assert (counts["hr"], counts["glucose"]) == (1, 1)
    agent.store.close()


def test_stopping_while_a_batch_waits_writes_it(db: Path) -> None:
    agent = Agent(config(5.0), Store(db))

    async def run() -> None:
        task = asyncio.create_task(agent.process())
        agent.accept(hr(1_700_000_000.0))
        agent.accept(hr(1_700_000_001.0))
        await asyncio.sleep(0.1)  # the core has taken the first and waits
        assert agent.store.count_readings().get("hr", 0) == 0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await agent.drain()  # what the daemon does when stopping

    asyncio.run(run())
    assert agent.store.count_readings()["hr"] == 2
    agent.store.close()


def test_the_ticker_checks_as_of_the_oldest_waiting_notification(db: Path) -> None:
    """A strap whose notification waits is not silent: the once-a-second checks run at that notification's
    time, not at the clock's."""
    agent = Agent(config(2.5), Store(db))
    ticks: list[float] = []
    setattr(agent, "tick", ticks.append)  # noqa: B010
    stamped = time.time() - 10.0

    async def run() -> None:
        core = asyncio.create_task(agent.process())
        ticker = asyncio.create_task(agent.ticker())
        agent.accept(hr(stamped))
        await asyncio.sleep(1.6)  # at least one whole second passes while it waits (up to 2.5 s)
        for task in (core, ticker):
            task.cancel()
        await asyncio.gather(core, ticker, return_exceptions=True)

    asyncio.run(run())
    assert ticks, "the ticker did not run"
    assert all(t == stamped for t in ticks), ticks
    agent.store.close()


def test_replays_on_a_virtual_clock_never_wait(db: Path) -> None:
    agent = Agent(config(0.5), Store(db), clock=VirtualClock(1_700_000_000.0))
    assert agent.heart_batch_s == 0.0
    rec = Recorder(agent)

    async def run() -> None:
        task = asyncio.create_task(agent.process())
        agent.accept(hr(1_700_000_000.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert [len(notes) for _, notes in rec.batches] == [1]


def test_the_setting_is_checked() -> None:
    assert config(0).agent.heart_batch_s == 0.0
    assert AgentConfig().heart_batch_s == 0.5
    for bad in (-0.1, 5.5, True, "0.5"):
        with pytest.raises(ConfigError):
            config(bad)  # type: ignore[arg-type]
