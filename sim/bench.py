"""``vigil bench``: the agent measured against its own limits, each figure next to the bare cost of the work
it cannot avoid, in one run on this machine; and the 24 hours replay benchmark.

    vigil bench [--quick] [--json OUT]                                    every figure of BENCHMARKS.md
    python -m sim.bench [--scenario day-24h] [--broker none] [--repeat 1]     the replay alone

Sections, in order (progress on standard error; the result as one JSON object in ``OUT``, else standard output):

1. decode     0x2A37 and 0x2AA7 decodes per second (:mod:`sim.bench_parts`)
2. store      rows per second through the agent's store against a bare ``executemany``, batches of 500 and 3
3. inference  ``LoadedModel.predict`` against a bare ``invoke()``, per model, with each runtime installed
4. e2e        the day-24h scenario's first hours through ``Agent.handle`` against the sum of the bare parts
5. replay     24 hours of one wearer through the whole agent (simulated BLE, links, core, a real mosquitto)
6. realtime   ten wearers in real time in a child process on tflite-runtime: CPU, RSS, alert latency to the
              broker's PUBACK (:mod:`sim.bench_live`)
7. capacity   how many wearers one agent keeps up with in real time (fresh child process per step)

Every section records the load average before it ran. Nothing here asserts a speed: the figures depend on the
machine and on what else it is doing. ``--quick`` runs every section small (seconds in all) for the tests.

The replay (``python -m sim.bench``): the bundled scenario ``day-24h`` (one wearer: a strap notifying Heart
Rate Measurement with RR intervals once a second, a CGM every five minutes: 86,400 + 288 notifications) is
built (signals, GATT bytes, truth), then replayed at maximum speed through the simulator's BLE backend into
the agent (links, codecs, store, alerts, outbox and, unless ``--broker none``, a broker and a subscriber).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from sim.replay import from_scenario, run_replay

# What the issue asks of this machine; reported beside the figures, never asserted.
TARGETS = {
    "e2e_over_bare_ratio": ("<=", 3.0),
    "infer_wrapper_over_bare_ratio": ("<=", 1.5),
    "alert_latency_ms_p99": ("<=", 50.0),
    "rss_mb": ("<=", 100.0),
    "cpu_pct_10_wearers": ("<=", 2.0),
    "replay_24h_s": ("<=", 10.0),
}


def bench(scenario: str = "day-24h", broker: str | None = None, hours: float | None = None) -> dict[str, Any]:
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    playable = from_scenario(scenario, hours=hours)
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


# -- the suite -------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from agent.runtime import available_runtimes
    from sim.broker import mosquitto_binary

    broker = mosquitto_binary()
    version = None
    if broker is not None:
        try:
            out = subprocess.run([broker, "-h"], capture_output=True, text=True, timeout=5)
            version = (out.stdout or out.stderr).splitlines()[0].strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "runtimes_available": available_runtimes(),
        "mosquitto": version or "not found",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Progress:
    def __init__(self, stream: TextIO, sections: int) -> None:
        self.stream = stream
        self.sections = sections
        self.done = 0
        self.t0 = time.monotonic()

    def say(self, text: str) -> None:
        self.stream.write(f"vigil bench [{time.monotonic() - self.t0:6.1f} s] {text}\n")
        self.stream.flush()

    def section(self, name: str, what: str) -> float:
        self.done += 1
        load = round(os.getloadavg()[0], 2)
        self.say(f"{self.done}/{self.sections} {name}: {what} (load {load})")
        return load


def _child(args: Sequence[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "sim.bench_live", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sim.bench_live {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _live_env() -> tuple[dict[str, str], str]:
    """The child's environment: tflite-runtime when it is installed (the runtime the design names)."""
    from agent.runtime import RUNTIME_ENV, available_runtimes

    env = dict(os.environ)
    runtime = "tflite-runtime" if "tflite-runtime" in available_runtimes() else (available_runtimes() or ["none"])[0]
    env[RUNTIME_ENV] = runtime
    return env, runtime


