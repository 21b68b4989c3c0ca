"""Model bundles: the committed tiny fixture through every device runtime, and every way a bundle is refused.

The fixture (``tests/fixtures/models/tiny``) is rebuilt by ``python -m model_build.fixtures``; its
``golden.json`` holds inputs, the Keras float outputs, the int8 outputs and the stated tolerances.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.errors import ModelError
from agent.models import (
    MANIFEST_FILE,
    PACKAGED_MODELS_DIR,
    FieldError,
    HashMismatchError,
    LoadedModel,
    ModelCard,
    TensorSpec,
    dequantize,
    load_model,
    load_models,
    quantize,
    read_manifest,
)
from agent.runtime import RUNTIME_ENV, RuntimeLoadError
from tests.conftest import device_runtime_params

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "fixtures" / "models" / "tiny"
GOLDEN: dict[str, Any] = json.loads((TINY / "golden.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _no_forced_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNTIME_ENV, raising=False)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A private copy of the tiny bundle to damage."""
    out = tmp_path / "models"
    shutil.copytree(TINY, out)
    return out


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(json.dumps(data), encoding="utf-8")


# --- the fixture runs, on every device runtime ----------------------------------------------------------


@pytest.mark.parametrize("runtime", device_runtime_params())
def test_fixture_loads_and_matches_goldens(runtime: str) -> None:
    models, problems = load_models(TINY, runtime=runtime)
    assert problems == []
    [model] = models
    assert (model.name, model.version, model.runtime) == ("tiny", "1.0.0", runtime)
    assert model.sha256 == hashlib.sha256((TINY / "tiny.tflite").read_bytes()).hexdigest() == GOLDEN["sha256"]

    x = np.asarray(GOLDEN["inputs"], dtype=np.float32)
    got = model.predict(x)
    step = model.output.scale
    tolerance = GOLDEN["tolerance"]["int8_runtime_steps"] * step
    np.testing.assert_allclose(got, np.asarray(GOLDEN["int8_outputs"]), rtol=0, atol=tolerance + 1e-7)
    np.testing.assert_allclose(
        got, np.asarray(GOLDEN["float_outputs"]), rtol=0, atol=GOLDEN["tolerance"]["int8_vs_float_abs"]
    )
    # The goldens are not all saturated: a broken quantization could not hide in 0 and 1.
    assert np.sum((got > 0.15) & (got < 0.85)) >= 2


@pytest.mark.parametrize("runtime", device_runtime_params())
def test_runtime_is_forced_by_environment(monkeypatch: pytest.MonkeyPatch, runtime: str) -> None:
    monkeypatch.setenv(RUNTIME_ENV, runtime)
    assert load_model(TINY, "tiny").runtime == runtime


def test_card_is_complete() -> None:
    model = load_model(TINY, "tiny")
    card = model.card
    assert card is not None
    assert card.tflite.sha256 == model.sha256
    assert card.tflite.size == (TINY / "tiny.tflite").stat().st_size
    assert card.inputs == (model.input,)
    assert card.outputs == (model.output,)
    assert card.params["window"] == model.input.shape[1]
    assert set(card.metrics) >= {"float", "int8"}
    assert card.metrics["int8"]["accuracy"] > 0.9
    assert card.training_data
    assert all(len(s.sha256) == 64 for s in card.training_data)
    assert model.describe() == {
        "name": "tiny",
        "version": "1.0.0",
        "sha256": GOLDEN["sha256"],
        "runtime": "ai-edge-litert",
    }


def test_predict_shapes() -> None:
    model = load_model(TINY, "tiny")
    x = np.asarray(GOLDEN["inputs"], dtype=np.float32)
    batch = model.predict(x)
    assert batch.shape == (len(x), 1)
    assert model.predict(x[3]).shape == (1,)
    assert model.predict(x[3:4]).shape == (1, 1)
    np.testing.assert_array_equal(model.predict(x[3]), batch[3])
    assert batch.dtype == np.float32


