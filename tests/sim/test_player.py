"""sim.player: time-ordered feeds played into a world on a virtual clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from bleak import BleakClient

from agent.clock import VirtualClock
from sim.bleak_backend import sim_backends
from sim.peripheral import SimError, SimWorld, heart_rate_strap
from sim.player import Disconnect, Event, FeedEvent, SetAdvertising, SetConnectable, SetValue, play

T = TypeVar("T")
STRAP = "C0:FF:EE:00:00:01"
T0 = 1_700_000_000.0


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 5.0))


def hr(bpm: int) -> bytes:
    return bytes([0x16, bpm, 0x00, 0x04])


class Listener:
    """A central subscribed to the strap's heart rate, noting the clock at each notification."""

    def __init__(self, world: SimWorld, clock: VirtualClock) -> None:
        self.world = world
        self.clock = clock
        self.got: list[tuple[float, bytes]] = []
        self.drops: list[float] = []
        self.client: BleakClient | None = None

    async def connect(self) -> None:
        self.client = BleakClient(
            STRAP, lambda _c: self.drops.append(self.clock.now()), backend=sim_backends(self.world).client
        )
        await self.client.connect()
        await self.client.start_notify("2A37", lambda _c, data: self.got.append((self.clock.now(), bytes(data))))


def test_each_event_fires_at_its_time_on_the_virtual_clock() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0 - 10)
        listener = Listener(world, clock)
        await listener.connect()
        feed = [FeedEvent(T0 + i * 0.8, STRAP, "2A37", hr(60 + i)) for i in range(5)]
        stats = await play(world, feed, clock)
        assert listener.got == [(e.t, e.data) for e in feed]
        assert clock.now() == feed[-1].t
        assert (stats.delivered, stats.dropped, stats.controls, stats.events) == (5, 0, 0, 5)

    run(main())


def test_128_bit_uuids_and_ill_formed_payloads_are_played_as_given() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0)
        listener = Listener(world, clock)
        await listener.connect()
        feed = [
            FeedEvent(T0 + 1, STRAP, "00002a37-0000-1000-8000-00805f9b34fb", hr(70)),
            FeedEvent(T0 + 2, STRAP, "2a37", b"\x10"),  # RR flag with no RR bytes: truncated
        ]
        await play(world, feed, clock)
        assert [d for _, d in listener.got] == [hr(70), b"\x10"]

    run(main())


def test_control_events_and_drop_counts() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        strap = world[STRAP]
        clock = VirtualClock(T0)
        listener = Listener(world, clock)
        await listener.connect()
        feed: list[Event] = [
            FeedEvent(T0 + 1, STRAP, "2A37", hr(70)),
            SetValue(T0 + 2, STRAP, "2A19", b"\x2a"),
            Disconnect(T0 + 3, STRAP),
            FeedEvent(T0 + 4, STRAP, "2A37", hr(71)),  # nobody is connected: dropped
            SetAdvertising(T0 + 5, STRAP, False),
            SetConnectable(T0 + 6, STRAP, False),
        ]
        stats = await play(world, feed, clock)
        assert listener.drops == [T0 + 3]
        assert listener.got == [(T0 + 1, hr(70))]
        assert strap.characteristic("2A19").value == b"\x2a"
        assert not strap.advertising
        assert not strap.connectable
        assert (stats.delivered, stats.dropped, stats.controls) == (1, 1, 4)
        assert strap.stats.notifications_dropped == 1

    run(main())


def test_feeds_are_consumed_lazily() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0)
        pulled: list[int] = []

        def feed() -> Iterator[FeedEvent]:
            for i in range(3):
                pulled.append(i)
                yield FeedEvent(T0 + i, STRAP, "2A37", hr(60))

        stats = await play(world, feed(), clock)
        assert pulled == [0, 1, 2]
        assert stats.dropped == 3

    run(main())


@pytest.mark.parametrize(
    ("feed", "problem"),
    [
        ([FeedEvent(T0 + 2, STRAP, "2A37", b""), FeedEvent(T0 + 1, STRAP, "2A37", b"")], "earlier"),
        ([FeedEvent(T0, "00:00:00:00:00:00", "2A37", b"")], "no peripheral"),
        ([FeedEvent(T0, STRAP, "2AA7", b"")], "no characteristic"),
        ([FeedEvent(T0, STRAP, "2A38", b"")], "neither notify nor indicate"),
    ],
)
def test_bad_feeds_are_refused(feed: list[Event], problem: str) -> None:
    world = SimWorld([heart_rate_strap(STRAP)])
    with pytest.raises(SimError, match=problem):
        run(play(world, feed, VirtualClock(T0)))


@pytest.mark.parametrize("speed", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_speeds_are_refused(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        run(play(SimWorld(), [], VirtualClock(T0), speed=speed))


def test_speed_keeps_wall_time_proportional() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0)
        loop = asyncio.get_running_loop()
        wall: list[float] = []
        client = BleakClient(STRAP, backend=sim_backends(world).client)
        await client.connect()
        await client.start_notify("2A37", lambda _c, _d: wall.append(loop.time()))
        feed = [FeedEvent(T0 + i, STRAP, "2A37", hr(60)) for i in range(5)]  # 4 s of feed
        await play(world, feed, clock, speed=50.0)  # 4 s / 50 = 80 ms
        gaps = [b - a for a, b in itertools.pairwise(wall)]
        assert len(gaps) == 4
        assert all(g >= 0.015 for g in gaps), gaps
        assert wall[-1] - wall[0] == pytest.approx(0.08, abs=0.04)

    run(main())


def test_backpressure_is_awaited_before_each_event() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0)
        listener = Listener(world, clock)
        await listener.connect()
        gate = asyncio.Event()
        calls: list[int] = []

        async def backpressure() -> None:
            calls.append(len(listener.got))
            await gate.wait()

        feed = [FeedEvent(T0 + i, STRAP, "2A37", hr(60 + i)) for i in range(3)]
        player = asyncio.create_task(play(world, feed, clock, backpressure=backpressure))
        for _ in range(20):
            await asyncio.sleep(0)
        assert listener.got == []  # held back
        assert calls == [0]
        gate.set()
        stats = await player
        assert stats.delivered == 3
        assert calls == [0, 1, 2]  # before each event, after the previous one was delivered

    run(main())


def test_max_speed_yields_to_the_loop_between_events() -> None:
    async def main() -> None:
        world = SimWorld([heart_rate_strap(STRAP)])
        clock = VirtualClock(T0)
        listener = Listener(world, clock)
        await listener.connect()
        seen_by_consumer: list[int] = []

        async def consumer() -> None:
            while True:
                seen_by_consumer.append(len(listener.got))
                await asyncio.sleep(0)

        task = asyncio.create_task(consumer())
        await play(world, [FeedEvent(T0 + i, STRAP, "2A37", hr(60)) for i in range(50)], clock)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # The consumer ran between events: it saw the count at (nearly) every step, not just 0 and 50.
        assert len(set(seen_by_consumer)) >= 45

    run(main())
