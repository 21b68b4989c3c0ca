"""The agent as a process of its own, for the kill test: ``python -m tests.agent.reliability.agent_proc``.

It builds the simulated world as it is at ``--start`` (each CGM holding the records it measured before), runs
the production daemon (``agent.daemon.run_daemon``) against the broker with the simulator's bleak backend, and
plays the scenario from ``--start`` to ``--end`` at ``--speed`` times real time. On stdout, line by line:
``ready`` once every link is connected, ``t <virtual time>`` every ``--every`` virtual seconds of the feed, and
``done flushed=<True|False>`` after a clean stop. The test kills it with SIGKILL somewhere in between.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from agent.clock import VirtualClock
from agent.core import Agent
from agent.daemon import run_daemon
from sim.bleak_backend import sim_backends
from sim.player import FeedEvent, play
from tests.agent.reliability.support import KILL, build_world, config, drained, feed, wait_connected


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def progress(events: Iterable[FeedEvent], every: float) -> Iterator[FeedEvent]:
    due = -1.0
    for event in events:
        if event.t >= due:
            say(f"t {event.t:.0f}")
            due = event.t + every
        yield event


async def main(port: int, db: Path, start: float, end: float, speed: float, every: float) -> bool:
    world, devices = build_world(KILL, start)
    cfg = config(KILL, db, port, devices)
    clock = VirtualClock(start)
    backends = sim_backends(world)

    async def scenario(agent: Agent) -> None:
        await wait_connected(agent, devices)
        say("ready")
        events = progress(feed(KILL, devices, start, end), every)
        await play(world, events, clock, speed=speed, backpressure=agent.backpressure)
        await drained(agent)

    result = await run_daemon(
        cfg, clock=clock, scanner_backend=backends.scanner, client_backend=backends.client, until=scenario
    )
    return result.flushed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--start", type=float, required=True)
    parser.add_argument("--end", type=float, required=True)
    parser.add_argument("--speed", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    flushed = asyncio.run(main(args.port, args.db, args.start, args.end, args.speed, args.every))
    say(f"done flushed={flushed}")