@pytest.mark.parametrize(
    "x", [np.zeros((31, 1)), np.zeros((1, 32)), np.zeros((0, 32, 1)), np.zeros((2, 2, 32, 1))], ids=str
)
def test_predict_refuses_a_wrong_shape(x: npt.NDArray[np.float64]) -> None:
    with pytest.raises(ValueError, match="shape"):
        load_model(TINY, "tiny").predict(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_predict_refuses_non_finite_input(bad: float) -> None:
    x = np.full((32, 1), 0.8, dtype=np.float32)
    x[5, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        load_model(TINY, "tiny").predict(x)


# --- refusals -----------------------------------------------------------------------------------------


def test_flipped_byte_is_refused(bundle: Path) -> None:
    path = bundle / "tiny.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError) as info:
        load_model(bundle, "tiny")
    assert isinstance(info.value, ModelError)
    assert info.value.against == "manifest"
    assert info.value.actual == hashlib.sha256(bytes(data)).hexdigest()
    assert info.value.expected == GOLDEN["sha256"]

    models, problems = load_models(bundle)
    assert models == []
    [problem] = problems
    assert (problem.name, problem.version) == ("tiny", "1.0.0")
    assert isinstance(problem.error, HashMismatchError)
    assert problem.describe()["reason"] == problem.error.reason


def test_card_hash_is_checked_too(bundle: Path) -> None:
    # Manifest right, card wrong: the file's hash is held against the card as well.
    other = "0" * 64
    _edit_json(bundle / "tiny.json", lambda c: c["tflite"].__setitem__("sha256", other))
    with pytest.raises(HashMismatchError) as info:
        load_model(bundle, "tiny")
    assert (info.value.against, info.value.expected, info.value.actual) == ("card", other, GOLDEN["sha256"])


def test_manifest_hash_is_checked_even_when_the_card_agrees_with_the_file(bundle: Path) -> None:
    other = "f" * 64
    _edit_json(bundle / MANIFEST_FILE, lambda m: m["bundles"][0].__setitem__("sha256", other))
    with pytest.raises(HashMismatchError) as info:
        load_model(bundle, "tiny")
    assert (info.value.against, info.value.expected) == ("manifest", other)


def test_card_and_manifest_must_agree_on_version(bundle: Path) -> None:
    _edit_json(bundle / MANIFEST_FILE, lambda m: m["bundles"][0].__setitem__("version", "2.0.0"))
    with pytest.raises(FieldError) as info:
        load_model(bundle, "tiny")
    assert info.value.field == "version"


def test_missing_model_file(bundle: Path) -> None:
    (bundle / "tiny.tflite").unlink()
    with pytest.raises(ModelError) as info:
        load_model(bundle, "tiny")
    assert info.value.model == "tiny"
    assert isinstance(info.value.__cause__, FileNotFoundError)
    _, problems = load_models(bundle)
    assert [p.name for p in problems] == ["tiny"]


def test_missing_manifest_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    models, problems = load_models(tmp_path)
    assert models == []
    assert [p.name for p in problems] == ["manifest"]


def test_one_bad_bundle_does_not_stop_the_others(bundle: Path) -> None:
    shutil.copy(bundle / "tiny.tflite", bundle / "spare.tflite")
    card = json.loads((bundle / "tiny.json").read_text(encoding="utf-8"))
    card.update(name="spare", tflite=dict(card["tflite"], file="spare.tflite"))
    (bundle / "spare.json").write_text(json.dumps(card), encoding="utf-8")
    entry = {"name": "spare", "version": "1.0.0", "card": "spare.json", "tflite": "spare.tflite"}
    entry["sha256"] = GOLDEN["sha256"]
    _edit_json(bundle / MANIFEST_FILE, lambda m: m["bundles"].append(entry))
    (bundle / "tiny.tflite").write_bytes(b"\0" * 16)

    models, problems = load_models(bundle)
    assert [m.name for m in models] == ["spare"]
    assert [p.name for p in problems] == ["tiny"]


CARD_FIELDS = [
    "format",
    "name",
    "version",
    "created",
    "tflite",
    "tflite.sha256",
    "tflite.size",
    "inputs",
    "inputs[0].scale",
    "inputs[0].zero_point",
    "outputs",
    "outputs[0].shape",
    "params",
    "training_data",
    "training_data[0].sha256",
    "metrics",
    "metrics.float",
    "metrics.int8",
]


def _delete(card: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = card
    for part in parents:
        key, _, index = part.partition("[")
        node = node[key]
        if index:
            node = node[int(index.rstrip("]"))]
    key, _, index = last.partition("[")
    if index:
        del node[key][int(index.rstrip("]"))]
    else:
        del node[key]


@pytest.mark.parametrize("dotted", CARD_FIELDS)
def test_card_with_a_missing_field_is_refused_naming_it(bundle: Path, dotted: str) -> None:
    _edit_json(bundle / "tiny.json", lambda c: _delete(c, dotted))
    with pytest.raises(FieldError) as info:
        load_model(bundle, "tiny")
    assert (info.value.file, info.value.field, info.value.problem) == ("tiny.json", dotted, "missing")
    _, problems = load_models(bundle)
    assert isinstance(problems[0].error, FieldError)


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("format", 2),
        ("name", "../etc"),
        ("version", ""),
        ("created", "yesterday"),
        ("created", "2025-01-01T00:00:00"),
        ("tflite.sha256", "ABC"),
        ("tflite.size", 0),
        ("tflite.file", "../tiny.tflite"),
        ("inputs[0].scale", 0.0),
        ("inputs[0].scale", "0.1"),
        ("inputs[0].zero_point", 128),
        ("inputs[0].dtype", "float32"),
        ("outputs[0].shape", [1, 0]),
        ("training_data", []),
        ("metrics.int8", {"accuracy": "high"}),
        ("params", [32]),
        ("flavour", "extra field"),
    ],
)
def test_card_with_a_bad_value_is_refused_naming_it(bundle: Path, dotted: str, value: object) -> None:
    def edit(card: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node: Any = card
        for part in parents:
            key, _, index = part.partition("[")
            node = node[key][int(index.rstrip("]"))] if index else node[key]
        node[last] = value

    _edit_json(bundle / "tiny.json", edit)
    with pytest.raises(FieldError) as info:
        load_model(bundle, "tiny")
    assert info.value.field.startswith(dotted)


@pytest.mark.parametrize(
    ("dotted", "value"),
    [
        ("inputs[0].scale", 0.5),
        ("inputs[0].zero_point", 0),
        ("outputs[0].shape", [1, 2]),
        ("inputs[0].name", "x"),
    ],
)
def test_card_that_misdescribes_the_model_is_refused(bundle: Path, dotted: str, value: object) -> None:
    # The hash still matches (the .tflite is untouched): the card's specs are held to the real tensors.
    kind, rest = dotted.split("[0].")
    _edit_json(bundle / "tiny.json", lambda c: c[kind][0].__setitem__(rest, value))
    with pytest.raises(FieldError) as info:
        load_model(bundle, "tiny")
    assert info.value.field == dotted
    assert "model has" in info.value.problem


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda m: m["bundles"][0].__setitem__("tflite", "/etc/passwd.tflite"), "bundles[0].tflite"),
        (lambda m: m["bundles"][0].__setitem__("card", "../tiny.json"), "bundles[0].card"),
        (lambda m: m["bundles"][0].pop("sha256"), "bundles[0].sha256"),
        (lambda m: m["bundles"].append(copy.deepcopy(m["bundles"][0])), "bundles[1].name"),
        (lambda m: m.__setitem__("format", 9), "format"),
        (lambda m: m.pop("bundles"), "bundles"),
    ],
)
def test_bad_manifest_is_refused_naming_the_field(
    bundle: Path, edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    _edit_json(bundle / MANIFEST_FILE, edit)
    with pytest.raises(FieldError) as info:
        read_manifest(bundle)
    assert (info.value.file, info.value.field) == (MANIFEST_FILE, field)
    models, problems = load_models(bundle)
    assert (models, [p.name for p in problems]) == ([], ["manifest"])


def test_manifest_that_is_not_json(bundle: Path) -> None:
    (bundle / MANIFEST_FILE).write_text("{bundles: []", encoding="utf-8")
    _, problems = load_models(bundle)
    assert isinstance(problems[0].error, FieldError)


def test_no_runtime_is_a_problem(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("ai_edge_litert", "tflite_runtime", "tensorflow"):
        for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)  # import fails, as where it is not installed
    models, problems = load_models(bundle)
    assert models == []
    [problem] = problems
    assert isinstance(problem.error, RuntimeLoadError)
    assert [a.runtime for a in problem.error.attempts] == ["ai-edge-litert", "tflite-runtime", "tensorflow"]


def test_packaged_models_directory_has_a_valid_manifest() -> None:
    # Every bundle the package ships loads: hashes, cards and tensor specs agree.
    manifest = read_manifest(PACKAGED_MODELS_DIR)
    models, problems = load_models()
    assert problems == []
    assert [m.name for m in models] == [e.name for e in manifest.bundles]


# --- the card and the quantization arithmetic ----------------------------------------------------------


def test_card_round_trips_through_json() -> None:
    raw = json.loads((TINY / "tiny.json").read_text(encoding="utf-8"))
    card = ModelCard.from_json(raw)
    assert card.to_json() == raw
    assert ModelCard.from_json(json.loads(json.dumps(card.to_json()))) == card


def test_card_cannot_be_changed_after_loading() -> None:
    card = ModelCard.from_json(json.loads((TINY / "tiny.json").read_text(encoding="utf-8")))
    with pytest.raises(AttributeError):
        card.version = "9"  # type: ignore[misc]
    with pytest.raises(TypeError):
        card.params["window"] = 1  # type: ignore[index]


SPEC = TensorSpec(name="x", shape=(1, 32, 1), dtype="int8", scale=2 / 255, zero_point=-128)


@given(st.floats(min_value=0.0, max_value=SPEC.scale * 255, allow_nan=False, width=32))
def test_quantize_round_trip_is_within_half_a_step(value: float) -> None:
    q = quantize(np.asarray([value]), SPEC)
    assert q.dtype == np.int8
    assert abs(float(dequantize(q, SPEC)[0]) - value) <= SPEC.scale / 2 + 1e-6


@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
)
def test_quantize_is_monotonic_and_saturates(a: float, b: float) -> None:
    low, high = sorted((a, b))
    q = quantize(np.asarray([low, high, -1e6, 1e6]), SPEC).tolist()
    assert q[0] <= q[1]  # wrapping around at the int8 limits would break this
    assert q[2:] == [-128, 127]


def test_quantize_rounds_half_away_from_zero() -> None:
    spec = TensorSpec(name="x", shape=(1,), dtype="int8", scale=1.0, zero_point=0)
    assert quantize(np.asarray([0.5, 1.5, 2.5, -0.5, -2.5]), spec).tolist() == [1, 2, 3, -1, -3]


def test_loaded_model_uses_the_tensors_own_parameters() -> None:
    model = load_model(TINY, "tiny")
    assert isinstance(model, LoadedModel)
    # The fixture was calibrated on RR intervals in [0.3, 2.0] s: an input scale near 2/255.
    assert model.input.dtype == "int8"
    assert 0.005 < model.input.scale < 0.012
    assert model.output.scale == pytest.approx(1 / 256)  # TFLite's fixed scale for a logistic output
