"""Silent sensors, lost links and low batteries become alerts, through the agent's core."""

from __future__ import annotations

from pathlib import Path

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.messages import RawNotification
from agent.store import Store

T0 = 1_700_000_000.0
STRAP = "AA:00:00:00:00:01"
CGM = "AA:00:00:00:00:02"


def agent(tmp_path: Path) -> tuple[Agent, VirtualClock]:
    cfg = parse_config(
        {
            "alerts": {"disconnected_after_s": 300},
            "wearers": [
                {
                    "id": "w1",
                    "devices": [{"kind": "hr_strap", "address": STRAP}, {"kind": "cgm", "address": CGM}],
                    "thresholds": {"strap_stale_s": 120, "cgm_stale_s": 900, "battery_low_pct": 20},
                }
            ],
        }
    )
    clock = VirtualClock(T0)
    return Agent(cfg, Store(tmp_path / "v.db"), clock=clock), clock


def hr(t: float) -> RawNotification:
    return RawNotification("w1", STRAP, "2A37", bytes([0x06, 60]), t)


def kinds(a: Agent) -> list[tuple[str, str, str | None]]:
    return [(x.kind, x.state, x.payload["device"]) for x in a.store.alerts()]


def test_silent_strap_raises_stale_and_clears_when_it_speaks(tmp_path: Path) -> None:
    a, clock = agent(tmp_path)
    a.link_state("w1", STRAP, "connected")
    a.link_state("w1", CGM, "connected")
    a.handle([hr(T0 + 1)])
    clock.advance_to(T0 + 100)
    a.tick(clock.now())
    assert kinds(a) == []
    clock.advance_to(T0 + 122)
    a.tick(clock.now())
    assert kinds(a) == [("sensor_stale", "raised", STRAP)]
    stale = a.store.alerts()[0].payload
    assert stale["values"]["device_kind"] == "hr_strap"
    assert stale["thresholds"] == {"stale_limit_s": 120.0}
    assert "no data from the heart-rate strap" in stale["reason"]
    a.tick(T0 + 200)
    assert len(kinds(a)) == 1  # raised once, not on every tick
    a.handle([hr(T0 + 201)])
    assert kinds(a)[-1] == ("sensor_stale", "cleared", STRAP)


def test_link_down_too_long_raises_disconnected(tmp_path: Path) -> None:
    a, clock = agent(tmp_path)
    a.link_state("w1", STRAP, "connected")
    a.link_state("w1", CGM, "connected")
    clock.advance_to(T0 + 10)
    a.link_state("w1", STRAP, "reconnecting")
    a.handle([hr(T0 + 11)])  # keep the strap from going stale for this test
    a.tick(T0 + 300)
    assert ("sensor_disconnected", "raised", STRAP) not in kinds(a)
    a.tick(T0 + 311)
    assert ("sensor_disconnected", "raised", STRAP) in kinds(a)
    clock.advance_to(T0 + 400)
    a.link_state("w1", STRAP, "connected")
    a.tick(T0 + 400)
    assert kinds(a)[-1] == ("sensor_disconnected", "cleared", STRAP)


def test_low_battery_with_hysteresis(tmp_path: Path) -> None:
    a, _ = agent(tmp_path)
    for t, pct in [(1, 30), (2, 19), (3, 18), (4, 22), (5, 19), (6, 26)]:
        a.handle([RawNotification("w1", CGM, "2A19", bytes([pct]), T0 + t)])
    assert [(k, s) for k, s, _ in kinds(a)] == [("sensor_battery_low", "raised"), ("sensor_battery_low", "cleared")]
    raised = a.store.alerts()[0].payload
    assert raised["values"]["battery_pct"] == 19
    assert raised["device"] == CGM


def test_cgm_that_supports_the_crc_must_send_it(tmp_path: Path) -> None:
    """After the CGM Feature read at connect says E2E-CRC is supported, a record without a CRC is rejected."""
    from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
    from firmware_bridge.cgm_feature import (
        CgmFeature,
        CgmFeatureFlags,
        CgmSampleLocation,
        CgmType,
        encode_cgm_feature,
    )
    from firmware_bridge.sfloat import SFloat

    a, _ = agent(tmp_path)
    without = encode_cgm_measurement([CgmMeasurementRecord(glucose=SFloat.from_value(100), time_offset_min=5)])
    with_crc = encode_cgm_measurement(
        [CgmMeasurementRecord(glucose=SFloat.from_value(101), time_offset_min=10, has_crc=True)]
    )
    a.handle([RawNotification("w1", CGM, "2AA7", without, T0)])  # no Feature read yet: accepted
    feature = CgmFeature(CgmFeatureFlags.E2E_CRC_SUPPORTED, CgmType(1), CgmSampleLocation(1))
    a.handle([RawNotification("w1", CGM, "2AA8", encode_cgm_feature(feature), T0 + 1)])
    a.handle([RawNotification("w1", CGM, "2AA7", without, T0 + 300)])
    a.handle([RawNotification("w1", CGM, "2AA7", with_crc, T0 + 600)])
    assert a.stats.rejected == 1
    assert a.store.count_readings() == {"glucose": 2}


def test_restart_resumes_acknowledged_episode_from_the_store(tmp_path: Path) -> None:
    from agent.clock import VirtualClock as Clock

    cfg_db = tmp_path
    a, _ = agent(cfg_db)
    a.link_state("w1", CGM, "connected")
    low = RawNotification("w1", CGM, "2AA7", bytes([0x06, 0x00, 50, 0x00, 5, 0]), T0)
    a.handle([low])
    episode = next(x.episode for x in a.store.alerts() if x.kind == "glucose_urgent_low")
    a.command("vigil/home/w1/cmd/ack", b'{"episode": "%s", "by": "nurse"}' % episode.encode())
    a.store.close()
    b = Agent(a.cfg, Store(tmp_path / "v.db"), clock=Clock(T0 + 3600))
    b.link_state("w1", CGM, "connected")
    b.handle([RawNotification("w1", CGM, "2AA7", bytes([0x06, 0x00, 50, 0x00, 10, 0]), T0 + 3600)])
    # Acknowledged before the restart: no "ongoing" repeats after it, and no second raise.
    after = [x for x in b.store.alerts() if x.t > T0 + 1 and x.kind == "glucose_urgent_low"]
    assert after == []


def test_ticker_waits_while_notifications_are_queued(tmp_path: Path) -> None:
    """A backlog is not silence: the periodic check does not run ahead of queued data."""
    import asyncio

    import agent.core as core

    a, clock = agent(tmp_path)
    a.link_state("w1", STRAP, "connected")
    a.link_state("w1", CGM, "connected")
    a.handle([hr(T0)])

    async def run() -> None:
        a.accept(hr(T0 + 500))  # queued, not yet processed
        clock.advance_to(T0 + 500)
        ticker = asyncio.create_task(a.ticker())
        await asyncio.sleep(core.TICK_S * 1.5)
        ticker.cancel()

    asyncio.run(run())
    assert [k for k, _, d in kinds(a) if d == STRAP] == []
