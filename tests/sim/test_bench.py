"""``vigil bench``: the JSON it writes (keys, sane values; never speeds) and the pure parts of the suite."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.messages import RawNotification
from sim.bench import TARGETS, _search, verdicts
from sim.bench_live import Feed, FeedStats, bench_config, feed, holds, prepare, wake_probe
from sim.bench_parts import finite_positive

VIGIL = [sys.executable, "-m", "agent.cli"]

REQUIRED = (
    "decode_hr_per_s",
    "decode_cgm_per_s",
    "store_rows_per_s",
    "store_bare_rows_per_s",
    "store_over_bare_ratio",
    "e2e_readings_per_s",
    "e2e_over_bare_ratio",
    "infer_wrapper_over_bare_ratio",
    "infer_wrapper_over_bare_ratio_glucose",
    "infer_wrapper_over_bare_ratio_rhythm",
    "alert_latency_ms_p50",
    "alert_latency_ms_p99",
    "rss_mb",
    "cpu_pct_10_wearers",
    "replay_24h_s",
    "wearers_real_time_max",
    "cpu_us_per_notification_10_wearers",
    "wake_probe_after_sleep_over_warm",
)


@pytest.mark.mqtt
@pytest.mark.timeout(240)
def test_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([*VIGIL, "bench", "--quick", "--json", str(out)], capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr
    assert "1/7 decode" in proc.stderr
    assert "7/7 capacity" in proc.stderr
    result = json.loads(out.read_text())
    assert result["quick"] is True
    assert result["broker"] == "mosquitto"
    for key in REQUIRED:
        assert finite_positive(result[key]), (key, result[key])
    assert result["alert_latency_ms_p50"] <= result["alert_latency_ms_p99"]
    assert result["infer_wrapper_over_bare_ratio"] == max(
        result["infer_wrapper_over_bare_ratio_glucose"], result["infer_wrapper_over_bare_ratio_rhythm"]
    )
    machine = result["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu"]
    assert machine["python"].startswith("CPython")
    assert len(machine["load_avg"]) == 3
    assert result["detail"]["realtime"]["runtime"] in machine["runtimes_available"]
    assert {m["name"] for m in result["detail"]["realtime"]["models"]} == {"glucose", "rhythm"}
    assert result["detail"]["realtime"]["model_problems"] == []
    assert set(result["targets"]) == set(TARGETS)
    assert finite_positive(result["detail"]["e2e"]["agent_us_per_notification"])
    for runtime, models in result["detail"]["inference"]["by_runtime"].items():
        for name, fig in models.items():
            steps = fig["steps_us"]
            assert set(steps) == {"io_only", "quantize", "dequantize", "finite_check"}, (runtime, name)
            assert all(finite_positive(v) for v in steps.values()), (runtime, name, steps)
    handle_us = result["detail"]["realtime"]["handle_cpu_us_per_notification_per_run"]
    assert result["cpu_us_per_notification_10_wearers"] == handle_us[0]  # one run in --quick
    for section in ("decode", "store", "inference", "e2e", "replay", "realtime", "capacity"):
        assert math.isfinite(result["detail"][section]["load_avg_1min"])


def test_bench_help_explains_itself() -> None:
    proc = subprocess.run([*VIGIL, "bench", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for words in ("--quick", "--json", "mosquitto", "BENCHMARKS.md", "bare"):
        assert words in proc.stdout


def test_search_climbs_the_ladder_then_bisects() -> None:
    tried: list[int] = []

    def holds_up_to(limit: int) -> Callable[[int], bool]:
        def check(n: int) -> bool:
            tried.append(n)
            return n <= limit

        return check

    assert _search(holds_up_to(130), [25, 50, 100, 200, 400], bisect=2) == 125
    assert tried == [25, 50, 100, 200, 150, 125]
    assert _search(holds_up_to(10), [25, 50], bisect=2) == 6  # below the first rung: 12 fails, 6 holds
    assert _search(holds_up_to(10_000), [25, 50], bisect=2) == 50  # never failed: the top rung
    assert _search(holds_up_to(0), [5], bisect=0) == 0


def test_verdicts_compare_with_the_targets_and_miss_what_was_not_measured() -> None:
    figures = {key: limit for key, (_, limit) in TARGETS.items()}
    assert all(v["met"] for v in verdicts(figures).values())
    figures["rss_mb"] = 100.5
    figures["alert_latency_ms_p99"] = None
    v = verdicts(figures)
    assert not v["rss_mb"]["met"]
    assert not v["alert_latency_ms_p99"]["met"]
    assert v["replay_24h_s"] == {"value": 10.0, "target": "<= 10", "met": True}


def test_falling_behind_is_lag_drops_or_a_backlog() -> None:
    ok = {"dropped": 0, "intake_left": 0, "lag_ms_p99": 999.0}
    assert holds(ok)
    assert not holds({**ok, "lag_ms_p99": 1001.0})
    assert not holds({**ok, "dropped": 1})
    assert not holds({**ok, "intake_left": 3})
    assert not holds({**ok, "feeder_gave_up": True})


def test_feed_hands_every_notification_over_when_due(tmp_path: Path) -> None:
    import asyncio

    cfg = bench_config(tmp_path / "x.db", 1883, 3)
    prepared: Feed = prepare([w.id for w in cfg.wearers], 2.0, cgm_every_s=1.0, alert_pattern=True)
    got: list[RawNotification] = []
    stats: FeedStats = asyncio.run(feed(got.append, prepared))
    straps = [n for n in got if n.characteristic == "2A37"]
    cgms = [n for n in got if n.characteristic == "2AA7"]
    assert stats.sent == len(got) == len(straps) + len(cgms)
    assert len(straps) == 3 * 2  # once a second each
    assert {n.wearer for n in cgms} == {"w0000", "w0001", "w0002"}
    assert [n.received_at for n in got] == sorted(n.received_at for n in got)  # stamped when due, in order
    devices = {d.label for w in cfg.wearers for d in w.devices}
    assert {n.device for n in got} <= devices


def test_wake_probe_times_the_same_work_warm_and_after_sleeping() -> None:
    r = wake_probe(sleep_s=0.01, rounds=3, decodes=5)
    assert (r["sleep_s"], r["decodes"]) == (0.01, 5)
    for key in ("warm_us", "after_sleep_us", "after_sleep_over_warm"):
        assert finite_positive(r[key]), (key, r)
    assert math.isclose(r["after_sleep_over_warm"], r["after_sleep_us"] / r["warm_us"], rel_tol=0.05)


def test_bench_config_takes_the_agent_default_or_the_heart_batch_given(tmp_path: Path) -> None:
    assert bench_config(tmp_path / "a.db", 1883, 2).agent.heart_batch_s == 0.5
    assert bench_config(tmp_path / "b.db", 1883, 2, heart_batch_s=0.0).agent.heart_batch_s == 0.0
