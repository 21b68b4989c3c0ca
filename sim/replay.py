"""``vigil replay``: a scenario or a recording through the whole agent, at any speed, into a database that
``vigil score`` and ``vigil report`` read.

The devices are virtual peripherals behind the simulator's bleak backend, so the agent's production BLE link,
decoding, store, alert engine and MQTT publisher run unchanged (:func:`agent.daemon.run_daemon`), on a
:class:`~agent.clock.VirtualClock` the player moves to each event's time. Alerts go to a broker: an embedded
amqtt on a free loopback port by default (the ``demo`` extra), any broker with ``--broker``, or none
(``--broker none``: they stay in the database's outbox); a subscriber prints them as they arrive and keeps
what the wearers' retained state topics say (forecasts, rhythm) for the report.

Keeping the agent in step with the feed, whatever the speed (:class:`Pacer`):

* The agent's own once-a-second checks (silent sensors, lost links, re-announcements) run on wall time and
  read the virtual clock. At maximum speed the clock runs ahead of the notifications still in the agent's
  intake, and a check would find a sensor "silent" whose data is merely queued. The replay therefore lets
  those checks run only while the intake is empty, and runs them itself, at the exact virtual times they
  become due (a device silent for longer than its limit, a link down longer than ``disconnected_after_s``),
  after the agent has taken everything played before that time. (The agent's ticker could skip a tick while
  its intake holds notifications by itself; until it does, the replay does it.)
* A link loss and a reconnection take no scenario time: after a device drops its link, the feed waits until
  the agent has noticed; after a device comes back into range, the feed waits until the agent has connected
  and subscribed again. A CGM's missed readings then come by RACP backfill, as on a real sensor.

So the same scenario gives the same alerts at 1x and at maximum speed, to within the agent's batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from agent.clock import VirtualClock
from agent.config import Config
from agent.core import BATCH_LINGER_S, Agent
from agent.daemon import run_daemon
from agent.errors import AgentError
from agent.topics import state_topic
from agent.watch import Watcher, format_alert
from sim import truth as truth_db
from sim.bleak_backend import sim_backends
from sim.peripheral import SimWorld
from sim.player import Disconnect, Event, FeedEvent, PlayStats, SetAdvertising, play
from sim.truth import TruthEvent

CONNECT_TIMEOUT_S = 30.0
LINK_WAIT_S = 90.0  # a reconnection waits out the link's backoff (at most 60 s)
_STATE_BASICS = frozenset({"wearer", "time", "heart", "glucose", "links", "alerts_active", "battery_pct"})

log = logging.getLogger("vigil.sim.replay")


class ReplayError(AgentError):
    """A replay could not be set up or run; ``problem`` says why."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(f"replay: {problem}")


@dataclass
class Playable:
    """Anything a replay can play: virtual devices, their time-ordered events, who wears what, and truth."""

    name: str
    kind: str  # scenario | recording
    source: str
    world: SimWorld
    events: Sequence[Event]
    devices: dict[str, dict[str, str]]  # wearer -> {"strap": address, "cgm": address}
    start: float
    end: float
    make_config: Callable[[Path, dict[str, Any]], Config]
    truth: list[TruthEvent] = field(default_factory=list)


@dataclass
class ReplayResult:
    db: Path
    run: int
    wall_s: float
    played: PlayStats
    stats: dict[str, Any]
    flushed: bool
    alerts_received: int
    alerts_sent: int
    duplicates: int = 0


# -- what to play ---------------------------------------------------------------------------------------------


def from_scenario(name_or_path: str | Path, *, data_root: Path | None = None, hours: float | None = None) -> Playable:
    from sim.build import build
    from sim.scenario import load

    scenario = load(name_or_path)
    if hours is not None:
        scenario = scenario.cut(hours)
    built = build(scenario, data_root)
    return Playable(
        name=scenario.name,
        kind="scenario",
        source=scenario.source,
        world=built.world,
        events=built.events,
        devices=built.devices,
        start=scenario.start,
        end=scenario.end,
        make_config=lambda db, mqtt: built.config(db, mqtt),
        truth=built.truth,
    )


def load_playable(what: str | Path, *, data_root: Path | None = None, hours: float | None = None) -> Playable:
    """A recording (a ``.vrec`` file) or a scenario (a bundled name or a ``.toml`` file)."""
    from sim import recording

    path = Path(what)
    if path.is_file() and recording.is_recording(path):
        if hours is not None:
            raise ReplayError("--hours applies to scenarios, not recordings")
        return recording.playable(path)
    return from_scenario(what, data_root=data_root, hours=hours)


# -- the database ---------------------------------------------------------------------------------------------


