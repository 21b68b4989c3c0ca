"""Builder end to end: train a tiny 1D CNN, quantize to int8 in a child process, write the bundle, load it
through the agent, and hold the int8 outputs to the float ones. Needs TensorFlow: run in the build venv.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agent.models import FieldError, load_model, load_models, read_manifest
from model_build import fixtures
from model_build.bundle import write_bundle
from model_build.quantize import QuantizeError, quantize_int8

pytestmark = pytest.mark.builder

Array = npt.NDArray[np.float32]
Trained = tuple[Any, Array, Array]  # the Keras model, its training windows and labels

# int8 against float on a sigmoid output (a probability): input and output steps are 1/128 and 1/256, and
# three layers of rounding add to that; measured up to 0.04 on this model, allowed 0.06.
INT8_VS_FLOAT_TOLERANCE = 0.06
SMALL_TRAIN, SMALL_EPOCHS = 512, 6


@pytest.fixture(scope="module")
def trained() -> Trained:
    x, y = fixtures.make_data(SMALL_TRAIN, seed=10)
    model = fixtures.train(x, y, seed=10, epochs=SMALL_EPOCHS)
    return model, x, y


@pytest.fixture(scope="module")
def int8_bytes(trained: Trained) -> bytes:
    model, x, _ = trained
    return quantize_int8(model, x[:128], seed=10)


def _card_fields(x: Array, y: Array) -> dict[str, Any]:
    return {
        "params": {"window": fixtures.WINDOW},
        "training_data": [fixtures.data_identity(x, y, seed=10)],
        "metrics": {"float": {"accuracy": 0.5}, "int8": {"accuracy": 0.5}},
    }


def test_int8_bundle_agrees_with_float_keras(tmp_path: Path, trained: Trained, int8_bytes: bytes) -> None:
    model, x, y = trained
    card = write_bundle(tmp_path, "rhythm", int8_bytes, version="0.1.0", **_card_fields(x, y))

    loaded = load_model(tmp_path, "rhythm")
    digest = hashlib.sha256((tmp_path / "rhythm.tflite").read_bytes()).hexdigest()
    assert card.tflite.sha256 == digest == loaded.sha256
    assert read_manifest(tmp_path).bundles[0].sha256 == digest
    assert json.loads((tmp_path / "rhythm.json").read_text(encoding="utf-8"))["tflite"]["sha256"] == digest
    assert loaded.input.dtype == loaded.output.dtype == "int8"
    assert card.inputs == (loaded.input,)
    assert card.outputs == (loaded.output,)

    x_test, y_test = fixtures.make_data(128, seed=11)
    sweep = fixtures.make_sweep(16, seed=12)
    for inputs in (x_test, sweep):
        p_float = np.asarray(model.predict(inputs, verbose=0), dtype=np.float32)
        p_int8 = loaded.predict(inputs)
        assert p_int8.shape == p_float.shape
        np.testing.assert_allclose(p_int8, p_float, rtol=0, atol=INT8_VS_FLOAT_TOLERANCE)
    # Not a constant model: the comparison above would be empty if everything sat at 0 or 1.
    assert fixtures.accuracy(loaded.predict(x_test), y_test) > 0.9


def test_rewriting_a_bundle_replaces_its_entry(tmp_path: Path, trained: Trained, int8_bytes: bytes) -> None:
    _, x, y = trained
    fields = _card_fields(x, y)
    write_bundle(tmp_path, "a", int8_bytes, version="1", **fields)
    write_bundle(tmp_path, "b", int8_bytes, version="1", **fields)
    write_bundle(tmp_path, "a", int8_bytes, version="2", **fields)
    assert [(e.name, e.version) for e in read_manifest(tmp_path).bundles] == [("a", "2"), ("b", "1")]
    models, problems = load_models(tmp_path)
    assert (sorted(m.name for m in models), problems) == (["a", "b"], [])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json",
        "a.tflite",
        "b.json",
        "b.tflite",
        "manifest.json",
    ]


def test_an_invalid_card_writes_nothing(tmp_path: Path, trained: Trained, int8_bytes: bytes) -> None:
    _, x, y = trained
    fields = _card_fields(x, y)
    fields["metrics"] = {"float": {"accuracy": 0.5}}
    with pytest.raises(FieldError) as info:
        write_bundle(tmp_path / "out", "rhythm", int8_bytes, version="0.1.0", **fields)
    assert info.value.field == "metrics.int8"
    assert not (tmp_path / "out").exists()


def test_converter_failure_is_an_error_not_a_crash(trained: Trained) -> None:
    model, x, _ = trained
    wrong_window = x[:8, :16, :]  # the model takes 32 intervals
    with pytest.raises(QuantizeError) as info:
        quantize_int8(model, wrong_window)
    assert info.value.returncode is not None
    assert info.value.returncode > 0
    assert info.value.stderr_tail  # the converter's own message travels with the error


def test_quantization_is_deterministic(trained: Trained, int8_bytes: bytes) -> None:
    model, x, _ = trained
    assert quantize_int8(model, x[:128], seed=10) == int8_bytes