def run_suite(*, quick: bool, progress: TextIO) -> dict[str, Any]:
    from sim import bench_parts
    from sim.broker import BrokerError, Mosquitto, start_mosquitto

    p = Progress(progress, 7)
    out: dict[str, Any] = {"vigil_bench": 1, "quick": quick, "machine": machine(), "targets": {}, "detail": {}}
    detail: dict[str, Any] = out["detail"]
    rounds = 2 if quick else 5
    seconds = 0.05 if quick else 0.4
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        folder = Path(tmp)

        load = p.section("decode", "0x2A37 and 0x2AA7 payloads through the codecs")
        out.update(bench_parts.decode_rates(seconds=seconds, rounds=rounds))
        detail["decode"] = {"load_avg_1min": load, "rounds": rounds}

        load = p.section("store", "Store.write_batch against a bare executemany, batches of 500 and of 3 rows")
        big = bench_parts.store_rates(folder, batch=500, seconds=seconds * 2, rounds=rounds)
        small = bench_parts.store_rates(folder, batch=3, seconds=seconds * 2, rounds=rounds)
        out["store_rows_per_s"] = big["rows_per_s"]
        out["store_bare_rows_per_s"] = big["bare_rows_per_s"]
        out["store_over_bare_ratio"] = big["over_bare_ratio"]
        out["store_batch3_over_bare_ratio"] = small["over_bare_ratio"]
        detail["store"] = {"load_avg_1min": load, "batch_500": big, "batch_3": small}

        load = p.section("inference", "LoadedModel.predict against a bare interpreter.invoke(), per model")
        from agent.runtime import available_runtimes, selected_runtime

        runtimes = [r for r in ("ai-edge-litert", "tflite-runtime") if r in available_runtimes()]
        default = selected_runtime() or (runtimes[0] if runtimes else None)
        by_runtime: dict[str, dict[str, dict[str, Any]]] = {
            r: bench_parts.inference_rates(runtime=r, seconds=seconds, rounds=rounds) for r in runtimes
        }
        detail["inference"] = {"load_avg_1min": load, "default_runtime": default, "by_runtime": by_runtime}
        agent_models: dict[str, dict[str, Any]] = by_runtime.get(default or "") or {}
        for name, fig in agent_models.items():
            out[f"infer_wrapper_over_bare_ratio_{name}"] = fig["wrapper_over_bare_ratio"]
            out[f"infer_wrapper_us_{name}"] = fig["wrapper_us"]
            out[f"infer_bare_invoke_us_{name}"] = fig["bare_invoke_us"]
        out["infer_wrapper_over_bare_ratio"] = max(f["wrapper_over_bare_ratio"] for f in agent_models.values())
        out["infer_runtime"] = default

        hours = 0.5 if quick else 4.0
        load = p.section("e2e", f"{hours:g} h of day-24h through Agent.handle against the sum of its bare parts")
        invoke_s = {name: fig["bare_invoke_us"] / 1e6 for name, fig in agent_models.items()}
        e2e = bench_parts.end_to_end(folder, hours=hours, repeats=1 if quick else 3, invoke_s=invoke_s)
        out["e2e_readings_per_s"] = e2e["e2e_readings_per_s"]
        out["e2e_over_bare_ratio"] = e2e["e2e_over_bare_ratio"]
        detail["e2e"] = {"load_avg_1min": load, **e2e["detail"]}

        broker: Mosquitto | None = None
        try:
            broker = start_mosquitto(folder, log_all=False)
        except BrokerError as exc:
            p.say(f"NO MOSQUITTO: {exc}; the replay runs without a broker, latency and capacity are skipped")
        out["broker"] = "mosquitto" if broker is not None else "none"
        try:
            _replay_section(p, out, detail, quick, broker)
            _live_sections(p, out, detail, quick, broker)
        finally:
            if broker is not None:
                broker.stop()
    out["targets"] = verdicts(out)
    verdict = [f"{k} {v['value']} ({'met' if v['met'] else 'MISSED'})" for k, v in out["targets"].items()]
    p.say("done: " + ", ".join(verdict))
    return out