def fresh_db(path: Path) -> Path:
    """Make ``path`` ready for a new replay: a previous replay's database there is replaced; any other file is
    refused (a replay must never write over an agent's own database)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                is_replay = truth_db.load_run(conn) is not None
        except sqlite3.Error:
            is_replay = False
        if not is_replay:
            raise ReplayError(f"{path} exists and is not a replay's database; give a new path")
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return path


# -- the broker -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_broker(port: int) -> Any:
    """An amqtt broker on 127.0.0.1:port for the length of the block (anonymous, loopback only)."""
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise AgentError("the embedded broker needs the 'demo' extra: pip install 'vigil[demo]'") from exc
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        yield broker
    finally:
        await broker.shutdown()
        # amqtt leaves a closed client's stream for the garbage collector. Collected while this loop still runs,
        # it closes quietly; collected after, it warns ("loop is closed", an unclosed transport).
        del broker
        await asyncio.sleep(0.05)
        gc.collect()


def parse_broker(url: str | None) -> tuple[str, str, int]:
    """``None`` -> embedded; ``"none"`` -> no broker; ``mqtt://host:port``, ``host:port`` -> that broker.
    Returns (mode, host, port)."""
    if url is None:
        return "embedded", "127.0.0.1", 0
    if url == "none":
        return "none", "127.0.0.1", 0
    rest = url.split("://", 1)[1] if "://" in url else url
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port = rest, "1883"
    if not host or not port.isdigit():
        raise ReplayError(f"--broker {url!r}: give mqtt://HOST:PORT, HOST:PORT or none")
    return "external", host, int(port)


# -- keeping the agent in step --------------------------------------------------------------------------------


class Pacer:
    """The ``before`` hook of :func:`sim.player.play`; see the module docstring."""

    def __init__(self, agent: Agent, clock: VirtualClock, world: SimWorld, devices: dict[str, dict[str, str]]):
        self.agent = agent
        self.clock = clock
        self.world = world
        self.real_tick = agent.tick
        self.owner: dict[str, str] = {addr: w for w, d in devices.items() for addr in d.values()}
        self.limit: dict[str, float] = {}
        for w in agent.cfg.wearers:
            for dev in w.devices:
                stale = w.thresholds.cgm_stale_s if dev.kind == "cgm" else w.thresholds.strap_stale_s
                self.limit[dev.label] = stale
        self.last_delivery: dict[str, float] = dict.fromkeys(self.owner, clock.now())
        self.flagged: set[str] = set()  # devices whose current silence has had its check
        self.flagged_down: set[str] = set()  # ... and whose current outage has
        self.down_since: dict[str, float] = {}
        self.previous: Event | None = None
        self.ticks = 0
        self.waits = 0
        # The agent's wall-clock checks, only while nothing is queued (see the module docstring).
        setattr(agent, "tick", self._gated_tick)  # noqa: B010  (an instance attribute over the method)

    def _gated_tick(self, now: float) -> None:
        if self.agent.queue.empty():
            self.real_tick(now)

    async def settle(self) -> None:
        """Until the agent has taken everything played so far (the core may hold a batch it took, waiting
        ``BATCH_LINGER_S`` for company)."""
        while not self.agent.queue.empty():
            await asyncio.sleep(0.001)
        await asyncio.sleep(BATCH_LINGER_S * 2)

    def _earliest(self) -> float:
        """When the next check falls due (cheap: it runs before every event)."""
        earliest = math.inf
        for addr, last in self.last_delivery.items():
            if addr not in self.flagged:
                earliest = min(earliest, last + self.limit.get(addr, math.inf) + 1.0)
        after = self.agent.cfg.alerts.disconnected_after_s
        for addr, since in self.down_since.items():
            if addr not in self.flagged_down:
                earliest = min(earliest, since + after + 1.0)
        return earliest

    def _due(self) -> list[tuple[float, str, str]]:
        out = []
        for addr, last in self.last_delivery.items():
            if addr not in self.flagged:
                out.append((last + self.limit.get(addr, math.inf) + 1.0, "stale", addr))
        after = self.agent.cfg.alerts.disconnected_after_s
        for addr, since in self.down_since.items():
            if addr not in self.flagged_down:
                out.append((since + after + 1.0, "down", addr))
        return sorted(out)

    async def tick_until(self, t: float) -> None:
        """Run every check that falls due up to ``t``, each at its time, the agent settled first."""
        if self._earliest() > t:
            return
        due = [d for d in self._due() if d[0] <= t]
        if not due:
            return
        await self.settle()
        while due:
            when, what, addr = due[0]
            self.clock.advance_to(when)
            self.real_tick(self.clock.now())
            self.ticks += 1
            (self.flagged if what == "stale" else self.flagged_down).add(addr)
            due = [d for d in self._due() if d[0] <= t]
        await self.settle()

    async def before(self, event: Event) -> None:
        prev, self.previous = self.previous, event
        if isinstance(prev, Disconnect):
            await self._wait_link(prev.address, lambda s: s != "connected")
        elif isinstance(prev, SetAdvertising) and prev.on:
            await self._wait_link(prev.address, lambda s: s == "connected")
            self.down_since.pop(prev.address, None)
            self.flagged.discard(prev.address)
            self.flagged_down.discard(prev.address)
            self.last_delivery[prev.address] = prev.t  # the agent read the device at connect
        await self.tick_until(event.t)
        if isinstance(event, Disconnect):
            self.down_since[event.address] = event.t
            self.flagged_down.discard(event.address)
        elif isinstance(event, FeedEvent):
            peripheral = self.world.get(event.address)
            if peripheral is not None and peripheral.subscribed(event.characteristic):
                self.last_delivery[event.address] = event.t
                self.flagged.discard(event.address)

    async def _wait_link(self, address: str, ok: Callable[[str], bool]) -> None:
        wearer = self.owner.get(address)
        if wearer is None:
            return
        self.waits += 1
        deadline = time.monotonic() + LINK_WAIT_S
        while time.monotonic() < deadline:
            if ok(self.agent.wearers[wearer].links.get(address, "")):
                return
            await asyncio.sleep(0.002)
        log.warning("replay: the agent's link to %s did not change state within %.0f s", address, LINK_WAIT_S)

    async def finish(self, end: float) -> None:
        await self.tick_until(end)
        await self.settle()
        self.clock.advance_to(end)
        self.real_tick(end)
        await self.settle()


# -- the replay -----------------------------------------------------------------------------------------------


class StateKeeper:
    """Keeps what the wearers' state topics say beyond the latest readings (a forecast, a rhythm), when it
    changes, with the time the agent stamped on it."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, dict[str, Any]]] = []
        self._last: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: dict[str, Any]) -> None:
        wearer = payload.get("wearer")
        if not isinstance(wearer, str):
            return
        extra = {k: v for k, v in payload.items() if k not in _STATE_BASICS}
        if not extra:
            return
        key = json.dumps(extra, sort_keys=True)
        with self._lock:
            if self._last.get(wearer) == key:
                return
            self._last[wearer] = key
            self.rows.append((wearer, _epoch(payload.get("time")), extra))


