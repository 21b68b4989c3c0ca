"""``vigil record``: capture what real BLE devices send into a recording (:mod:`sim.recording`).

Each device gets the agent's own BLE link (:class:`agent.ble.DeviceLink`): the same discovery, connection,
reads at connect, subscriptions, reconnection with backoff and CGM backfill over RACP as ``vigil run``, so a
recording holds exactly the bytes the agent would have decoded, with the agent clock's time of arrival, plus
every change of link state. Nothing is decoded, stored or published. The capture runs for ``--duration``
seconds, or until SIGINT/SIGTERM; the file is flushed every ten seconds, so a capture that is killed keeps all
but its last seconds.

The links run on bleak's platform backend (BlueZ on a Pi); tests pass the simulator's backend instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent.ble import DeviceLink
from agent.clock import Clock, SystemClock
from agent.config import DeviceConfig, Thresholds
from agent.messages import RawNotification
from sim.recording import Device, Header, RecordingWriter

_READ_ONLY = frozenset({"2A38", "2AA8"})


@dataclass(frozen=True)
class Target:
    """A device to record: who wears it and how to find it (an address, or an advertised name)."""

    wearer: str
    device: DeviceConfig
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass
class CaptureStats:
    notifications: int = 0
    reads: int = 0
    link_changes: int = 0
    seconds: float = 0.0


async def capture(
    out: Path,
    targets: Sequence[Target],
    *,
    duration: float | None = None,
    until: Callable[[], Awaitable[None]] | None = None,
    note: str = "",
    clock: Clock | None = None,
    scanner_backend: Any = None,
    client_backend: Any = None,
    source: str = "bleak",
    install_signal_handlers: bool = False,
) -> CaptureStats:
    """Record ``targets`` into ``out`` until ``duration`` (wall seconds) passes, ``until()`` returns, or (with
    ``install_signal_handlers``) SIGINT/SIGTERM arrives."""
    clock = clock or SystemClock()
    devices = tuple(
        Device(i, t.wearer, t.device.kind, (t.device.address or "").upper(), t.device.name)
        for i, t in enumerate(targets)
    )
    wearers = {t.wearer: {"thresholds": asdict(t.thresholds)} for t in targets}
    header = Header(start=clock.now(), devices=devices, source=source, note=note, wearers=wearers)
    stats = CaptureStats()
    started = time.monotonic()
    stop = asyncio.Event()
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    states: dict[int, str] = {}

    with RecordingWriter(out, header) as writer:

        def sink_for(index: int) -> Callable[[RawNotification], None]:
            def sink(note: RawNotification) -> None:
                read = note.characteristic in _READ_ONLY or (
                    note.characteristic == "2A19" and states.get(index) != "connected"
                )
                writer.notification(
                    note.received_at, index, note.characteristic, note.data, read=read,
                    session_start=getattr(note, "session_start", None),
                )  # fmt: skip
                if read:
                    stats.reads += 1
                else:
                    stats.notifications += 1

            return sink

        def on_state_for(index: int) -> Callable[[str, str, str], None]:
            def on_state(_wearer: str, _label: str, state: str) -> None:
                states[index] = state
                writer.link(clock.now(), index, state)
                stats.link_changes += 1

            return on_state

        lock = asyncio.Lock()
        links = [
            DeviceLink(
                t.wearer,
                t.device,
                sink_for(i),
                clock,
                scanner_backend=scanner_backend,
                client_backend=client_backend,
                on_state=on_state_for(i),
                connect_lock=lock,
            )
            for i, t in enumerate(targets)
        ]
        tasks = [asyncio.create_task(link.run(), name=f"record:{link.label}") for link in links]
        waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
        if duration is not None:
            waiters.append(asyncio.create_task(asyncio.sleep(duration)))
        if until is not None:
            waiters.append(asyncio.create_task(_call(until)))
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in done:
                w.result()
        finally:
            for task in (*tasks, *waiters):
                task.cancel()
            await asyncio.gather(*tasks, *waiters, return_exceptions=True)
            writer.close(clock.now())
    stats.seconds = time.monotonic() - started
    return stats


async def _call(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def parse_device(text: str) -> DeviceConfig:
    """``hr_strap=F1:22:33:44:55:66`` or ``cgm=name:CGM-1234`` (found by advertised name)."""
    from agent.errors import ConfigError

    kind, sep, where = text.partition("=")
    if not sep or kind not in ("hr_strap", "cgm") or not where:
        raise ConfigError("--device", text, "must be KIND=ADDRESS or KIND=name:NAME with KIND hr_strap or cgm")
    if where.startswith("name:"):
        return DeviceConfig(kind, name=where[5:])
    return DeviceConfig(kind, address=where.upper())


def run_record(out: Path, targets: Sequence[Target], *, duration: float | None, note: str, stream: Any = None) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        stats = asyncio.run(capture(out, targets, duration=duration, note=note, install_signal_handlers=True))
        if stream is not None:
            stream.write(
                f"Recorded {stats.notifications} notifications, {stats.reads} reads and {stats.link_changes} link "
                f"changes from {len(targets)} device(s) in {stats.seconds:.0f} s into {out}\n"
            )
    return 0
