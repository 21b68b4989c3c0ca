"""CGM backfill: the production DeviceLink, Agent and Store against a simulated CGMS sensor (sim.cgm_device).

The sensor measures every five minutes from ``SESSION``; the player moves the agent's virtual clock to each
measurement's time, so a record's true time is ``SESSION + 60 * time_offset`` and the store must hold exactly
that, once per record, however the records reached it (live, reported by RACP, or both).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent.ble import CgmNotification, CgmTimeline, DeviceLink, LinkPolicy
from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import STALE_FOR_ALERTS_S, Agent
from agent.daemon import resume_cgm_session
from agent.messages import RawNotification
from agent.store import Store
from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
from firmware_bridge.racp import RacpResponseCode
from firmware_bridge.sfloat import SFloat
from sim.bleak_backend import sim_backends
from sim.cgm_device import CgmDevice
from sim.peripheral import SimWorld
from sim.player import Disconnect, Event, SetAdvertising, play

T = TypeVar("T")
SESSION = 1_700_000_000.0  # the sensor's time offset 0
CGM = "C0:FF:EE:00:00:09"
FAST = LinkPolicy(scan_timeout=0.02, connect_timeout=0.5, gatt_timeout=0.5, racp_timeout=0.5, lost_after=3)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 10.0))


async def until(condition: Callable[[], bool], what: str, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)


def mg_dl(offset: int) -> float:
    """The reading the sensor takes at each time offset: distinct per record, so a misplaced one shows."""
    return 80.0 + offset % 97


def at(offset: int) -> float:
    return SESSION + 60.0 * offset


class Rig:
    """One wearer's CGM: the simulated sensor, the production link feeding the agent, and its store."""

    def __init__(
        self, tmp_path: Path, device: CgmDevice, policy: LinkPolicy = FAST, world: SimWorld | None = None
    ) -> None:
        self.device = device
        self.world = world or SimWorld([device])
        backends = sim_backends(self.world)
        self.clock = VirtualClock(SESSION)
        cfg = parse_config(
            {
                "agent": {"id": "a1", "site": "ward", "db": str(tmp_path / "vigil.db")},
                "mqtt": {"host": "localhost"},
                "wearers": [{"id": "w1", "devices": [{"kind": "cgm", "address": CGM}]}],
            }
        )
        self.store = Store(cfg.agent.db)
        self.agent = Agent(cfg, self.store)
        self.link = DeviceLink(
            "w1",
            cfg.wearers[0].devices[0],
            self.agent.accept,
            self.clock,
            scanner_backend=backends.scanner,
            client_backend=backends.client,
            on_state=self.agent.link_state,
            policy=policy,
            sleep=lambda _delay: asyncio.sleep(0),
            rand=lambda: 0.0,
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.link.run())
        await until(lambda: self.link.state == "connected", "connected")

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.wait({self.task})
        await self.agent.drain()
        self.store.close()

    async def play(self, events: Iterable[Event]) -> None:
        await play(self.world, events, self.clock)

    def measurements(self, offsets: Iterable[int]) -> list[Event]:
        return [self.device.measurement(at(m), mg_dl(m)) for m in offsets]

    async def settled(self, connections: int, requests: int) -> None:
        """Wait until the link made ``connections`` and ``requests`` reports, and owes nothing."""
        link = self.link
        await until(
            lambda: (
                link.stats.connections == connections
                and link.stats.backfill_requests == requests
                and link.timeline.pending_from is None
                and self.device.is_connected
            ),
            f"connection {connections} with {requests} backfill report(s) done",
        )
        await self.agent.drain()

    def glucose(self) -> list[tuple[int, float, float]]:
        """(time offset, t, mg/dL) of every glucose row, in time order."""
        rows = self.store.db.execute(
            "SELECT json_extract(extra, '$.time_offset_min'), t, value FROM readings WHERE kind = 'glucose' ORDER BY t"
        ).fetchall()
        return [(int(o), float(t), float(v)) for o, t, v in rows]


def expected(offsets: Iterable[int]) -> list[tuple[int, float, float]]:
    return [(m, at(m), mg_dl(m)) for m in offsets]


