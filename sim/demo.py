"""``vigil demo``: a night of two wearers through the whole agent, on one machine, with no hardware.

It replays the bundled scenario ``demo`` (sim/scenarios/demo.toml): excerpts of real recordings committed in
``sim/data`` (a paroxysmal AF record and a sinus record with tachycardia from PhysioNet, two type 1 CGM nights
from AZT1D; see DATA_LICENSES.md), with one CGM going out of range for 25 minutes. The wearers' straps and CGMs
are virtual peripherals behind the simulator's bleak backend, so the agent's own BLE link code connects to
them, reads them and subscribes exactly as it would over BlueZ. An embedded amqtt broker listens on a free
loopback port; a subscriber prints each alert as it arrives; the agent's clock is a virtual clock the player
moves forward, so eight hours of night pass in under a minute. At the end it prints a summary and the alerts'
score against the scenario's ground truth (:mod:`sim.score`).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from agent.errors import AgentError
from sim.replay import Playable, ReplayResult, from_scenario, run_replay
from sim.score import print_table, score_db

SCENARIO = "demo"


def _fresh_db(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    db = out / "vigil.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    return db


def run_demo(*, out: Path, hours: float = 8.0, speed: float | None = 600.0, stream: TextIO = sys.stdout) -> int:
    """Run the demo and print alerts, a summary and the score to ``stream``. Returns the process exit code."""
    if not 0 < hours <= 8:
        raise AgentError(f"--hours must be more than 0 and at most 8 (the demo's recordings), got {hours}")
    playable = from_scenario(SCENARIO, hours=hours)
    db = _fresh_db(out)
    pace = "as fast as possible" if speed is None else f"at {speed:g}x real time"
    stream.write(
        f"Vigil demo: {len(playable.devices)} wearers from real recordings (scenario `{SCENARIO}`), "
        f"{hours:g} hours of night {pace}.\n"
        "An embedded MQTT broker on loopback; alerts appear below as the subscriber receives them.\n\n"
    )
    stream.flush()
    result = run_replay(playable, db, speed=speed, stream=stream)
    return _summary(playable, result, hours, stream)


def _summary(p: Playable, r: ReplayResult, hours: float, stream: TextIO) -> int:
    s = r.stats
    raised = Counter({k.split(":")[0]: n for k, n in s["alerts"].items() if k.endswith(":raised")})
    cleared = sum(n for k, n in s["alerts"].items() if k.endswith(":cleared"))
    n = s["notifications"]

    def say(line: str = "") -> None:
        stream.write(line + "\n")

    say()
    say(f"Demo finished: {hours:g} simulated hours in {r.wall_s:.1f} s.")
    say(f"  notifications: {n['accepted']} accepted, {n['dropped']} dropped, {n['rejected']} rejected by the codecs")
    say(f"  readings stored: {sum(s['readings'].values())} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(s["readings"].items())) + ")")  # fmt: skip
    say(f"  alerts raised: {sum(raised.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(raised.items()))
        + f"); cleared: {cleared}")  # fmt: skip
    say(
        f"  alert messages received by the subscriber: {r.alerts_received} of {r.alerts_sent}, "
        f"{r.duplicates} duplicates dropped"
    )
    say(f"  outbox flushed to the broker: {'yes' if r.flushed else 'NO'}")
    say(f"  database: {r.db.resolve()}")
    say()
    print_table(score_db(r.db), stream)
    say()
    say(f"More: vigil score --db {r.db} --json score.json; vigil report --db {r.db} --out {r.db.parent / 'report'}")
    stream.flush()
    ok = r.flushed and r.alerts_received == r.alerts_sent and n["dropped"] == 0
    return 0 if ok else 1
