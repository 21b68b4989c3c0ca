"""The interpreter loader: order, forcing, error wrapping, and that the agent never needs TensorFlow.

Runs without TensorFlow (the agent's venv). The ``tensorflow`` runtime itself is exercised in
``tests/model_build/test_tensorflow_runtime.py`` (builder).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from agent import runtime
from agent.errors import ModelError
from agent.runtime import RUNTIME_ENV, RuntimeLoadError, available_runtimes, load_interpreter
from tests.conftest import DEVICE_RUNTIMES, device_runtime_params, runtime_installed

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "models" / "tiny"
TINY_TFLITE = TINY / "tiny.tflite"


@pytest.fixture(autouse=True)
def _no_forced_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``import module`` fail with ImportError, as on a machine where it is not installed."""
    for module in modules:
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)


def test_ai_edge_litert_is_available_and_first() -> None:
    tensorflow_before = "tensorflow" in sys.modules
    found = available_runtimes()
    assert found[0] == "ai-edge-litert"
    assert ("tensorflow" in sys.modules) == tensorflow_before  # listing never imports TensorFlow


def test_default_search_uses_ai_edge_litert() -> None:
    interpreter, used = load_interpreter(TINY_TFLITE)
    assert used == "ai-edge-litert"
    assert interpreter.get_input_details()[0]["dtype"] == np.int8


@pytest.mark.parametrize("name", device_runtime_params())
def test_forced_by_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(RUNTIME_ENV, name)
    _, used = load_interpreter(TINY_TFLITE)
    assert used == name


@pytest.mark.parametrize("name", device_runtime_params())
def test_argument_overrides_environment(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    other = next(n for n in DEVICE_RUNTIMES if n != name)
    monkeypatch.setenv(RUNTIME_ENV, other)
    _, used = load_interpreter(TINY_TFLITE.read_bytes(), runtime=name)
    assert used == name


def test_falls_back_to_tflite_runtime_without_ai_edge_litert(monkeypatch: pytest.MonkeyPatch) -> None:
    if not runtime_installed("tflite-runtime"):
        pytest.skip("tflite-runtime is not installed here")
    _block(monkeypatch, "ai_edge_litert")
    assert available_runtimes()[0] == "tflite-runtime"
    _, used = load_interpreter(TINY_TFLITE)
    assert used == "tflite-runtime"


def test_no_runtime_at_all_lists_every_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    _block(monkeypatch, "ai_edge_litert", "tflite_runtime", "tensorflow")
    assert available_runtimes() == []
    with pytest.raises(RuntimeLoadError) as info:
        load_interpreter(TINY_TFLITE)
    assert [(a.runtime, a.stage) for a in info.value.attempts] == [
        ("ai-edge-litert", "import"),
        ("tflite-runtime", "import"),
        ("tensorflow", "import"),
    ]
    assert isinstance(info.value, ModelError)
    assert isinstance(info.value.__cause__, ImportError)
    assert info.value.model == "tiny"


def test_tflite_runtime_is_never_tried_after_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in module is enough: the guard looks at sys.modules, and loading tflite-runtime after a real
    # TensorFlow would raise ValueError: vector::reserve.
    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))
    assert "tflite-runtime" not in available_runtimes()
    with pytest.raises(RuntimeLoadError) as info:
        load_interpreter(TINY_TFLITE, runtime="tflite-runtime")
    assert [(a.runtime, a.stage) for a in info.value.attempts] == [("tflite-runtime", "skipped")]


def test_unknown_runtime_name_is_a_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "tflite")
    with pytest.raises(ModelError) as info:
        load_interpreter(TINY_TFLITE)
    assert RUNTIME_ENV in info.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_interpreter(tmp_path / "absent.tflite")
    assert info.value.model == "absent"


@pytest.mark.parametrize("name", device_runtime_params())
def test_garbage_is_wrapped_with_its_cause(name: str) -> None:
    with pytest.raises(RuntimeLoadError) as info:
        load_interpreter(b"this is not a flatbuffer" * 8, runtime=name, name="junk")
    assert [(a.runtime, a.stage) for a in info.value.attempts] == [(name, "load")]
    assert info.value.__cause__ is not None
    assert not isinstance(info.value.__cause__, ModelError)


def test_interpreter_class_table_matches_the_documented_order() -> None:
    assert runtime.RUNTIME_NAMES == ("ai-edge-litert", "tflite-runtime", "tensorflow")


AGENT_ONLY = """
import json, sys
from agent.models import load_models
from agent.runtime import load_interpreter
models, problems = load_models(sys.argv[1])
_, used = load_interpreter(sys.argv[1] + "/tiny.tflite")
out = models[0].predict([[0.8]] * 32).tolist()
print(json.dumps({"models": [m.name for m in models], "problems": [p.reason for p in problems],
                  "runtime": used, "tf": sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow"),
                  "tried": tried, "out": out}))
"""

# Records any attempt to import tensorflow, even where it is not installed (there the import would fail,
# and a guarded ``try: import tensorflow`` would pass unnoticed).
TRIPWIRE = """
import sys
tried = []
class _Tripwire:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            tried.append(name)
        return None
sys.meta_path.insert(0, _Tripwire())
"""


def test_agent_never_imports_tensorflow() -> None:
    env = {k: v for k, v in os.environ.items() if k != RUNTIME_ENV}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", TRIPWIRE + AGENT_ONLY, str(TINY)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["models"] == ["tiny"]
    assert report["problems"] == []
    assert report["runtime"] == "ai-edge-litert"
    assert report["tried"] == []
    assert report["tf"] == []
