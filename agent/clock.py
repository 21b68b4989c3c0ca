"""Where the agent gets the time from.

The daemon uses the wall clock. A replay drives a :class:`VirtualClock` forward as it plays a scenario, so the
agent's code path is the same at real time and at a thousand times real time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class VirtualClock:
    """A clock that only moves when told to, and never backwards."""

    def __init__(self, start: float) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> None:
        if t > self._now:
            self._now = t


async def sleep_to_next(period_s: float) -> None:
    """Sleep until the next whole multiple of ``period_s`` on the event loop's clock.

    The agent's periodic tasks (the alert ticker, the MQTT keep-alive, the systemd status line) use it so that
    they wake at the same instants: one wake-up of the process each second instead of one per task, each at its
    own phase. On a small board every wake-up costs more than the little work these tasks do.
    """
    loop = asyncio.get_running_loop()
    await asyncio.sleep(period_s - loop.time() % period_s)