def test_a_drop_out_is_backfilled_every_record_once_at_its_time(tmp_path: Path) -> None:
    async def main() -> None:
        rig = Rig(tmp_path, CgmDevice(CGM, "CGM-9", session_start=SESSION))
        # Two hours measured before the agent ever connects: stored on the sensor only.
        await rig.play(rig.measurements(range(0, 120, 5)))
        await rig.start()
        assert rig.link.stats.backfill_requests == 0  # nothing anchors the time line yet
        # Live from offset 120: the first live record anchors the session and the link fetches the last 3 h.
        await rig.play(rig.measurements(range(120, 155, 5)))
        await rig.settled(connections=1, requests=1)
        assert rig.link.timeline.session_start == SESSION
        assert rig.glucose() == expected(range(0, 155, 5))

        # The wearer walks out of range at 150 min + 30 s; six readings are taken in the gap, the first one low.
        gap: list[Event] = [SetAdvertising(at(150) + 30, CGM, False), Disconnect(at(150) + 30, CGM)]
        gap += [rig.device.measurement(at(155), 50.0), *rig.measurements(range(160, 185, 5))]
        gap += [SetAdvertising(at(181), CGM, True)]
        await rig.play(gap)
        await rig.settled(connections=2, requests=2)
        assert rig.link.stats.backfilled >= 25 + 6
        await rig.play(rig.measurements(range(185, 200, 5)))
        await rig.agent.drain()
        want = expected(range(0, 200, 5))
        want[31] = (155, at(155), 50.0)
        assert rig.glucose() == want

        # A second drop-out with nothing measured in it: the report finds nothing, nothing is stored twice.
        await rig.play([Disconnect(at(197), CGM)])
        await rig.settled(connections=3, requests=3)
        assert rig.glucose() == want
        assert rig.link.stats.backfill_failures == 0
        assert rig.link.stats.sessions == 1
        assert rig.device.racp_requests[-1] == bytes.fromhex("010301c400")  # >= 196: one past the newest

        # The low at 155 min came back 26 min late: stored, but no alert about the present. A live low does alert.
        await rig.play([rig.device.measurement(at(200), 50.0)])
        await rig.agent.drain()
        raised = [a for a in rig.store.alerts() if a.kind.startswith("glucose") and a.state == "raised"]
        assert raised
        assert {a.t for a in raised} == {at(200)}
        await rig.stop()

    run(main())


@pytest.mark.parametrize("failure", ["procedure_not_completed", "silent"])
def test_a_failed_backfill_leaves_the_live_stream_and_is_retried_at_the_next_connection(
    tmp_path: Path, failure: str
) -> None:
    async def main() -> None:
        device = CgmDevice(CGM, "CGM-9", session_start=SESSION)
        if failure == "silent":
            device.racp_silent = True
        else:
            device.racp_failure = RacpResponseCode.PROCEDURE_NOT_COMPLETED
        policy = LinkPolicy(scan_timeout=0.02, connect_timeout=0.5, gatt_timeout=0.5, racp_timeout=0.05)
        rig = Rig(tmp_path, device, policy)
        await rig.play(rig.measurements(range(0, 60, 5)))
        await rig.start()
        await rig.play(rig.measurements(range(60, 75, 5)))
        await until(lambda: rig.link.stats.backfill_failures == policy.racp_attempts, "every attempt to fail")
        await rig.play(rig.measurements(range(75, 95, 5)))
        await rig.agent.drain()
        assert rig.link.state == "connected"
        assert rig.glucose() == expected(range(60, 95, 5))  # the live stream, at the right times
        assert rig.link.timeline.pending_from == 0  # still owed

        device.racp_failure, device.racp_silent = None, False
        await rig.play([Disconnect(at(95), CGM)])
        await rig.settled(connections=2, requests=policy.racp_attempts + 1)
        assert rig.glucose() == expected(range(0, 95, 5))
        await rig.stop()

    run(main())


def test_a_new_session_is_anchored_again(tmp_path: Path) -> None:
    async def main() -> None:
        device = CgmDevice(CGM, "CGM-9", session_start=SESSION)
        rig = Rig(tmp_path, device)
        await rig.start()
        await rig.play(rig.measurements(range(0, 30, 5)))
        await rig.settled(connections=1, requests=1)
        # The sensor is replaced: a new session starts 10 h later and counts from 0 again.
        device.start_session(SESSION + 36_000)
        await rig.play([device.measurement(SESSION + 36_000 + 60 * m, 90.0 + m) for m in (0, 5)])
        await rig.settled(connections=1, requests=2)
        assert rig.link.stats.sessions == 2
        assert rig.link.timeline.session_start == SESSION + 36_000
        times = [t for _, t, _ in rig.glucose()]
        assert times == [at(m) for m in range(0, 30, 5)] + [SESSION + 36_000, SESSION + 36_000 + 300]
        await rig.stop()

    run(main())


