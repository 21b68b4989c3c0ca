"""``LoadedModel.predict`` for one sample (the agent's every call) gives bit for bit what the reference
quantize -> invoke -> dequantize gives, on both packaged models and every device runtime installed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from agent.models import (
    PACKAGED_MODELS_DIR,
    LoadedModel,
    TensorSpec,
    dequantize,
    load_model,
    quantize,
    quantize_thresholds,
)
from tests.conftest import device_runtime_params


def reference(model: LoadedModel, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The documented arithmetic, step by step, on a second interpreter of the same file."""
    from agent.runtime import load_interpreter

    content = (PACKAGED_MODELS_DIR / f"{model.name}.tflite").read_bytes()
    interpreter, _ = load_interpreter(content, runtime=model.runtime)
    interpreter.set_tensor(int(interpreter.get_input_details()[0]["index"]), quantize(x, model.input))
    interpreter.invoke()
    return dequantize(interpreter.get_tensor(int(interpreter.get_output_details()[0]["index"])), model.output)


def inputs(model: LoadedModel) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(7)
    shape = model.input.shape
    scale, zp = model.input.scale, model.input.zero_point
    halves = ((rng.integers(-140, 140, shape) - zp) + 0.5) * scale  # exactly between two steps (rounding)
    return [
        rng.uniform(-1.0, 1.0, shape).astype(np.float32),
        rng.normal(0.0, 3.0, shape).astype(np.float32),  # beyond the int8 range: saturates
        halves.astype(np.float32),
        (-halves).astype(np.float32),
        np.zeros(shape, np.float32),
        np.full(shape, -0.0, np.float32),
        np.full(shape, 3.0e38, np.float32),  # huge but finite: saturates, no error
    ]


@pytest.mark.parametrize("runtime", device_runtime_params())
@pytest.mark.parametrize("name", ["glucose", "rhythm"])
def test_one_sample_matches_the_reference_arithmetic(runtime: str, name: str) -> None:
    model = load_model(PACKAGED_MODELS_DIR, name, runtime=runtime)
    for x in inputs(model):
        want = reference(model, x)
        got = model.predict(x)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(model.predict(x[0]), want[0])  # without the batch axis
        stacked = model.predict(np.stack([x[0], x[0]]))  # the general path agrees
        np.testing.assert_array_equal(stacked[1], want[0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_sample_with_a_non_finite_value_is_refused(bad: float) -> None:
    model = load_model(PACKAGED_MODELS_DIR, "rhythm")
    x = np.zeros(model.input.shape, np.float32)
    x.flat[5] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.predict(x)


SPECS = [
    TensorSpec("a", (1, 4), "int8", 0.007371189072728157, -9),  # the packaged rhythm model's input
    TensorSpec("b", (1, 4), "int8", 0.0235294122248888, -1),  # the glucose model's
    TensorSpec("c", (1, 4), "int8", 1.0 / 255.0, -128),  # inputs in [0, 1]
    TensorSpec("d", (1, 4), "int8", 0.5, 127),  # everything above -0.25 saturates
    TensorSpec("e", (1, 4), "int8", 1e-30, 3),  # tiny steps: nearly everything saturates
    TensorSpec("f", (1, 4), "int8", 1e30, 0),  # huge steps: nearly everything is the zero point
]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_thresholds_reproduce_quantize_at_every_step_and_beside_it(spec: TensorSpec) -> None:
    """quantize is a step function of the float32 input: the fast path searches its steps. At each step, the
    float32 just below it, and values of every magnitude, the search gives what quantize gives."""
    thresholds = quantize_thresholds(spec)
    assert thresholds.dtype == np.float32
    assert thresholds.shape == (255,)
    assert np.all(np.diff(thresholds) >= 0)
    steps = thresholds[np.isfinite(thresholds)]
    rng = np.random.default_rng(11)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate(
        [
            steps,
            np.nextafter(steps, np.float32(-np.inf)),
            np.nextafter(steps, np.float32(np.inf)),
            bits[np.isfinite(bits)],  # every exponent
            rng.uniform(-300 * spec.scale, 300 * spec.scale, 100_000).astype(np.float32),
            np.array([0.0, -0.0, np.finfo(np.float32).max, -np.finfo(np.float32).max], dtype=np.float32),
        ]
    )
    with np.errstate(over="ignore"):
        want = quantize(x, spec)
    got = thresholds.searchsorted(x, side="right") - 128
    np.testing.assert_array_equal(got, want.astype(np.int64))
