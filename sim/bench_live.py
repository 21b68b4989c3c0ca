"""The real-time parts of ``vigil bench``: the agent serving simulated wearers at wall-clock pace, with a real
mosquitto taking its messages. Run as a child process (``python -m sim.bench_live``) so that its resident
memory and CPU time are the agent's own, not the benchmark's.

What runs is the daemon's own wiring (:func:`agent.daemon.run_daemon` minus the BLE links): the store, the
core (:class:`agent.core.Agent` with both packaged models), its ticker and the MQTT publisher. A feeder stands
in for the BLE links: it hands each wearer's notifications to ``Agent.accept``, where a link's notification
callback would, at the second they are due (a strap notifies once a second with the RR intervals of the beats
that ended in that second; a CGM every ``cgm_every_s``). Each notification is stamped with the time it was
*due*, not the time the feeder got round to it, so a saturated event loop shows up as lag instead of hiding
behind a late feeder. The BLE stack itself (BlueZ, bleak) is not measured.

Figures (all wall-clock, ``time.time()`` in this one process):

* latency: from a CGM notification being due to the broker's PUBACK of each alert message the agent sent
  because of it (the alert pattern alternates every wearer's glucose between urgent low and in range, one CGM
  notification every 5 s);
* lag: from the oldest notification of a batch being due to that batch being durable in the store;
* CPU: ``getrusage`` user + system time of this process over the phase, as a percentage of one core;
* RSS: ``VmRSS`` from ``/proc/self/status`` after the phase, with both models loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.config import Config, parse_config
from agent.core import Agent
from agent.messages import RawNotification
from agent.mqtt import Publisher, status_payload
from agent.store import Store
from agent.topics import command_filter, status_topic
from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
from firmware_bridge.heart_rate import (
    HeartRateMeasurement,
    SensorContact,
    decode_heart_rate_measurement,
    encode_heart_rate_measurement,
)
from firmware_bridge.sfloat import SFloat

RR_TICKS_PER_S = 1024
ALERT_LOW_MG_DL = 45.0  # below the default urgent low (54): raises
ALERT_OK_MG_DL = 140.0  # in range, above low + hysteresis: clears
# "Falls behind": a batch becomes durable more than this long after its oldest notification was due (p99).
BEHIND_LAG_S = 1.0


# -- the wearers ---------------------------------------------------------------------------------------------


def wearer_ids(n: int) -> list[str]:
    return [f"w{i:04d}" for i in range(n)]


def strap_address(i: int) -> str:
    return f"B0:00:00:00:{i // 256:02X}:{i % 256:02X}"


def cgm_address(i: int) -> str:
    return f"C0:00:00:00:{i // 256:02X}:{i % 256:02X}"


def bench_config(
    db: Path,
    port: int,
    wearers: int,
    *,
    agent_id: str = "bench",
    site: str = "bench",
    heart_batch_s: float | None = None,
) -> Config:
    """``wearers`` wearers, each with a strap and a CGM, and the default thresholds (and ``[agent]
    heart_batch_s``, unless given)."""
    agent: dict[str, Any] = {"id": agent_id, "site": site, "db": str(db)}
    if heart_batch_s is not None:
        agent["heart_batch_s"] = heart_batch_s
    return parse_config(
        {
            "agent": agent,
            "mqtt": {"host": "127.0.0.1", "port": port, "protocol": "5"},
            "wearers": [
                {
                    "id": wid,
                    "devices": [
                        {"kind": "hr_strap", "address": strap_address(i)},
                        {"kind": "cgm", "address": cgm_address(i)},
                    ],
                }
                for i, wid in enumerate(wearer_ids(wearers))
            ],
        }
    )


def strap_payloads(seconds: int, seed: int) -> list[bytes]:
    """One Heart Rate Measurement a second: the rate and the RR intervals of the beats that ended in it."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 2.5) + 10
    rr = 0.86 + 0.04 * np.sin(np.arange(n) / 7.0) + rng.normal(0.0, 0.015, n)
    ends = np.cumsum(rr)
    out = []
    lo = 0
    for s in range(1, seconds + 1):
        hi = int(np.searchsorted(ends, s, side="right"))
        ticks = tuple(round(float(x) * RR_TICKS_PER_S) for x in rr[lo:hi])
        bpm = round(60.0 / float(np.mean(rr[lo:hi]))) if hi > lo else 70
        m = HeartRateMeasurement(hr_bpm=bpm, sensor_contact=SensorContact.DETECTED, rr_intervals=ticks)
        out.append(encode_heart_rate_measurement(m))
        lo = hi
    return out


