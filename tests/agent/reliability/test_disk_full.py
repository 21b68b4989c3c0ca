"""Disk full: while the store cannot grow, alerts are still published, the retained status says storage is
degraded, and when space returns the agent recovers: status ok, the readings and alerts it held written.

Two ways to fill the disk, the same test:

* ``tmpfs``: the database lives on a 16 MB tmpfs mounted for the test, and a filler file takes every byte left,
  so SQLite's writes fail with ENOSPC (SQLITE_FULL) as on a full SD card; deleting the filler is the space
  coming back. Needs the right to mount (root, as on this project's CI); skipped where it is missing.
* ``page_limit``: SQLite's ``PRAGMA max_page_count`` on the agent's connection, set to the pages the file has,
  which SQLite reports with the same SQLITE_FULL; raising it is the space coming back. Runs anywhere.

The replay (one wearer, one hour, as fast as the agent takes it) is played in parts. Eight minutes with room.
Then the broker is paused (SIGSTOP) while the next seven minutes raise a tachycardia, so that its alert is in
flight, and the disk fills before the broker (SIGCONT) acknowledges it: the acknowledgement of a message the
full store cannot delete from its outbox. Then 25 minutes on the full disk, in which the tachycardia clears and
a low and an urgent low (re-announced) are raised. The space returns; in the last 20 minutes everything clears.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from agent.alerts import AlertEvent
from agent.clock import VirtualClock
from agent.core import Agent
from agent.daemon import run_daemon
from agent.mqtt import Publisher
from agent.store import Store
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.heart_rate import decode_heart_rate_measurement
from sim.bleak_backend import sim_backends
from sim.player import play
from tests.agent.reliability.support import (
    DISK,
    START,
    Received,
    Subscriber,
    build_world,
    config,
    delivery,
    drained,
    feed,
    stored_alerts,
    wait_connected,
    wait_for,
)
from tests.conftest import Broker

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(120)]

PAUSE_FROM = START + 8 * 60.0
FULL_FROM = START + 15 * 60.0
FULL_UNTIL = START + 40 * 60.0
TMPFS_SIZE = "16m"  # once the space returns, room for SQLite's WAL (about 4 MB before its automatic checkpoint)
RECOVER_TIMEOUT_S = 15.0


class Disk(Protocol):
    def fill(self) -> None: ...
    def free(self) -> None: ...


class TmpfsDisk:
    """A filler file takes all the room left on the tmpfs."""

    def __init__(self, mount: Path) -> None:
        self.filler = mount / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 4096
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        finally:
            os.close(fd)
        st = os.statvfs(self.filler.parent)
        assert st.f_bavail == 0

    def free(self) -> None:
        self.filler.unlink()


class PageLimit:
    """SQLite's page limit on the agent's own connection: no page more than the file has now."""

    def __init__(self) -> None:
        self.store: Store | None = None

    def fill(self) -> None:
        assert self.store is not None
        pages = self.store.db.execute("PRAGMA page_count").fetchone()[0]
        self.store.db.execute(f"PRAGMA max_page_count = {pages}")

    def free(self) -> None:
        assert self.store is not None
        self.store.db.execute("PRAGMA max_page_count = 1073741823")


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip()}); the page_limit variant covers this")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


async def until(condition: object, what: str, timeout: float = RECOVER_TIMEOUT_S) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def storage_states(statuses: list[Received]) -> list[str]:
    """The storage field of each online status, in arrival order, repeats folded."""
    out: list[str] = []
    for m in statuses:
        state = m.payload.get("storage")
        if m.payload.get("state") == "online" and isinstance(state, str) and (not out or out[-1] != state):
            out.append(state)
    return out


@pytest.mark.parametrize("how", ["tmpfs", "page_limit"])
def test_a_full_disk_does_not_silence_alerts_and_the_agent_recovers(
    how: str, mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    wall0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        disk: Disk
        if how == "tmpfs":
            db = stack.enter_context(mounted_tmpfs(tmp_path / "disk", TMPFS_SIZE)) / "vigil.db"
            disk = TmpfsDisk(db.parent)
        else:
            db = tmp_path / "vigil.db"
            limit = PageLimit()
            disk = limit
        sub = Subscriber(mosquitto.host, mosquitto.port, client_id="caregiver")
        stack.callback(sub.stop)
        stack.callback(lambda: mosquitto.process.send_signal(signal.SIGCONT))
        world, devices = build_world(DISK, START)
        clock = VirtualClock(START)
        backends = sim_backends(world)
        committed: list[AlertEvent] = []
        publishers: list[Publisher] = []
        seen: dict[str, Any] = {}

        def on_ready(agent: Agent, publisher: Publisher) -> None:
            publishers.append(publisher)
            agent.alert_listeners.append(committed.append)
            if how == "page_limit":
                limit.store = agent.store

        async def replay(agent: Agent, start: float, end: float) -> None:
            await play(world, feed(DISK, devices, start, end), clock, backpressure=agent.backpressure)
            await drained(agent)

        async def scenario(agent: Agent) -> None:
            pub = publishers[0]
            await wait_connected(agent, devices)
            await replay(agent, START, PAUSE_FROM)
            await until(lambda: pub.connected and agent.store.outbox_depth() == 0 and not pub.pending(), "a flush")
            assert agent.storage_state() == "ok"
            await until(lambda: storage_states(sub.statuses()) == ["ok"], "the first status")

            # A tachycardia's alert in flight, unacknowledged, when the disk fills.
            mosquitto.process.send_signal(signal.SIGSTOP)
            await replay(agent, PAUSE_FROM, FULL_FROM)
            tachy = [ev.id for ev in committed if ev.kind == "heart_tachycardia"]
            assert len(tachy) == 1
            # (in flight: a state message replaced in the outbox by a newer one may still be too)
            await until(lambda: pub.pending() >= agent.store.outbox_depth() > 0, "the outbox in flight")
            disk.fill()
            mosquitto.process.send_signal(signal.SIGCONT)
            await until(lambda: set(tachy) <= sub.alert_ids(), "the tachycardia alert")

            before = len(committed)
            await replay(agent, FULL_FROM, FULL_UNTIL)
            assert agent.storage_state().startswith("degraded: ")
            raised_while_full = [ev.id for ev in committed[before:]]
            # Published while the store is full: every alert of the full time has reached the subscriber, and
            # the retained status says the storage is degraded.
            await until(lambda: set(raised_while_full) <= sub.alert_ids(), "the alerts raised while full")
            await until(lambda: "degraded" in " ".join(storage_states(sub.statuses())), "a degraded status")
            assert {a.id for a in agent.store.alerts()}.isdisjoint(raised_while_full)  # nothing could be written
            seen.update(raised_while_full=raised_while_full, held=agent.unsaved_readings)

            disk.free()
            freed = time.monotonic()
            await until(lambda: agent.storage_state() == "ok", "the store to recover")
            seen["recovered_s"] = time.monotonic() - freed
            assert agent.unsaved_readings == 0
            await until(lambda: storage_states(sub.statuses())[-1:] == ["ok"], "an ok status")
            await replay(agent, FULL_UNTIL, DISK.end)

        result = asyncio.run(
            run_daemon(
                config(DISK, db, mosquitto.port, devices),
                clock=clock,
                scanner_backend=backends.scanner,
                client_backend=backends.client,
                until=scenario,
                on_ready=on_ready,
            )
        )
        assert result.flushed
        stats = result.agent.stats
        assert stats.lost_readings == 0
        assert stats.dropped == 0
        store = Store(db)
        counts = store.count_readings()
        store.close()
        stored = stored_alerts(db)
        wait_for(lambda: {a.id for a in stored} <= sub.alert_ids(), 10.0, "every stored alert at the subscriber")
        time.sleep(0.2)  # a repeated message would arrive now
        received = sub.alerts()
        messages = Counter((m.topic, json.dumps(m.payload, sort_keys=True)) for m in sub.messages)
        states = storage_states(sub.statuses())

    # Nothing lost: every reading of every notification is in the store (what was held, written on recovery),
    # every CGM record once.
    hr = rr = 0
    glucose: set[int] = set()
    for event in feed(DISK, devices, START, DISK.end):
        if event.characteristic == "2A37":
            hr += 1
            rr += len(decode_heart_rate_measurement(event.data).rr_intervals_s)
        else:
            glucose.update(rec.time_offset_min for rec in decode_cgm_measurement(event.data))
    assert {k: counts.get(k, 0) for k in ("hr", "rr", "glucose")} == {"hr": hr, "rr": rr, "glucose": len(glucose)}
    # Every alert is on record, those sent from memory included, and reached the subscriber; no message, alert
    # or other, went out again and again (an acknowledgement the full store could not record once did that).
    report = delivery(stored, received)
    assert report.missing == []
    assert report.unexpected == []
    assert report.differing == []
    assert len(stored) == len(committed)
    assert [(topic, n) for (topic, _), n in messages.items() if n > 2] == []
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    raised_while_full = seen["raised_while_full"]
    kinds = Counter((a.kind, a.state) for a in stored if a.id in set(raised_while_full))
    assert kinds[("heart_tachycardia", "cleared")] == 1
    assert kinds[("glucose_low", "raised")] == 1
    assert kinds[("glucose_urgent_low", "raised")] == 1
    assert kinds[("glucose_urgent_low", "ongoing")] >= 1
    # The status went ok -> degraded -> ok.
    assert states[0] == "ok"
    assert states[-1] == "ok"
    assert any(s.startswith("degraded: ") for s in states)
    with capsys.disabled():
        print(
            f"\n[reliability/disk-full {how}] alerts published while full {len(raised_while_full)} "
            f"({', '.join(f'{k}:{s} {n}' for (k, s), n in sorted(kinds.items()))}); readings held in memory "
            f"{seen['held']}, written {seen['recovered_s']:.1f} s after the space returned; status "
            f"{' -> '.join(states)}\n  {report.line()}; readings stored hr {hr}, rr {rr}, glucose {len(glucose)}, "
            f"lost 0; wall {time.monotonic() - wall0:.1f} s"
        )