def _replay_section(p: Progress, out: dict[str, Any], detail: dict[str, Any], quick: bool, broker: Any) -> None:
    hours = 0.25 if quick else 24.0
    repeats = 1 if quick else 3
    load = p.section("replay", f"{hours:g} h of one wearer through the whole agent, {repeats} time(s)")
    url = f"127.0.0.1:{broker.port}" if broker is not None else "none"
    runs = []
    for i in range(repeats):
        r = bench("day-24h", url, hours=None if hours >= 24 else hours)
        runs.append(r)
        p.say(f"  replay {i + 1}/{repeats}: {r['replay_s']} s (+ {r['build_s']} s building the scenario)")
    replay_s = statistics.median(r["replay_s"] for r in runs)
    out["replay_24h_s"] = round(replay_s * 24.0 / hours, 2)
    detail["replay"] = {
        "load_avg_1min": load,
        "hours_replayed": hours,
        "extrapolated_to_24h": hours < 24,
        "broker": url,
        "replay_s": [r["replay_s"] for r in runs],
        "build_s": [r["build_s"] for r in runs],
        "readings": runs[0]["readings"],
        "notifications": runs[0]["notifications"],
        "readings_per_s": [r["readings_per_s"] for r in runs],
    }


def _live_sections(p: Progress, out: dict[str, Any], detail: dict[str, Any], quick: bool, broker: Any) -> None:
    from sim.bench_live import BEHIND_LAG_S, GIVE_UP_LATE_S, summarize_latencies

    env, runtime = _live_env()
    if broker is None:  # null in the JSON: not measured
        out.update(alert_latency_ms_p50=None, alert_latency_ms_p99=None, rss_mb=None, cpu_pct_10_wearers=None)
        out.update(cpu_us_per_notification_10_wearers=None, wake_probe_after_sleep_over_warm=None)
        out["wearers_real_time_max"] = None
        return
    port = str(broker.port)
    steady, alerts = (2.0, 3.0) if quick else (20.0, 20.0)
    repeats = 1 if quick else 3
    load = p.section(
        "realtime", f"10 wearers in real time on {runtime}, {repeats} x ({steady:g} s steady + {alerts:g} s alerts)"
    )
    runs = []
    for i in range(repeats):
        args = ["realtime", "--port", port, "--wearers", "10", "--seconds", str(steady), "--alert-seconds", str(alerts)]
        r = _child(
            [*args, "--probe-rounds", "5" if quick else "20"],
            env,
            timeout=60 + 3 * (steady + alerts),
        )
        runs.append(r)
        p.say(f"  run {i + 1}/{repeats}: CPU {r['steady']['cpu_pct']} %, RSS {r['rss_mb']} MB, "
              f"{r['alerts']['alerts_timed']} alerts timed")  # fmt: skip
    latencies = [x for r in runs for x in r["alerts"]["latency_ms"]]
    lat = summarize_latencies(latencies)
    out["alert_latency_ms_p50"] = lat["p50"]
    out["alert_latency_ms_p99"] = lat["p99"]
    out["rss_mb"] = statistics.median(r["rss_mb"] for r in runs)
    out["cpu_pct_10_wearers"] = round(statistics.median(r["steady"]["cpu_pct"] for r in runs), 3)
    out["cpu_pct_10_wearers_min"] = round(min(r["steady"]["cpu_pct"] for r in runs), 3)
    out["cpu_pct_10_wearers_feeder_only"] = round(statistics.median(r["feeder_only"]["cpu_pct"] for r in runs), 3)
    handle_us = [r["steady"]["handle_cpu_us_per_notification"] for r in runs]
    out["cpu_us_per_notification_10_wearers"] = statistics.median(handle_us)
    out["wake_probe_after_sleep_over_warm"] = statistics.median(r["wake_probe"]["after_sleep_over_warm"] for r in runs)
    detail["realtime"] = {
        "load_avg_1min": load,
        "runtime": runtime,
        "models": runs[0]["models"],
        "model_problems": runs[0]["model_problems"],
        "latency_ms": lat,
        "latency_ms_p99_per_run": [summarize_latencies(r["alerts"]["latency_ms"])["p99"] for r in runs],
        "rss_mb_per_run": [r["rss_mb"] for r in runs],
        "rss_mb_after_load": [r["rss_mb_after_load"] for r in runs],
        "cpu_pct_per_run": [r["steady"]["cpu_pct"] for r in runs],
        "cpu_pct_feeder_only_per_run": [r["feeder_only"]["cpu_pct"] for r in runs],
        "cpu_pct_alert_phase_per_run": [r["alerts"]["cpu_pct"] for r in runs],
        "handle_cpu_us_per_notification_per_run": handle_us,
        "wake_probe_per_run": [r["wake_probe"] for r in runs],
        "steady": [{k: v for k, v in r["steady"].items() if k != "latency_ms"} for r in runs],
    }

    seconds = 1.5 if quick else 12.0
    load = p.section("capacity", f"wearers one agent keeps up with in real time ({seconds:g} s a step)")
    steps: list[dict[str, Any]] = []

    def step(n: int) -> bool:
        r = _child(["capacity", "--port", port, "--wearers", str(n), "--seconds", str(seconds)], env,
                   timeout=120 + 4 * seconds)  # fmt: skip
        r["load_avg_1min"] = round(os.getloadavg()[0], 2)
        steps.append(r)
        p.say(f"  {n} wearers: lag p99 {r['lag_ms_p99']} ms, CPU {r['cpu_pct']} %, "
              f"{'keeps up' if r['holds'] else 'FALLS BEHIND'}")  # fmt: skip
        return bool(r["holds"])

    best = _search(step, [5, 10] if quick else [25, 50, 100, 200, 400, 800, 1600, 3200, 6400], bisect=0 if quick else 2)
    out["wearers_real_time_max"] = best
    detail["capacity"] = {
        "load_avg_1min": load,
        "falls_behind_when": f"a batch is durable more than {BEHIND_LAG_S:g} s after its oldest notification was "
        f"due (p99 over the step), a notification is dropped or left in the intake, or the feeder runs more than "
        f"{GIVE_UP_LATE_S:g} s behind its schedule",
        "step_s": seconds,
        "steps": steps,
    }


