"""Kill: the agent, as a process of its own, is killed with SIGKILL at random (seeded) points of a replay and
restarted each time; nothing it had accepted is lost or stored twice, and every alert it raised reaches the
subscriber.

What "accepted" means here. A reading is accepted when the SQLite transaction that stores it has committed:
``Store.write_batch`` has returned, with ``synchronous=FULL``, before anything downstream (alert, outbox,
publisher) hears of it. A notification still in the intake queue, or in the batch being decoded, is in memory
only, and a SIGKILL loses it; nothing has been promised for it yet. What happens to such a loss depends on the
device:

* a CGM record is not lost at all: the sensor keeps every record it measured, and after the restart the link
  fetches the missed ones over RACP (``Report stored records``); the store's unique index on (wearer, device,
  session, time offset) keeps a record fetched again once. So every CGM record the sensors measured must be in
  the store exactly once at the end, whether it was ever committed before a kill or not.
* a strap's beat is lost: a real strap does not keep its beats either. Strap readings are accepted when
  committed, and every committed one must survive every later kill, once.

An alert is raised when its row is committed to the alerts table, in the same transaction as its outbox row;
from then on it must reach the subscriber at least once (QoS 1 from the outbox, removed only on PUBACK), and
every copy that arrives must carry the same id and payload. An alert the engine computed in memory but had not
committed when the process died was never raised; the restarted agent raises it again from the data (or from
the episode it restores), under a new id.

How it runs. ``agent_proc`` plays the scenario from a virtual start at 600x real time and prints its progress;
the test kills it with SIGKILL once the feed has passed a seeded random target (plus a seeded random delay of
up to 0.3 s, so the kill lands anywhere: in a commit, in the decoder, in the publisher, in an RACP report),
then restarts it with the same database. The restarted agent's virtual clock starts RESTART_GAP_S after the
newest committed strap reading, as a supervisor restarting it at once would: the strap never re-sends a beat
that was committed, so any duplicate can only come from the agent.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.heart_rate import decode_heart_rate_measurement
from tests.agent.reliability.support import (
    KILL,
    SESSION,
    START,
    Subscriber,
    build_world,
    delivery,
    episode_problems,
    feed,
    stored_alerts,
    wait_for,
)
from tests.conftest import Broker

pytestmark = [pytest.mark.reliability, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[3]
HARNESS = "tests.agent.reliability.agent_proc"
SEED = 20_260_201
KILLS = 12
SPEED = 600.0
RESTART_GAP_S = 5.0
SEGMENT_TIMEOUT_S = 120.0


@dataclass
class Segment:
    start: float
    target: float | None
    last_seen: float | None  # the last progress line read before the kill
    returncode: int
    wall_s: float
    stdout: list[str]


def run_agent(broker: Broker, db: Path, start: float, target: float | None, delay: float, log: Path) -> Segment:
    """Run the harness from ``start``; with a ``target``, SIGKILL it ``delay`` s after its feed passes it."""
    t0 = time.monotonic()
    args = [sys.executable, "-m", HARNESS, "--port", str(broker.port), "--db", str(db), "--start", str(start),
            "--end", str(KILL.end), "--speed", str(SPEED), "--every", "5"]  # fmt: skip
    with log.open("a") as err:
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    watchdog = threading.Timer(SEGMENT_TIMEOUT_S, proc.kill)
    watchdog.start()
    lines: list[str] = []
    last_seen = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("t "):
                last_seen = float(line.split()[1])
                if target is not None and last_seen >= target:
                    time.sleep(delay)
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    return Segment(start, target, last_seen, proc.returncode, time.monotonic() - t0, lines)


def snapshot(db: Path) -> tuple[dict[int, tuple[object, ...]], set[str], int]:
    """What the store holds after a kill: readings by row id, alert ids, outbox depth."""
    with sqlite3.connect(db) as conn:
        readings = {r[0]: tuple(r[1:]) for r in conn.execute("SELECT id, wearer, device, kind, t, value FROM readings")}
        alerts = {r[0] for r in conn.execute("SELECT id FROM alerts")}
        depth = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
    conn.close()
    return readings, alerts, depth


def restart_point(db: Path) -> float:
    with sqlite3.connect(db) as conn:
        newest = conn.execute("SELECT max(t) FROM readings WHERE kind = 'hr'").fetchone()[0]
    conn.close()
    return START if newest is None else float(int(newest)) + 1.0 + RESTART_GAP_S


def test_sigkill_at_random_points_loses_no_accepted_reading_and_no_alert(
    mosquitto: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wall0 = time.monotonic()
    db, log = tmp_path / "vigil.db", tmp_path / "agent.log"
    rng = random.Random(SEED)
    # Targets over the replay, and never less than a minute into a run: a run that committed nothing would
    # start again where it started.
    targets = sorted(rng.uniform(START + 300.0, KILL.end - 900.0) for _ in range(KILLS))
    sub = Subscriber(mosquitto.host, mosquitto.port, client_id="caregiver")
    committed: dict[int, tuple[object, ...]] = {}
    raised: set[str] = set()
    segments: list[Segment] = []
    depths: list[int] = []  # outbox rows waiting at each kill
    start = START
    try:
        for target in targets:
            seg = run_agent(mosquitto, db, start, max(target, start + 60.0), rng.uniform(0.0, 0.3), log)
            segments.append(seg)
            assert seg.returncode == -signal.SIGKILL, f"run from {start} ended by itself: {seg.stdout[-3:]}"
            readings, alerts, depth = snapshot(db)
            depths.append(depth)
            committed.update(readings)
            raised |= alerts
            start = restart_point(db)
        last = run_agent(mosquitto, db, start, None, 0.0, log)
        segments.append(last)
        assert last.returncode == 0, log.read_text()[-3000:]
        assert last.stdout[-1] == "done flushed=True"

        stored = stored_alerts(db)
        wait_for(lambda: {a.id for a in stored} <= sub.alert_ids(), 15.0, "every stored alert at the subscriber")
        received = sub.alerts()
    finally:
        sub.stop()

    readings, alerts, depth = snapshot(db)
    # Every reading committed before any kill is still there, unchanged; every alert raised is still on record.
    assert {i: committed[i] for i in committed if readings.get(i) != committed[i]} == {}
    assert raised <= alerts
    assert depth == 0

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT device, kind, t, value, extra FROM readings").fetchall()
    conn.close()

    # No strap reading twice: one hr reading per notification second, and exactly the RR intervals of those
    # notifications (a duplicate or a lost RR interval shows in the count or the sum).
    world_devices = build_world(KILL, START)[1]
    straps = {d.strap for d in world_devices}
    cgms = {d.cgm for d in world_devices}
    expected_rr: dict[tuple[str, float], list[float]] = {}
    expected_glucose: dict[str, dict[int, float]] = {c: {} for c in cgms if c}
    for event in feed(KILL, world_devices, START, KILL.end):
        if event.address in straps:
            expected_rr[(event.address, event.t)] = list(decode_heart_rate_measurement(event.data).rr_intervals_s)
        else:
            for rec in decode_cgm_measurement(event.data):
                expected_glucose[event.address][rec.time_offset_min] = rec.glucose_mg_dl
    hr = Counter((d, t) for d, k, t, _, _ in rows if k == "hr")
    assert [key for key, n in hr.items() if n > 1] == []
    assert set(hr) <= set(expected_rr)
    for strap in straps:
        want = [rr for (d, t), rrs in expected_rr.items() if d == strap and (d, t) in hr for rr in rrs]
        got = [v for d, k, _, v, _ in rows if d == strap and k == "rr"]
        assert len(got) == len(want)
        assert sum(got) == pytest.approx(sum(want), abs=1e-6)
    others = Counter((d, k, t) for d, k, t, _, _ in rows if k not in ("hr", "rr", "glucose"))
    assert [key for key, n in others.items() if n > 1] == []

    # Every CGM record the sensors measured is there exactly once, at its time, with its value.
    glucose_rows = [(d, t, v) for d, k, t, v, _ in rows if k == "glucose"]
    for cgm, records in expected_glucose.items():
        got_records = sorted((t, v) for d, t, v in glucose_rows if d == cgm)
        want_records = sorted((SESSION + 60.0 * off, v) for off, v in records.items())
        assert got_records == want_records, cgm

    # Every alert raised reached the subscriber at least once; duplicates share one id and one payload.
    stored = stored_alerts(db)
    report = delivery(stored, received)
    assert report.missing == []
    assert report.unexpected == []
    assert report.differing == []
    # Restarts do not split or repeat episodes: each is raised once and cleared at most once, and a kind is not
    # raised again for a wearer while an episode of it is open (a CGM backfill after a restart once did that).
    problems = episode_problems(stored)
    assert problems == []

    strap_notifications = sum(1 for d, _ in expected_rr if d)
    glucose_expected = sum(len(r) for r in expected_glucose.values())
    with capsys.disabled():
        print(
            f"\n[reliability/kill] {KILLS} SIGKILLs at virtual minutes "
            + ", ".join(f"{(s.last_seen or s.start) / 60 - START / 60:.0f}" for s in segments[:-1])
            + f"; runs {len(segments)}, wall {time.monotonic() - wall0:.1f} s"
            + f"\n  {report.line()}; messages waiting in the outbox at the kills: {sum(depths)} (max {max(depths)})"
            + f"\n  CGM records {len(glucose_rows)} of {glucose_expected} measured, each once (lost 0)"
            + f"\n  strap notifications committed {len(hr)} of {strap_notifications} played; "
            + f"the other {strap_notifications - len(hr)} were in memory at a kill or in a restart gap (never accepted)"
            + f"\n  committed readings lost 0 (of {len(committed)} seen after the kills), duplicated 0"
        )
