"""``vigil doctor``: check, on the device itself, everything the agent needs before a night depends on it.

Each check says ok, warn or fail with a line of detail: Python, the TFLite runtimes, the model bundles, the
configuration, the database file and its permissions, the broker (connect and CONNACK, with TLS and credentials
as configured), and the Bluetooth adapter (a short scan, listing what it heard). Exit code 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.config import Config, MqttConfig, load_config
from agent.errors import AgentError


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


def register(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this device: runtimes, models, configuration, database, broker, Bluetooth",
        description="Check everything the agent needs on this device and say what is wrong, in words. "
        "Exit code 1 if a check failed.",
    )
    p.add_argument("--config", type=Path, help="the agent's configuration (TOML); without it, only local checks")
    p.add_argument("--scan", type=float, default=4.0, help="seconds to scan for Bluetooth devices; 0 skips it")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    checks = diagnose(args.config, scan_s=args.scan)
    if args.json:
        print(json.dumps({"checks": [asdict(c) for c in checks]}, indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{c.status.upper():<4}  {c.name:<{width}}  {c.detail}")
    return 1 if any(c.status == "fail" for c in checks) else 0


def diagnose(config: Path | None, *, scan_s: float = 4.0, scanner_backend: Any = None) -> list[Check]:
    checks = [_python(), _runtimes()]
    cfg: Config | None = None
    if config is not None:
        try:
            cfg = load_config(config)
            checks.append(Check("config", "ok", f"{config}: {len(cfg.wearers)} wearer(s), site {cfg.agent.site}"))
        except AgentError as exc:
            checks.append(Check("config", "fail", str(exc)))
    checks.append(_models(cfg))
    if cfg is not None:
        checks.append(_database(cfg.agent.db))
        checks.append(_broker(cfg.mqtt))
    if scan_s > 0:
        checks.append(_bluetooth(scan_s, scanner_backend, cfg))
    return checks


def _guard(name: str, fn: Callable[[], Check]) -> Check:
    try:
        return fn()
    except Exception as exc:  # a doctor reports what it finds, whatever breaks
        return Check(name, "fail", f"{type(exc).__name__}: {exc}")


def _python() -> Check:
    v = sys.version_info
    ok = v >= (3, 10)
    return Check("python", "ok" if ok else "fail", f"{v.major}.{v.minor}.{v.micro}" + ("" if ok else " (needs 3.10+)"))


def _runtimes() -> Check:
    from agent.runtime import available_runtimes

    found = available_runtimes()
    if not found:
        return Check("tflite runtime", "fail", "none importable: pip install ai-edge-litert (or vigil[tflite-runtime])")
    return Check("tflite runtime", "ok", ", ".join(found) + f" (the agent uses {found[0]})")


def _models(cfg: Config | None) -> Check:
    from agent.models import PACKAGED_MODELS_DIR, load_models

    models_dir = (cfg.agent.models_dir if cfg else None) or PACKAGED_MODELS_DIR
    loaded, problems = load_models(models_dir)
    detail = ", ".join([f"{m.name} {m.version}" for m in loaded] + [f"{p.name}: {p.reason}" for p in problems])
    if problems:
        return Check("models", "warn", f"{detail} (refused models fall back to the rules)")
    return Check("models", "ok", detail or "no models: rules only")


def _database(db: Path) -> Check:
    def check() -> Check:
        if db.exists():
            mode = stat.S_IMODE(db.stat().st_mode)
            if mode & 0o077:
                return Check("database", "fail", f"{db} is readable by others (mode {mode:o}): chmod 600 it")
            from agent.store import Store

            store = Store(db)
            try:
                return Check("database", "ok", f"{db}: schema {store.schema_version}, {store.used_bytes()} bytes")
            finally:
                store.close()
        parent = db.parent if str(db.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK):
            return Check("database", "fail", f"{parent} is not writable: the agent cannot create {db.name}")
        return Check("database", "ok", f"{db} will be created (owner-only)")

    return _guard("database", check)


def _broker(cfg: MqttConfig) -> Check:
    def check() -> Check:
        from agent.mqtt import connect_options, make_client

        done = threading.Event()
        result: list[str] = []
        client = make_client(cfg, f"vigil-doctor-{os.getpid()}")

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
            result.append(str(rc))
            done.set()

        client.on_connect = on_connect
        where = f"{cfg.host}:{cfg.port}" + (" (TLS)" if cfg.tls else "")
        try:
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, **connect_options(cfg, persistent=False))
        except OSError as exc:
            return Check("broker", "fail", f"{where}: cannot connect: {exc}")
        client.loop_start()
        try:
            if not done.wait(10):
                return Check("broker", "fail", f"{where}: no CONNACK within 10 s")
        finally:
            client.disconnect()
            client.loop_stop()
        ok = result[0] == "Success"
        return Check("broker", "ok" if ok else "fail", f"{where}: {result[0]}")

    return _guard("broker", check)


def _bluetooth(scan_s: float, scanner_backend: Any, cfg: Config | None) -> Check:
    def check() -> Check:
        from agent.ble import discover

        try:
            seen = asyncio.run(discover(scan_s, scanner_backend=scanner_backend))
        except AgentError as exc:
            return Check("bluetooth", "fail", f"{exc} (is bluetoothd running and the agent's user allowed D-Bus?)")
        wanted = {d.address.upper() for w in (cfg.wearers if cfg else ()) for d in w.devices if d.address}
        heard = {d.address.upper() for d in seen}
        missing = sorted(wanted - heard)
        detail = f"{len(seen)} device(s) heard in {scan_s:g} s"
        if missing:
            return Check("bluetooth", "warn", f"{detail}; not heard: {', '.join(missing)}")
        return Check("bluetooth", "ok", detail)

    return _guard("bluetooth", check)
