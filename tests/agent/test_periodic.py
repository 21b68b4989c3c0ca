"""``sleep_to_next``: the agent's periodic tasks wake on shared instants (whole multiples of their period on the
event loop's clock), so that they cost one wake-up of the process, not one each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import agent.clock as clock_module
from agent.clock import sleep_to_next


def test_it_sleeps_to_the_next_whole_multiple(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[float, float]] = []

    async def fake_sleep(delay: float, *args: Any) -> None:
        asked.append((asyncio.get_running_loop().time(), delay))

    monkeypatch.setattr(clock_module.asyncio, "sleep", fake_sleep)

    async def main() -> None:
        for period in (1.0, 2.0, 0.25, 1.0):
            await sleep_to_next(period)

    asyncio.run(main())
    for (now, delay), period in zip(asked, (1.0, 2.0, 0.25, 1.0), strict=True):
        assert 0.0 < delay <= period
        wake = now + delay
        assert abs(wake / period - round(wake / period)) * period < 1e-3


def test_tasks_with_different_phases_wake_together() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        woke: list[float] = []

        async def task(offset: float) -> None:
            await asyncio.sleep(offset)
            await sleep_to_next(0.2)
            woke.append(loop.time())

        await sleep_to_next(0.2)  # start just after a boundary, so that all three fall before the next one
        await asyncio.gather(task(0.01), task(0.05), task(0.09))
        return woke

    woke = asyncio.run(main())
    # the three started at different phases; they woke at the same multiple of 0.2 s (the same loop pass)
    assert max(woke) - min(woke) < 0.05
