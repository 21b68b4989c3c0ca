"""The replay benchmark: 24 hours of one wearer through the whole agent, as fast as it goes.

    python -m sim.bench [--scenario day-24h] [--broker none] [--repeat 1]

The bundled scenario ``day-24h`` (one wearer: a strap notifying Heart Rate Measurement with RR intervals once a
second, a CGM every five minutes: 86,400 + 288 notifications) is built (signals, GATT bytes, truth), then
replayed at maximum speed through the simulator's BLE backend into the agent (links, codecs, store, alerts,
outbox and, unless ``--broker none``, an embedded MQTT broker and subscriber). It prints the wall time of each
part and the readings per second. A benchmark, not a test: the figure depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from sim.replay import from_scenario, run_replay


def bench(scenario: str = "day-24h", broker: str | None = None) -> dict[str, Any]:
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    playable = from_scenario(scenario)
    built = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        t1 = time.perf_counter()
        result = run_replay(playable, Path(tmp) / "bench.db", speed=None, broker=broker)
        replay = time.perf_counter() - t1
    readings = sum(result.stats["readings"].values())
    return {
        "scenario": scenario,
        "hours": round((playable.end - playable.start) / 3600.0, 3),
        "notifications": result.stats["notifications"]["accepted"],
        "readings": readings,
        "build_s": round(built, 2),
        "replay_s": round(replay, 2),
        "total_s": round(built + replay, 2),
        "readings_per_s": round(readings / replay),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "broker": result.stats["broker"],
        "alerts": result.stats["alerts"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="day-24h")
    parser.add_argument("--broker", default=None, help="none: no broker (default: embedded)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    for _ in range(args.repeat):
        r = bench(args.scenario, args.broker)
        if args.json:
            print(json.dumps(r))
            continue
        print(
            f"{r['scenario']}: {r['hours']:g} h, {r['notifications']} notifications, {r['readings']} readings; "
            f"build {r['build_s']:.2f} s + replay {r['replay_s']:.2f} s = {r['total_s']:.2f} s "
            f"({r['readings_per_s']} readings/s; CPU {r['cpu_s']:.2f} s; load {r['load_avg_1min']}; "
            f"broker {r['broker']}; max RSS {r['max_rss_mb']} MB)"
        )


if __name__ == "__main__":
    main()