def test_after_an_agent_restart_the_session_goes_on_and_only_the_gap_is_fetched(tmp_path: Path) -> None:
    """On real hardware a record arrives some seconds after it was measured, and not always equally late: a
    restarted agent that derived its anchor afresh would name the same records differently and store what it
    fetched again a second time. The daemon resumes the stored session instead."""

    def late(offsets: Iterable[int], by: float, device: CgmDevice) -> list[Event]:
        return [device.measurement(at(m) + by, mg_dl(m)) for m in offsets]

    async def main() -> None:
        device = CgmDevice(CGM, "CGM-9", session_start=SESSION)
        first = Rig(tmp_path, device)
        await first.start()
        await first.play(late(range(0, 60, 5), 10.0, device))  # live, each 10 s after it was measured
        await first.settled(connections=1, requests=1)
        await first.stop()
        assert first.link.timeline.session_start == SESSION + 10.0
        # The agent is down for an hour; the sensor goes on measuring.
        second = Rig(tmp_path, device, world=first.world)
        await second.play(late(range(60, 120, 5), 10.0, device))
        resume_cgm_session(second.link, second.store)
        assert second.link.timeline.resumed
        await second.start()
        assert second.link.stats.backfill_requests == 0  # not before a live record says the session goes on
        await second.play(late([120, 125], 50.0, device))  # now 50 s late: an anchor 40 s off the stored one
        await second.settled(connections=1, requests=1)
        assert second.link.stats.sessions == 0  # no new session
        assert device.racp_requests[-1] == bytes.fromhex("0103013800")  # >= 56: one past the newest stored
        rows = second.glucose()
        assert [o for o, _, _ in rows] == list(range(0, 130, 5))  # every record once
        assert all(t == SESSION + 10.0 + 60.0 * o for o, t, _ in rows)  # all on the one time line
        await second.stop()

    run(main())


def test_after_an_agent_restart_a_new_sensor_starts_a_new_session(tmp_path: Path) -> None:
    async def main() -> None:
        device = CgmDevice(CGM, "CGM-9", session_start=SESSION)
        first = Rig(tmp_path, device)
        await first.start()
        await first.play(first.measurements(range(0, 300, 5)))
        await first.settled(connections=1, requests=1)
        await first.stop()
        # While the agent was down the sensor was replaced; the new one has run longer than the old one had.
        new_start = SESSION + 86_400.0
        device.start_session(new_start)
        second = Rig(tmp_path, device, world=first.world)
        await second.play([device.measurement(new_start + 60 * m, 150.0) for m in range(0, 400, 5)])
        resume_cgm_session(second.link, second.store)
        await second.start()
        await second.play([device.measurement(new_start + 60 * 400, 151.0)])
        await second.settled(connections=1, requests=1)
        assert second.link.stats.sessions == 1
        assert second.link.timeline.session_start == new_start
        rows = second.glucose()
        assert [(o, t) for o, t, _ in rows if t < new_start] == [(m, at(m)) for m in range(0, 300, 5)]
        new_rows = [(o, t) for o, t, _ in rows if t >= new_start]
        # The new session's last first_backfill_h (3 h) and the live record, each at its own time.
        assert new_rows == [(m, new_start + 60.0 * m) for m in range(220, 405, 5)]
        await second.stop()

    run(main())


def test_timeline_resumes_a_stored_session_or_starts_a_new_one() -> None:
    line = CgmTimeline(first_backfill_min=60, tolerance=180.0)
    line.resume(SESSION + 10.0, 55)
    line.connected()
    assert line.owed is None  # owed from 56, but not before a live record confirms the session
    assert not line.received([120], at(120) + 50.0, live=True)
    assert (line.session_start, line.newest, line.owed, line.resumed) == (SESSION + 10.0, 120, 56, False)

    other = CgmTimeline(first_backfill_min=60, tolerance=180.0)
    other.resume(SESSION, 55)
    other.connected()
    assert other.received([400], at(400) + 3600.0, live=True)  # a higher offset, but an hour off the time line
    assert (other.session_start, other.newest, other.owed) == (SESSION + 3600.0, 400, 340)


