"""The firmware bridge stays pure: importing all of it pulls in no I/O stack (DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import firmware_bridge

FORBIDDEN = {"bleak", "asyncio", "paho", "sqlite3", "sqlite_utils", "socket", "tensorflow"}


def test_importing_every_module_loads_no_io_stack() -> None:
    package_dir = Path(firmware_bridge.__file__).parent
    modules = sorted(f"firmware_bridge.{p.stem}" for p in package_dir.glob("*.py") if p.stem != "__init__")
    assert "firmware_bridge.registry" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=package_dir.parent
    )
    loaded = set(json.loads(result.stdout))
    assert "firmware_bridge" in loaded
    assert loaded.isdisjoint(FORBIDDEN), loaded & FORBIDDEN
