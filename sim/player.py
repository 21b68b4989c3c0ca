"""Play a time-ordered feed of device events into a :class:`~sim.peripheral.SimWorld`.

Each event carries an epoch time ``t``. Before an event fires, the player moves the agent's
:class:`~agent.clock.VirtualClock` to ``t``, so whatever the event causes (a notification reaching the agent,
a link loss) happens at ``t`` on the agent's clock, whatever the replay speed.

``speed=N`` keeps wall time proportional to feed time: event *k* fires ``(t_k - t_0) / N`` wall seconds after
the first (scheduled from the start, so sleep overshoot does not accumulate; when the loop falls behind,
late events fire at once). ``speed=None`` plays as fast as the agent takes it: it awaits the optional
``backpressure()`` before each event (the agent passes one that waits while its intake queue is above a
watermark) and always yields to the event loop between events, so the consumer runs. ``backpressure`` is
awaited at any speed. ``before(event)``, if given, is awaited last, just before the clock moves to the event:
a replay uses it to keep the agent in step with the feed (see :mod:`sim.replay`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from agent.clock import VirtualClock
from sim.peripheral import SimError, SimWorld


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """The device at ``address`` notifies ``data`` on ``characteristic`` ("2A37" or 128-bit) at ``t``."""

    t: float
    address: str
    characteristic: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The link to the device drops at ``t`` (it keeps advertising unless also told to stop)."""

    t: float
    address: str


@dataclass(frozen=True, slots=True)
class SetAdvertising:
    """The device starts (``on``) or stops advertising at ``t``: it comes back into range, or leaves it."""

    t: float
    address: str
    on: bool


@dataclass(frozen=True, slots=True)
class SetConnectable:
    """The device starts or stops answering connection requests at ``t``."""

    t: float
    address: str
    on: bool


@dataclass(frozen=True, slots=True)
class SetValue:
    """A characteristic's read value changes at ``t`` (a battery level, say), without a notification."""

    t: float
    address: str
    characteristic: str
    data: bytes


Event = FeedEvent | Disconnect | SetAdvertising | SetConnectable | SetValue


@dataclass
class PlayStats:
    """What a play delivered: notifications received by a central, those dropped because no central had
    subscribed (not connected, or not yet subscribed), and control events applied."""

    delivered: int = 0
    dropped: int = 0
    controls: int = 0

    @property
    def events(self) -> int:
        return self.delivered + self.dropped + self.controls


async def play(
    world: SimWorld,
    events: Iterable[Event],
    clock: VirtualClock,
    *,
    speed: float | None = None,
    backpressure: Callable[[], Awaitable[None]] | None = None,
    before: Callable[[Event], Awaitable[None]] | None = None,
) -> PlayStats:
    """Play ``events`` (consumed lazily, so a long recording need not be in memory) into ``world``.

    Raises :class:`~sim.peripheral.SimError` if an event is earlier than the one before it, names an
    address that is not in the world, or a characteristic the device lacks or cannot notify on.
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"play: speed must be a positive number or None, got {speed}")
    loop = asyncio.get_running_loop()
    stats = PlayStats()
    start: tuple[float, float] | None = None  # (first event's t, loop time when it was due)
    last_t = -math.inf
    for index, event in enumerate(events):
        if event.t < last_t:
            raise SimError(f"event {index} at t={event.t} is earlier than the one before it (t={last_t})")
        last_t = event.t
        if speed is None:
            await asyncio.sleep(0)
        else:
            if start is None:
                start = (event.t, loop.time())
            due = start[1] + (event.t - start[0]) / speed
            await asyncio.sleep(max(0.0, due - loop.time()))
        if backpressure is not None:
            await backpressure()
        if before is not None:
            await before(event)
        clock.advance_to(event.t)
        await _fire(world, event, stats)
    return stats


async def _fire(world: SimWorld, event: Event, stats: PlayStats) -> None:
    peripheral = world[event.address]
    match event:
        case FeedEvent():
            if await peripheral.notify(event.characteristic, event.data):
                stats.delivered += 1
            else:
                stats.dropped += 1
            return
        case Disconnect():
            peripheral.disconnect()
        case SetAdvertising():
            peripheral.set_advertising(event.on)
        case SetConnectable():
            peripheral.set_connectable(event.on)
        case SetValue():
            peripheral.set_value(event.characteristic, event.data)
    stats.controls += 1
