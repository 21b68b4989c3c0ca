"""The command line as a user meets it: help, configuration errors, watch, and an agent without a broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.cli import build_parser, main
from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.daemon import run_daemon
from agent.messages import RawNotification
from agent.store import Store
from tests.conftest import Broker, free_port

VIGIL = [sys.executable, "-m", "agent.cli"]


def test_every_verb_has_help_and_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    parser = build_parser()
    verbs = list(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"run", "demo", "watch"} <= set(verbs)
    for verb in verbs:
        assert f"vigil {verb}" in readme, f"`vigil {verb}` is not documented in README.md"
        out = subprocess.run([*VIGIL, verb, "--help"], capture_output=True, text=True, check=True).stdout
        assert out.startswith("usage: vigil " + verb)


def test_bad_config_is_one_line_exit_2_nothing_started(tmp_path: Path) -> None:
    cfg = tmp_path / "vigil.toml"
    db = tmp_path / "vigil.db"
    cfg.write_text(
        f'[agent]\ndb = "{db}"\n[[wearers]]\nid = "w1"\n[wearers.thresholds]\nglucose_low = "seventy"\n'
        '[[wearers.devices]]\nkind = "cgm"\nname = "CGM"\n'
    )
    proc = subprocess.run([*VIGIL, "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["vigil: config: wearers[0].thresholds.glucose_low = 'seventy': must be a non-negative number"]
    assert not db.exists()


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_watch_prints_alerts_readably_and_as_json(mosquitto: Broker) -> None:
    payload = {
        "id": "abc",
        "episode": "e1",
        "wearer": "w-1",
        "kind": "glucose_low",
        "severity": "warning",
        "state": "raised",
        "time": "2026-01-16T01:10:00.000Z",
        "reason": "low glucose: glucose 66 mg/dL is below",
    }
    broker = f"{mosquitto.host}:{mosquitto.port}"
    readable = subprocess.Popen(
        [*VIGIL, "watch", "--broker", broker, "--count", "1", "--timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    as_json = subprocess.Popen(
        [
            *VIGIL,
            "watch",
            "--broker",
            broker,
            "--json",
            "--kind",
            "glucose_low",
            "--count",
            "1",
            "--timeout",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for proc in (readable, as_json):  # each says so on stderr once its subscription is in place
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("vigil watch: subscribed to vigil/+/")
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    other = dict(payload, kind="heart_tachycardia", id="zzz")
    pub.publish("vigil/home/w-1/alert/heart_tachycardia", json.dumps(other), qos=1).wait_for_publish(5)
    for _ in range(2):  # the same alert twice: printed once
        pub.publish("vigil/home/w-1/alert/glucose_low", json.dumps(payload), qos=1).wait_for_publish(5)
    pub.loop_stop()
    pub.disconnect()
    out, err = readable.communicate(timeout=30)
    assert readable.returncode == 0, err
    assert out.splitlines() == [
        "2026-01-16 01:10  WARNING  RAISED   w-1  heart_tachycardia: low glucose: glucose 66 mg/dL is below"
        "  [episode e1]"
    ]
    jout, _ = as_json.communicate(timeout=30)
    assert [json.loads(line) for line in jout.splitlines()] == [payload]


def test_agent_without_broker_keeps_running_and_storing(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "agent": {"db": str(tmp_path / "v.db")},
            "mqtt": {"port": free_port()},
            "wearers": [{"id": "w1", "devices": [{"kind": "cgm", "address": "AA:00:00:00:00:01"}]}],
        }
    )
    from sim.bleak_backend import sim_backends
    from sim.peripheral import SimWorld

    backends = sim_backends(SimWorld())  # no devices: the link keeps looking, the agent keeps running
    clock = VirtualClock(1_700_000_000.0)
    # CGM record: size 6, flags 0, glucose SFLOAT 60 (0x003C), time offset 5 min.
    low = bytes([0x06, 0x00, 0x3C, 0x00, 0x05, 0x00])

    async def scenario(agent: Agent) -> None:
        await asyncio.sleep(0.3)
        agent.accept(RawNotification("w1", "AA:00:00:00:00:01", "2AA7", low, clock.now()))
        for _ in range(100):
            if agent.stats.alerts:
                break
            await asyncio.sleep(0.02)

    result = asyncio.run(
        run_daemon(
            cfg,
            clock=clock,
            scanner_backend=backends.scanner,
            client_backend=backends.client,
            until=scenario,
            flush_timeout=0.5,
        )
    )
    assert not result.flushed
    assert "cannot connect" in (result.publisher.last_error or "")
    assert result.agent.stats.alerts["glucose_low:raised"] == 1
    store = Store(tmp_path / "v.db")
    assert store.count_readings() == {"glucose": 1}
    assert store.outbox_depth() >= 1  # the alert waits in the outbox for the broker
    assert [a.kind for a in store.alerts()] == ["glucose_low"]
    store.close()