# -- the pieces, one at a time --------------------------------------------------------------------------------


def state(line: CgmTimeline) -> tuple[float | None, int | None, int | None]:
    return line.session_start, line.newest, line.pending_from


def test_timeline_owes_what_a_connection_missed() -> None:
    line = CgmTimeline(first_backfill_min=60, tolerance=180.0)
    line.connected()
    assert state(line) == (None, None, None)  # nothing known yet: nothing to ask for
    assert line.received([100], at(100), live=True)  # anchors, and owes the last hour
    assert state(line) == (SESSION, 100, 40)
    assert not line.received([40, 45], at(101), live=False)  # reported records do not move the anchor
    line.backfilled(40)
    assert state(line) == (SESSION, 100, None)
    assert not line.received([105], at(105) + 20, live=True)  # 20 s of latency: same session
    line.connected()
    assert state(line) == (SESSION, 105, 106)
    assert not line.received([120], at(120), live=True)  # live before the backfill ran: still owed from 106
    assert state(line) == (SESSION, 120, 106)
    line.backfilled(99)  # a report that is not the one owed changes nothing
    assert state(line) == (SESSION, 120, 106)


def test_timeline_sees_a_new_session() -> None:
    line = CgmTimeline(first_backfill_min=180, tolerance=180.0)
    line.received([500], at(500), live=True)
    assert not line.received([505], at(505) + 100, live=True)
    assert not line.received([510], at(530), live=True)  # 20 min late (queued by a stack): same session
    assert line.session_start == SESSION
    assert not line.received([508], at(508) + 30, live=True)  # lower offset, but on the time line
    assert line.received([3], at(600), live=True)  # counting from 0 again, 597 minutes later
    assert state(line) == (at(597), 3, 0)


def _note(offset: int, received_at: float, session_start: float | None, value: float = 100.0) -> RawNotification:
    data = encode_cgm_measurement([CgmMeasurementRecord(SFloat.from_value(value), offset)])
    if session_start is None:
        return RawNotification("w1", CGM, "2AA7", data, received_at)
    return CgmNotification("w1", CGM, "2AA7", data, received_at, session_start)


def test_core_stamps_records_on_the_session_time_line_and_the_store_keeps_each_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CgmDevice(CGM, session_start=SESSION))
    agent = rig.agent
    agent.handle([_note(10, at(10) + 2, SESSION)])  # live, 2 s late
    agent.handle([_note(5, at(30), SESSION), _note(10, at(30), SESSION)])  # backfilled; 10 again
    agent.handle([_note(7, at(31), SESSION + 0.5)])  # the anchor came out 0.5 s later: never after arrival...
    agent.handle([_note(12, at(12) + 1, SESSION + 59)])  # ...so this live one is stamped at its arrival
    agent.handle([_note(5, at(80), SESSION + 3600)])  # another session's offset 5: a different record
    agent.handle([_note(3, at(3) + 7, None), _note(3, at(3) + 7, None)])  # no session known: at arrival, as is
    assert rig.glucose() == [
        (3, at(3) + 7, 100.0),
        (3, at(3) + 7, 100.0),
        (5, at(5), 100.0),
        (7, at(7) + 0.5, 100.0),
        (10, at(10), 100.0),
        (12, at(12) + 1, 100.0),
        (5, at(5) + 3600, 100.0),
    ]
    rig.store.close()


def test_stale_backfilled_lows_do_not_alert(tmp_path: Path) -> None:
    rig = Rig(tmp_path, CgmDevice(CGM, session_start=SESSION))
    late = STALE_FOR_ALERTS_S + 60
    rig.agent.handle([_note(100, at(100) + late, SESSION, value=45.0)])
    assert not [a for a in rig.store.alerts() if a.kind.startswith("glucose")]
    rig.agent.handle([_note(101, at(101) + 5, SESSION, value=45.0)])
    assert [a.t for a in rig.store.alerts() if a.kind == "glucose_urgent_low"] == [at(101)]
    rig.store.close()
