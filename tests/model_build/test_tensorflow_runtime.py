"""The loader beside TensorFlow. Needs TensorFlow: run in the build venv.

The ``tensorflow`` fallback runs the fixture, ai-edge-litert still loads after TensorFlow was imported, the
agent never imports TensorFlow where it is installed, and the committed fixture is what
``python -m model_build.fixtures`` builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agent.models import load_model
from agent.runtime import RUNTIME_ENV, available_runtimes

pytestmark = pytest.mark.builder

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "models" / "tiny"
GOLDEN: dict[str, Any] = json.loads((TINY / "golden.json").read_text(encoding="utf-8"))


def _check_goldens(got: npt.NDArray[np.float32], step: float) -> None:
    tol = GOLDEN["tolerance"]
    np.testing.assert_allclose(got, GOLDEN["int8_outputs"], rtol=0, atol=tol["int8_runtime_steps"] * step + 1e-7)
    np.testing.assert_allclose(got, GOLDEN["float_outputs"], rtol=0, atol=tol["int8_vs_float_abs"])


def test_agent_does_not_import_tensorflow_even_where_it_is_installed() -> None:
    code = (
        "import sys\n"
        "from agent.models import load_models\n"
        "models, problems = load_models(sys.argv[1])\n"
        "assert [m.name for m in models] == ['tiny'] and not problems, problems\n"
        "models[0].predict([[0.8]] * 32)\n"
        "assert 'tensorflow' not in sys.modules, 'agent imported tensorflow'\n"
        "print(models[0].runtime)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != RUNTIME_ENV}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(TINY)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "ai-edge-litert"


def test_tensorflow_fallback_runs_the_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNTIME_ENV, "tensorflow")
    model = load_model(TINY, "tiny")
    assert model.runtime == "tensorflow"
    _check_goldens(model.predict(np.asarray(GOLDEN["inputs"], dtype=np.float32)), model.output.scale)


def test_ai_edge_litert_loads_after_tensorflow(monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow  # noqa: F401 - the point: TensorFlow first, then the device runtime

    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert available_runtimes()[0] == "ai-edge-litert"
    assert "tflite-runtime" not in available_runtimes()
    model = load_model(TINY, "tiny")
    assert model.runtime == "ai-edge-litert"
    _check_goldens(model.predict(np.asarray(GOLDEN["inputs"], dtype=np.float32)), model.output.scale)


def test_committed_fixture_is_what_the_script_builds(tmp_path: Path) -> None:
    from model_build import fixtures

    card = fixtures.generate(tmp_path)
    committed = json.loads((TINY / "tiny.json").read_text(encoding="utf-8"))
    rebuilt = json.loads((tmp_path / "golden.json").read_text(encoding="utf-8"))
    np.testing.assert_allclose(rebuilt["float_outputs"], GOLDEN["float_outputs"], rtol=0, atol=0.02)
    if card.build["tensorflow"] == committed["build"]["tensorflow"]:
        # Same TensorFlow: seeds and op determinism make the build byte-for-byte reproducible.
        assert (tmp_path / "tiny.tflite").read_bytes() == (TINY / "tiny.tflite").read_bytes()
        assert (tmp_path / "tiny.json").read_bytes() == (TINY / "tiny.json").read_bytes()
        assert rebuilt == GOLDEN