def _search(holds: Callable[[int], bool], ladder: Sequence[int], *, bisect: int) -> int:
    """The largest count that holds: up the ladder to the first failure, then ``bisect`` halvings."""
    good, bad = 0, None
    for n in ladder:
        if holds(n):
            good = n
        else:
            bad = n
            break
    for _ in range(bisect):
        if bad is None or bad - good <= 1:
            break
        mid = (good + bad) // 2
        if holds(mid):
            good = mid
        else:
            bad = mid
    return good


def verdicts(out: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = {}
    for key, (op, limit) in TARGETS.items():
        value = out.get(key)
        met = isinstance(value, int | float) and math.isfinite(value) and value <= limit
        result[key] = {"value": value, "target": f"{op} {limit:g}", "met": bool(met)}
    return result


# -- command lines ---------------------------------------------------------------------------------------------

HELP = """\
Measure the agent on this machine, in one run, each figure next to the bare cost of the work it cannot avoid
(so the ratios hold on a busy machine): codecs, store against bare SQLite, model inference against a bare
invoke, readings per second through the agent against the sum of its bare parts, 24 h of one wearer replayed,
ten wearers in real time (CPU, memory on tflite-runtime, alert latency to a local mosquitto's PUBACK), and how
many wearers one agent keeps up with. Under 10 minutes; --quick takes seconds with small sizes (for tests).
Progress goes to standard error. Needs the `mosquitto` binary for the broker figures (said so when missing).
BENCHMARKS.md explains every figure.
"""


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure the agent's speed, memory and latency on this machine",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--json", type=Path, metavar="OUT", help="write the figures as JSON to OUT (default: stdout)")
    p.add_argument("--quick", action="store_true", help="small sizes, seconds in all: checks the bench runs")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    import logging

    for name in ("vigil", "agent", "sim", "amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.ERROR)
    result = run_suite(quick=args.quick, progress=sys.stderr)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
        print(f"vigil bench: wrote {args.json}", file=sys.stderr)
    else:
        print(text)
    return 0


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
