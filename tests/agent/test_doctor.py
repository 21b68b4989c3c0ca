"""`vigil doctor` on this machine: what it finds is what is true, and a failure is a failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.cmd_doctor import diagnose
from sim.bleak_backend import sim_backends
from sim.peripheral import SimWorld, cgm_sensor
from tests.conftest import Broker, free_port


def write_cfg(tmp: Path, port: int, db: str = "vigil.db") -> Path:
    cfg = tmp / "vigil.toml"
    cfg.write_text(
        f'[agent]\ndb = "{db}"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}\n'
        '[[wearers]]\nid = "w1"\n[[wearers.devices]]\nkind = "cgm"\naddress = "C0:FF:EE:00:00:02"\n'
        '[[wearers.devices]]\nkind = "hr_strap"\naddress = "C0:FF:EE:00:00:01"\n'
    )
    return cfg


def by_name(checks: list) -> dict[str, tuple[str, str]]:  # type: ignore[type-arg]
    return {c.name: (c.status, c.detail) for c in checks}


def test_all_well_with_a_broker_and_a_sensor_in_range(mosquitto: Broker, tmp_path: Path) -> None:
    world = SimWorld()
    world.add(cgm_sensor("C0:FF:EE:00:00:02", "CGM-1"))
    checks = by_name(
        diagnose(write_cfg(tmp_path, mosquitto.port), scan_s=0.5, scanner_backend=sim_backends(world).scanner)
    )
    assert checks["python"][0] == "ok"
    assert checks["tflite runtime"][0] == "ok"
    assert checks["config"][0] == "ok"
    assert checks["database"] == ("ok", f"{tmp_path / 'vigil.db'} will be created (owner-only)")
    assert checks["broker"] == ("ok", f"127.0.0.1:{mosquitto.port}: Success")
    # The strap is not advertising: said, but only a warning.
    assert checks["bluetooth"][0] == "warn"
    assert "not heard: C0:FF:EE:00:00:01" in checks["bluetooth"][1]


def test_failures_are_named(tmp_path: Path) -> None:
    db = tmp_path / "vigil.db"
    db.write_bytes(b"")
    db.chmod(0o644)
    checks = by_name(diagnose(write_cfg(tmp_path, free_port()), scan_s=0))
    assert checks["database"][0] == "fail"
    assert "readable by others" in checks["database"][1]
    assert checks["broker"][0] == "fail"
    assert "cannot connect" in checks["broker"][1]
    assert "bluetooth" not in checks


def test_cli_exit_code_and_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[agent]\nsite = "a b"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "doctor", "--config", str(bad), "--scan", "0", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["config"]["status"] == "fail"
    assert "agent.site" in checks["config"]["detail"]
