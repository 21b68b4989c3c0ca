"""The daemon: wires the BLE links, the core, the store and the publisher together and runs them until told
to stop. ``vigil run`` calls :func:`run_daemon` with the wall clock and bleak's platform backends; a replay
calls it with a virtual clock and the simulator's backends, so both run the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agent import __version__, systemd
from agent.ble import DeviceLink
from agent.clock import Clock, SystemClock, sleep_to_next
from agent.config import Config
from agent.core import Agent
from agent.errors import StoreError
from agent.mqtt import Publisher, status_payload
from agent.store import Store
from agent.topics import command_filter, status_topic

log = logging.getLogger("vigil.daemon")

STATUS_EVERY_S = 30.0
# How often the line `systemctl status` shows is refreshed (sent only when it changed).
SYSTEMD_STATUS_EVERY_S = 2.0
# Intake waiting this long with nothing taken by the core counts as a stuck core for the watchdog.
INTAKE_STALL_S = 20.0


@dataclass
class RunResult:
    agent: Agent
    publisher: Publisher
    flushed: bool


def _db_bytes(agent: Agent) -> int | None:
    try:
        return agent.store.used_bytes()
    except StoreError:
        return None


def _status(agent: Agent, pub: Publisher, started: float) -> bytes:
    links = {w: dict(ws.links) for w, ws in agent.wearers.items()}
    return status_payload(
        "online",
        agent=agent.cfg.agent.id,
        version=__version__,
        uptime_s=round(time.monotonic() - started, 1),
        outbox_depth=agent.store.outbox_depth(),
        intake_depth=agent.queue.qsize(),
        dropped=agent.stats.dropped,
        rejected=agent.stats.rejected,
        broker_error=pub.last_error,
        refused=pub.refused,
        refused_topics=pub.refused_topics,
        storage=agent.storage_state(),
        unsaved_readings=agent.unsaved_readings,
        lost_readings=agent.stats.lost_readings,
        db_bytes=_db_bytes(agent),
        pruned_total=agent.stats.pruned,
        last_prune=dataclasses.asdict(agent.last_prune) if agent.last_prune else None,
        models=[{**m.describe(), "state": "loaded"} for m in agent.models]
        + [{**p.describe(), "state": "refused"} for p in agent.model_problems],
        links=links,
    )


def resume_cgm_session(link: DeviceLink, store: Store) -> None:
    """Hand a CGM link the session its device's newest stored record belongs to, so that after a restart the
    time line (and with it every record's name in the store) goes on instead of being derived afresh."""
    if link.device.kind == "cgm" and (session := store.cgm_session(link.wearer, link.label)) is not None:
        link.timeline.resume(*session)  # the first live record says whether that session goes on


async def run_daemon(
    cfg: Config,
    *,
    clock: Clock | None = None,
    scanner_backend: Any = None,
    client_backend: Any = None,
    until: Callable[[Agent], Awaitable[None]] | None = None,
    flush_timeout: float = 10.0,
    install_signal_handlers: bool = False,
    on_ready: Callable[[Agent, Publisher], None] | None = None,
) -> RunResult:
    """Run the agent until ``until(agent)`` returns, or SIGTERM/SIGINT when ``install_signal_handlers``.

    On the way out: the intake is drained into the store, the outbox flushed to the broker (bounded by
    ``flush_timeout``), and the retained status set to offline.
    """
    clock = clock or SystemClock()
    store = Store(cfg.agent.db)
    topic = status_topic(cfg.mqtt.root, cfg.agent.site, cfg.agent.id)
    # The will tells subscribers the agent vanished; a clean stop says it was stopped.
    will = status_payload("offline", agent=cfg.agent.id, reason="connection lost")
    offline = status_payload("offline", agent=cfg.agent.id, reason="stopped")
    publisher = Publisher(
        cfg.mqtt,
        store,
        client_id=cfg.mqtt.client_id or f"vigil-{cfg.agent.id}",
        status_topic=topic,
        offline_payload=will,
        subscriptions=[command_filter(cfg.mqtt.root, cfg.agent.site, w.id) for w in cfg.wearers],
    )
    agent = Agent(cfg, store, clock=clock, on_outbox=publisher.wake)
    publisher.on_message = agent.command
    agent.on_volatile = publisher.publish_volatile
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if install_signal_handlers:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

    async def heartbeat() -> None:
        """The retained status: at every connect, when the broker refuses something, and every 30 s."""
        shown: tuple[object, ...] = ()
        last = 0.0
        while True:
            now = time.monotonic()
            news = (
                publisher.connects,
                publisher.refused,
                publisher.last_error,
                len(publisher.refused_topics),
                agent.storage_error,
                agent.last_prune,
            )
            if publisher.connected and (news != shown or now - last >= STATUS_EVERY_S):
                publisher.publish_direct(topic, _status(agent, publisher, started), retain=True)
                shown, last = news, now
            await asyncio.sleep(0.2)

    core = asyncio.create_task(agent.process(), name="core")
    ticker = asyncio.create_task(agent.ticker(), name="ticker")
    services = [
        asyncio.create_task(publisher.run(), name="publisher"),
        asyncio.create_task(heartbeat(), name="heartbeat"),
        ticker,
    ]
    # One adapter: BlueZ copes badly with several connections being set up at once, so links take turns.
    connect_lock = asyncio.Lock()
    links = []
    for wearer in cfg.wearers:
        for device in wearer.devices:
            link = DeviceLink(
                wearer.id,
                device,
                agent.accept,
                clock,
                scanner_backend=scanner_backend,
                client_backend=client_backend,
                on_state=agent.link_state,
                connect_lock=connect_lock,
            )
            resume_cgm_session(link, store)
            links.append(asyncio.create_task(link.run(), name=f"link:{wearer.id}:{device.label}"))
    # Ready for systemd once the store is open and the publisher and the links are started, not when the
    # broker answers: without one the agent still watches and buffers.
    sd_tasks = _start_systemd(agent, publisher, health_check(agent, [core, ticker]))
    if on_ready is not None:
        on_ready(agent, publisher)

    async def wait_until() -> None:
        if until is not None:
            await until(agent)
        else:
            await stop.wait()

    waiter = asyncio.create_task(wait_until(), name="until")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait(
            [waiter, stopper, core, *services, *links, *sd_tasks], return_when=asyncio.FIRST_COMPLETED
        )
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
    finally:
        # No watchdog pings while stopping: systemd now times the stop with TimeoutStopSec= instead.
        for t in sd_tasks:
            t.cancel()
        systemd.stopping()
        systemd.status("stopping: writing the intake, flushing the outbox")
        # Stop the links first so nothing new arrives, then drain, flush and say goodbye.
        for t in links:
            t.cancel()
        await asyncio.gather(*links, return_exceptions=True)
        core.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await core
        await agent.drain()
        publisher.wake()
        flushed = await publisher.flush(flush_timeout)
        if not flushed:
            log.warning(
                "stopping with %d message(s) still in the outbox; they go out at the next start",
                store.outbox_depth(),
            )
        await publisher.close(offline)
        for t in (*services, waiter, stopper):
            t.cancel()
        await asyncio.gather(*services, *sd_tasks, waiter, stopper, return_exceptions=True)
        store.close()
    return RunResult(agent=agent, publisher=publisher, flushed=flushed)


def status_line(agent: Agent, pub: Publisher) -> str:
    """The line `systemctl status` shows: broker, links, outbox."""
    states = [state for ws in agent.wearers.values() for state in ws.links.values()]
    devices = sum(len(w.devices) for w in agent.cfg.wearers)
    broker = "broker connected" if pub.connected else f"broker not connected ({pub.last_error or 'connecting'})"
    line = f"{broker}, {states.count('connected')}/{devices} links connected, outbox {agent.store.outbox_depth()}"
    if agent.stats.dropped:
        line += f", {agent.stats.dropped} notifications dropped"
    return line


def health_check(
    agent: Agent,
    tasks: Sequence[asyncio.Task[Any]],
    *,
    stall_s: float = INTAKE_STALL_S,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], str | None]:
    """For the watchdog: None while ``tasks`` (the core, the ticker) run and the core keeps taking from the intake;
    else why not. A blocked event loop needs no check: the watchdog runs on it and stops pinging by itself."""
    taken, since = agent.stats.accepted - agent.queue.qsize(), clock()

    def check() -> str | None:
        nonlocal taken, since
        for t in tasks:
            if t.done():
                return f"task {t.get_name()} has stopped"
        now, now_taken = clock(), agent.stats.accepted - agent.queue.qsize()
        if now_taken != taken or agent.queue.empty():
            taken, since = now_taken, now
        elif now - since > stall_s:
            return f"the core has taken nothing from the intake for {now - since:.0f} s ({agent.queue.qsize()} waiting)"
        return None

    return check


def _start_systemd(agent: Agent, pub: Publisher, check: Callable[[], str | None]) -> list[asyncio.Task[None]]:
    """READY=1, then STATUS= lines and, under WatchdogSec=, the watchdog; nothing outside systemd."""
    if not systemd.under_systemd():
        return []
    systemd.ready()

    async def show_status() -> None:
        shown = ""
        while True:
            line = status_line(agent, pub)
            if line != shown:
                systemd.status(line)
                shown = line
            await sleep_to_next(SYSTEMD_STATUS_EVERY_S)

    tasks = [asyncio.create_task(show_status(), name="systemd-status")]
    interval = systemd.watchdog_interval()
    if interval is not None:
        tasks.append(asyncio.create_task(systemd.watchdog(interval, check), name="watchdog"))
    return tasks