def _epoch(iso: object) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return math.nan


def run_replay(
    playable: Playable,
    db: Path,
    *,
    speed: float | None = None,
    broker: str | None = None,
    mqtt_protocol: str = "5",
    stream: TextIO | None = None,
    quiet: bool = False,
) -> ReplayResult:
    """Play ``playable`` through the whole agent into ``db``. ``speed`` None is as fast as possible."""
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ReplayError(f"--speed must be a positive number or max, got {speed}")
    # Link losses and rejected payloads are what fault scenarios are made of; the summary counts them.
    for name in ("amqtt", "transitions", "vigil", "agent", "sim"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return asyncio.run(_replay(playable, fresh_db(db), speed, broker, mqtt_protocol, stream, quiet))


async def _replay(
    p: Playable,
    db: Path,
    speed: float | None,
    broker: str | None,
    protocol: str,
    stream: TextIO | None,
    quiet: bool,
) -> ReplayResult:
    wall0 = time.monotonic()
    mode, host, port = parse_broker(broker)
    if mode == "embedded":
        port, protocol = free_port(), "3.1.1"  # amqtt speaks MQTT 3.1.1 only
    elif mode == "none":
        port = free_port()  # nothing listens there: the outbox keeps everything
    cfg = p.make_config(db, {"host": host, "port": port, "protocol": protocol})
    lock = threading.Lock()

    def say(line: str) -> None:
        if stream is not None:
            with lock:
                stream.write(line + "\n")
                stream.flush()

    with contextlib.closing(sqlite3.connect(db)) as conn:
        run = truth_db.save_run(
            conn, scenario=p.name, kind=p.kind, source=p.source, start=p.start, end=p.end, wearers=p.devices,
            meta={"speed": "max" if speed is None else speed, "broker": mode, "truth_kinds": _truth_kinds(p)},
            truth=p.truth,
        )  # fmt: skip
    states = StateKeeper()
    async with embedded_broker(port) if mode == "embedded" else contextlib.nullcontext():
        watchers: list[Watcher] = []
        alerts = None
        if mode != "none":
            alerts = Watcher(cfg.mqtt, lambda t, a: None if quiet else say(format_alert(a)),
                             client_id=f"vigil-replay-{port}")  # fmt: skip
            state = Watcher(cfg.mqtt, states, client_id=f"vigil-replay-state-{port}")
            state.topic = state_topic(cfg.mqtt.root, cfg.agent.site, "+")
            watchers = [alerts, state]
            for w in watchers:
                await asyncio.to_thread(w.start)
                if not await asyncio.to_thread(w.subscribed.wait, 10.0):
                    raise ReplayError(f"the subscriber could not subscribe to the broker at {host}:{port}")
        clock = VirtualClock(p.start)
        backends = sim_backends(p.world)
        played: list[PlayStats] = []
        pacers: list[Pacer] = []

        async def scenario(agent: Agent) -> None:
            await _wait_connected(agent, p.devices)
            pacer = Pacer(agent, clock, p.world, p.devices)
            pacers.append(pacer)
            played.append(
                await play(p.world, p.events, clock, speed=speed, backpressure=agent.backpressure, before=pacer.before)
            )
            await pacer.finish(p.end)

        result = await run_daemon(
            cfg, clock=clock, scanner_backend=backends.scanner, client_backend=backends.client, until=scenario,
            flush_timeout=0.0 if mode == "none" else 10.0,
        )  # fmt: skip
        sent = sum(n for k, n in result.agent.stats.alerts.items())
        if alerts is not None:
            deadline = time.monotonic() + 10.0
            while alerts.received < sent and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        for w in watchers:
            await asyncio.to_thread(w.stop)
    wall = time.monotonic() - wall0
    stats = result.agent.stats
    summary: dict[str, Any] = {
        "speed": "max" if speed is None else speed,
        "broker": mode,
        "truth_kinds": _truth_kinds(p),
        "wall_s": round(wall, 3),
        "notifications": {"accepted": stats.accepted, "dropped": stats.dropped, "rejected": stats.rejected},
        "played": {"delivered": played[0].delivered, "dropped": played[0].dropped, "controls": played[0].controls}
        if played
        else None,
        "readings": dict(stats.readings),
        "alerts": dict(stats.alerts),
        "flushed": result.flushed,
        "alerts_received": alerts.received if alerts is not None else None,
        "pacer": {"checks": pacers[0].ticks, "link_waits": pacers[0].waits} if pacers else None,
    }
    with contextlib.closing(sqlite3.connect(db)) as conn:
        truth_db.update_meta(conn, run, summary)
        truth_db.save_states(conn, run, states.rows)
    return ReplayResult(
        db=db, run=run, wall_s=wall, played=played[0] if played else PlayStats(), stats=summary,
        flushed=result.flushed, alerts_received=alerts.received if alerts is not None else 0, alerts_sent=sent,
        duplicates=alerts.duplicates if alerts is not None else 0,
    )  # fmt: skip


def _truth_kinds(p: Playable) -> list[str]:
    from sim.recording import truth_kinds

    return truth_kinds(p.kind, p.devices)


async def _wait_connected(agent: Agent, devices: dict[str, dict[str, str]]) -> None:
    links = [(w, addr) for w, d in devices.items() for addr in d.values()]
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(agent.wearers[w].links.get(a) == "connected" for w, a in links):
            return
        await asyncio.sleep(0.02)
    missing = [f"{w}/{a}" for w, a in links if agent.wearers[w].links.get(a) != "connected"]
    raise ReplayError(f"simulated devices did not connect within {CONNECT_TIMEOUT_S:.0f} s: {missing}")


def summary_lines(p: Playable, r: ReplayResult) -> Iterable[str]:
    s = r.stats
    hours = (p.end - p.start) / 3600.0
    raised = Counter({k.split(":")[0]: n for k, n in s["alerts"].items() if k.endswith(":raised")})
    cleared = sum(n for k, n in s["alerts"].items() if k.endswith(":cleared"))
    n = s["notifications"]
    yield f"Replay finished: {p.name}, {len(p.devices)} wearer(s), {hours:g} h in {r.wall_s:.1f} s."
    yield f"  notifications: {n['accepted']} accepted, {n['dropped']} dropped, {n['rejected']} rejected by the codecs"
    yield "  readings stored: " + ", ".join(f"{k} {v}" for k, v in sorted(s["readings"].items()))
    yield (
        f"  alerts raised: {sum(raised.values())} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(raised.items()))
        + f"); cleared: {cleared}"
    )
    if s["broker"] != "none":
        yield f"  alert messages received by the subscriber: {r.alerts_received} of {r.alerts_sent}"
        yield f"  outbox flushed to the broker: {'yes' if r.flushed else 'NO'}"
    yield f"  database: {r.db.resolve()}"