def cgm_payload(mg_dl: float, offset_min: int) -> bytes:
    record = CgmMeasurementRecord(
        glucose=SFloat.from_value(mg_dl), time_offset_min=offset_min, quality=SFloat.from_value(100), has_crc=True
    )
    return encode_cgm_measurement([record])


# -- instrumentation -----------------------------------------------------------------------------------------


class Probe:
    """Wraps the agent's batch handler and the publisher's client to time batches and alerts (see the module
    docstring). Costs a dictionary look-up per message."""

    def __init__(self, agent: Agent, publisher: Publisher) -> None:
        self.lags: list[float] = []
        self.latencies: list[float] = []
        self.batches = 0
        self.notifications = 0
        self.handle_cpu_s = 0.0  # this thread's CPU time inside Agent.handle
        self._trigger: dict[str, float] = {}  # wearer -> due time of its CGM notification in the current batch
        self._alert_t0: dict[str, float] = {}  # alert id -> due time of the notification behind it
        self.awaiting_puback: dict[int, float] = {}  # paho mid -> due time
        real_handle = agent.handle

        def handle(batch: Iterable[RawNotification]) -> None:
            notes = list(batch)
            self._trigger = {n.wearer: n.received_at for n in notes if n.characteristic == "2AA7"}
            cpu0 = time.thread_time()
            real_handle(notes)
            self.handle_cpu_s += time.thread_time() - cpu0
            if notes:
                self.lags.append(time.time() - min(n.received_at for n in notes))
                self.batches += 1
                self.notifications += len(notes)
            self._trigger = {}

        setattr(agent, "handle", handle)  # noqa: B010  (an instance attribute over the method)
        agent.alert_listeners.append(self._on_alert)
        client = publisher.client
        real_publish = client.publish
        real_on_publish: Any = client.on_publish

        def publish(topic: str, payload: Any = None, qos: int = 0, retain: bool = False, properties: Any = None) -> Any:
            info = real_publish(topic, payload, qos, retain, properties)
            if self._alert_t0 and "/alert/" in topic:
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    t0 = self._alert_t0.pop(json.loads(payload)["id"], None)
                    if t0 is not None:
                        self.awaiting_puback[info.mid] = t0
            return info

        def on_publish(c: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
            t0 = self.awaiting_puback.pop(mid, None)
            if t0 is not None and not rc.is_failure:
                self.latencies.append(time.time() - t0)
            if real_on_publish is not None:
                real_on_publish(c, userdata, mid, rc, props)

        setattr(client, "publish", publish)  # noqa: B010
        client.on_publish = on_publish

    def _on_alert(self, ev: Any) -> None:
        t0 = self._trigger.get(ev.wearer)
        if t0 is not None and ev.kind.startswith("glucose"):
            self._alert_t0[ev.id] = t0

    def reset(self) -> None:
        self.lags.clear()
        self.latencies.clear()
        self.batches = 0
        self.notifications = 0
        self.handle_cpu_s = 0.0


@contextlib.asynccontextmanager
async def serving(cfg: Config, *, drain: bool = True) -> AsyncIterator[tuple[Agent, Publisher, Probe]]:
    """The daemon's wiring without BLE links; every link counts as connected. ``drain=False`` stops without
    taking what is left in the intake (a capacity step that fell behind leaves a backlog of minutes)."""
    store = Store(cfg.agent.db)
    topic = status_topic(cfg.mqtt.root, cfg.agent.site, cfg.agent.id)
    publisher = Publisher(
        cfg.mqtt,
        store,
        client_id=f"vigil-{cfg.agent.id}-{os.getpid()}",
        status_topic=topic,
        offline_payload=status_payload("offline", agent=cfg.agent.id, reason="connection lost"),
        subscriptions=[command_filter(cfg.mqtt.root, cfg.agent.site, w.id) for w in cfg.wearers],
    )
    agent = Agent(cfg, store, on_outbox=publisher.wake)
    publisher.on_message = agent.command
    agent.on_volatile = publisher.publish_volatile
    for w in cfg.wearers:
        for d in w.devices:
            agent.link_state(w.id, d.label, "connected")
    probe = Probe(agent, publisher)
    tasks = [
        asyncio.create_task(agent.process(), name="core"),
        asyncio.create_task(agent.ticker(), name="ticker"),
        asyncio.create_task(publisher.run(), name="publisher"),
    ]
    try:
        deadline = time.monotonic() + 10
        while not publisher.connected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the agent could not connect to the broker: {publisher.last_error}")
            await asyncio.sleep(0.01)
        yield agent, publisher, probe
    finally:
        tasks[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tasks[0]
        if drain:
            await agent.drain()
            await publisher.flush(5.0)
        await publisher.close(status_payload("offline", agent=cfg.agent.id, reason="stopped"))
        for t in tasks[1:]:
            t.cancel()
        await asyncio.gather(*tasks[1:], return_exceptions=True)
        store.close()


# A feeder this late is in a loop the agent has saturated: the step has failed, stop feeding.
GIVE_UP_LATE_S = 5.0


@dataclass
class FeedStats:
    sent: int = 0
    late: list[float] = field(default_factory=list)  # how late the feeder handed each notification over
    gave_up: bool = False


@dataclass
class Feed:
    """The payloads of a phase, encoded before it starts so that encoding is not counted as the agent's work."""

    wearers: list[str]
    seconds: float
    cgm_every_s: float
    straps: list[list[bytes]]
    cgm: list[list[bytes]]


def prepare(wearers: Sequence[str], seconds: float, *, cgm_every_s: float, alert_pattern: bool, seed: int = 1) -> Feed:
    n = len(wearers)
    # 32 different beat series at most, shared round-robin: thousands of wearers need not be encoded one by one.
    series = [strap_payloads(int(seconds) + 2, seed + i) for i in range(min(n, 32))]
    straps = [series[i % len(series)] for i in range(n)]
    cgm = []
    for i in range(n):
        count = int(seconds / cgm_every_s) + 2
        if alert_pattern:
            values = [ALERT_LOW_MG_DL if k % 2 == 0 else ALERT_OK_MG_DL for k in range(count)]
        else:
            values = [round(110.0 + 10.0 * math.sin(k / 5.0 + i), 1) for k in range(count)]
        cgm.append([cgm_payload(v, k) for k, v in enumerate(values)])
    return Feed(list(wearers), seconds, cgm_every_s, straps, cgm)


async def feed(sink: Any, f: Feed) -> FeedStats:
    """Hand every wearer's notifications to ``sink(note)`` at the wall-clock second they are due."""
    wearers, seconds, cgm_every_s = f.wearers, f.seconds, f.cgm_every_s
    n = len(wearers)
    stats = FeedStats()
    t_wall0 = time.time() + 0.05
    t_mono0 = time.monotonic() + 0.05
    # (due, wearer index, kind, count): each wearer starts at its own fraction of the first second
    heap: list[tuple[float, int, str, int]] = []
    for i in range(n):
        heapq.heappush(heap, (i / n, i, "2A37", 0))
        heapq.heappush(heap, ((i + 0.5) / n * min(cgm_every_s, 10.0), i, "2AA7", 0))
    while heap:
        due, i, char, k = heap[0]
        if due >= seconds:
            break
        wait = t_mono0 + due - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
            continue
        heapq.heappop(heap)
        stats.late.append(-wait)
        if -wait > GIVE_UP_LATE_S:
            stats.gave_up = True
            break
        if char == "2A37":
            data = f.straps[i][k % len(f.straps[i])]
            device = strap_address(i)
            heapq.heappush(heap, (due + 1.0, i, char, k + 1))
        else:
            data = f.cgm[i][k % len(f.cgm[i])]
            device = cgm_address(i)
            heapq.heappush(heap, (due + cgm_every_s, i, char, k + 1))
        sink(RawNotification(wearers[i], device, char, data, t_wall0 + due))
        stats.sent += 1
    return stats


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _sys_s() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024.0
    return values.get("VmRSS", math.nan), values.get("VmHWM", math.nan)


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    return float(np.quantile(np.asarray(values, dtype=np.float64), q))


async def _phase(
    agent: Agent, probe: Probe, seconds: float, *, cgm_every_s: float, alert_pattern: bool
) -> dict[str, Any]:
    prepared = prepare(list(agent.wearers), seconds, cgm_every_s=cgm_every_s, alert_pattern=alert_pattern)
    probe.reset()
    dropped0 = agent.stats.dropped
    cpu0, sys0, wall0 = _cpu_s(), _sys_s(), time.monotonic()
    fed = await feed(agent.accept, prepared)
    # Let the last batch through and the last alerts be acknowledged.
    deadline = time.monotonic() + 5.0
    while (not agent.queue.empty() or probe.awaiting_puback) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    wall, cpu, system = time.monotonic() - wall0, _cpu_s() - cpu0, _sys_s() - sys0
    return {
        "wearers": len(agent.wearers),
        "seconds": round(wall, 2),
        "notifications": fed.sent,
        "dropped": agent.stats.dropped - dropped0,
        "intake_left": agent.queue.qsize(),
        "cpu_s": round(cpu, 3),
        "cpu_pct": round(100.0 * cpu / wall, 3),
        "cpu_pct_system": round(100.0 * system / wall, 3),  # the kernel's part: syscalls, fsync, sockets
        "batches": probe.batches,
        # The agent's own work, without the waiting and waking around it: CPU time inside Agent.handle.
        "handle_cpu_us_per_notification": round(1e6 * probe.handle_cpu_s / max(1, probe.notifications), 1),
        "lag_ms_p50": round(1000 * quantile(probe.lags, 0.5), 2),
        "lag_ms_p99": round(1000 * quantile(probe.lags, 0.99), 2),
        "lag_ms_max": round(1000 * max(probe.lags, default=math.nan), 2),
        "feeder_late_ms_p99": round(1000 * quantile(fed.late, 0.99), 2),
        "feeder_gave_up": fed.gave_up,
        "alerts_timed": len(probe.latencies),
        "latency_ms": [round(1000 * x, 3) for x in probe.latencies],
    }


async def feeder_only(wearers: int, seconds: float, cgm_every_s: float) -> dict[str, Any]:
    """The feeder alone, handing notifications to nothing: its own CPU cost (part of any figure below)."""
    prepared = prepare(wearer_ids(wearers), seconds, cgm_every_s=cgm_every_s, alert_pattern=False)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    fed = await feed(lambda note: None, prepared)
    wall, cpu = time.monotonic() - wall0, _cpu_s() - cpu0
    return {"notifications": fed.sent, "cpu_s": round(cpu, 3), "cpu_pct": round(100.0 * cpu / wall, 3)}


def wake_probe(*, sleep_s: float = 0.1, rounds: int = 20, decodes: int = 20) -> dict[str, float]:
    """What waking up costs on this machine, apart from anything the agent does: the CPU time of one fixed
    piece of the agent's work (``decodes`` Heart Rate Measurements decoded) done back to back, against the same
    done straight after sleeping ``sleep_s`` (ten wearers' notifications come about 0.1 s apart). Where the two
    differ much (a virtual machine whose host lets its caches or memory go cold while it sleeps), every
    wake-up pays the difference, and the real-time CPU figure with it."""
    payload = strap_payloads(3, 0)[1]

    def unit() -> float:
        cpu0 = time.thread_time()
        for _ in range(decodes):
            decode_heart_rate_measurement(payload)
        return time.thread_time() - cpu0

    unit()
    warm = statistics.median(unit() for _ in range(rounds))
    after = []
    for _ in range(rounds):
        time.sleep(sleep_s)
        after.append(unit())
    cold = statistics.median(after)
    return {
        "sleep_s": sleep_s,
        "decodes": decodes,
        "warm_us": round(1e6 * warm, 1),
        "after_sleep_us": round(1e6 * cold, 1),
        "after_sleep_over_warm": round(cold / warm, 2) if warm > 0 else math.nan,
    }


async def realtime(
    port: int,
    folder: Path,
    wearers: int,
    seconds: float,
    alert_seconds: float,
    *,
    probe_rounds: int = 20,
    heart_batch_s: float | None = None,
) -> dict[str, Any]:
    """The machine's wake-up cost and the feeder alone (baselines), then a realistic phase (CPU, RSS), then the
    alert phase (latency)."""
    out: dict[str, Any] = {"wake_probe": wake_probe(rounds=probe_rounds)}
    out["feeder_only"] = await feeder_only(wearers, seconds, 60.0)
    cfg = bench_config(folder / "realtime.db", port, wearers, heart_batch_s=heart_batch_s)
    async with serving(cfg) as (agent, _publisher, probe):
        out["models"] = [m.describe() for m in agent.models]
        out["model_problems"] = [p.describe() for p in agent.model_problems]
        out["rss_mb_after_load"] = round(rss_mb()[0], 1)
        # Warm up first: the first windows, inferences and transactions of a process cost more than the rest.
        await _phase(agent, probe, min(3.0, seconds), cgm_every_s=60.0, alert_pattern=False)
        out["steady"] = await _phase(agent, probe, seconds, cgm_every_s=60.0, alert_pattern=False)
        out["rss_mb"], out["hwm_mb"] = (round(x, 1) for x in rss_mb())
        out["alerts"] = await _phase(agent, probe, alert_seconds, cgm_every_s=5.0, alert_pattern=True)
    return out


async def capacity(port: int, folder: Path, wearers: int, seconds: float) -> dict[str, Any]:
    """One step of the capacity search: ``wearers`` in real time for ``seconds``; does the agent keep up?"""
    cfg = bench_config(folder / f"capacity-{wearers}.db", port, wearers)
    async with serving(cfg, drain=False) as (agent, _publisher, probe):
        await _phase(agent, probe, min(2.0, seconds), cgm_every_s=60.0, alert_pattern=False)  # warm up
        result = await _phase(agent, probe, seconds, cgm_every_s=60.0, alert_pattern=False)
    result.pop("latency_ms")
    result["holds"] = holds(result)
    return result


def holds(r: dict[str, Any]) -> bool:
    """Keeps up: nothing dropped, nothing left waiting, batches durable within ``BEHIND_LAG_S`` (p99), and the
    feeder never ``GIVE_UP_LATE_S`` behind its schedule."""
    return bool(
        r["dropped"] == 0
        and r["intake_left"] == 0
        and r["lag_ms_p99"] <= 1000 * BEHIND_LAG_S
        and not r.get("feeder_gave_up", False)
    )


def summarize_latencies(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(quantile(values, 0.5), 2),
        "p99": round(quantile(values, 0.99), 2),
        "max": round(max(values, default=math.nan), 2),
        "mean": round(statistics.fmean(values), 2) if values else math.nan,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.bench_live", description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("realtime", "capacity"))
    parser.add_argument("--port", type=int, required=True, help="the broker on 127.0.0.1")
    parser.add_argument("--wearers", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--alert-seconds", type=float, default=30.0)
    parser.add_argument("--probe-rounds", type=int, default=20, help="wake-ups the machine's wake-up probe times")
    parser.add_argument(
        "--heart-batch-s", type=float, default=None, help="the agent's [agent] heart_batch_s (default: its default)"
    )
    args = parser.parse_args(argv)
    for name in ("vigil", "agent", "sim"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-live-") as tmp:
        if args.mode == "realtime":
            run = realtime(
                args.port,
                Path(tmp),
                args.wearers,
                args.seconds,
                args.alert_seconds,
                probe_rounds=args.probe_rounds,
                heart_batch_s=args.heart_batch_s,
            )
            result = asyncio.run(run)
        else:
            result = asyncio.run(capacity(args.port, Path(tmp), args.wearers, args.seconds))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
