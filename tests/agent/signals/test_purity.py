"""agent.signals stays pure: importing it pulls in no I/O stack, no TensorFlow and no scipy (DESIGN.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import agent.signals

FORBIDDEN = {"asyncio", "bleak", "paho", "sqlite3", "sqlite_utils", "socket", "tensorflow", "scipy", "tomllib"}


def test_importing_every_signals_module_loads_no_io_stack() -> None:
    package_dir = Path(agent.signals.__file__).parent
    modules = sorted(f"agent.signals.{p.stem}" for p in package_dir.glob("*.py") if p.stem != "__init__")
    assert {"agent.signals.rr", "agent.signals.glucose", "agent.signals.quality", "agent.signals.windows"} <= set(
        modules
    )
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=package_dir.parents[1]
    )
    loaded = set(json.loads(result.stdout))
    assert "numpy" in loaded
    assert loaded.isdisjoint(FORBIDDEN), loaded & FORBIDDEN
