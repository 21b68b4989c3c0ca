"""The tiny test model: a real int8 bundle, small and quick to rebuild, for the agent's tests.

    python -m model_build.fixtures                  # rewrites tests/fixtures/models/tiny/
    python -m model_build.fixtures --out DIR

A 1D CNN reads a window of 32 RR intervals (seconds) and says how likely the rhythm is irregular. It trains
for a few seconds on synthetic, seeded data: regular rhythms (a steady rate with respiratory sinus
arrhythmia and jitter) against irregular ones (each interval drawn independently around the mean). It is a
fixture for the model contract, not a detector: it has never seen a real recording.

Besides the bundle (``manifest.json``, ``tiny.json``, ``tiny.tflite``) the directory gets ``golden.json``:
held-out inputs (test windows, and a sweep from regular to irregular so the outputs are not all saturated)
with the Keras float outputs and the int8 outputs the agent's loader produced, and the tolerances the tests
hold runtimes to. Seeds and op determinism are set and the card's ``created`` time is
pinned, so a rebuild with the same TensorFlow version on the same kind of CPU gives the same bytes; another
version may not, and then the tests compare against the rebuilt goldens.

The data and model functions are shared with ``tests/model_build``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.models import DataSource, ModelCard, open_model
from model_build.bundle import write_bundle
from model_build.quantize import INT8_SETTINGS, quantize_int8

NAME = "tiny"
VERSION = "1.0.0"
CREATED = "2025-01-01T00:00:00Z"  # pinned: a rebuild must not differ by its timestamp
WINDOW = 32
SEED = 0
TRAIN_SAMPLES = 1024
TEST_SAMPLES = 256
EPOCHS = 12
BATCH_SIZE = 32
LEARNING_RATE = 0.01
CALIBRATION_SAMPLES = 200
GOLDEN_SAMPLES = 8
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "models" / NAME

# Stated tolerances, written into golden.json and used by the tests:
# - two int8 runtimes on the same int8 model may differ by one output step (rounding in their optimized
#   kernels): measured, tflite-runtime 2.14 and ai-edge-litert 2.3 differ by one step on some golden inputs;
# - int8 against float: calibration range and rounding through three layers; measured on this
#   fixture up to 0.04 (on sweep inputs near 0.5), allowed 0.06 (a probability in [0, 1]).
INT8_RUNTIME_TOLERANCE_STEPS = 1
INT8_VS_FLOAT_TOLERANCE = 0.06

Array = npt.NDArray[np.float32]


def make_data(n: int, seed: int) -> tuple[Array, Array]:
    """``n`` windows of RR intervals, shape ``(n, WINDOW, 1)``, and labels (1.0 = irregular), half each."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.float32)
    rng.shuffle(labels)
    mean_rr = rng.uniform(0.5, 1.2, size=(n, 1))
    t = np.arange(WINDOW)[None, :]
    breathing = 0.04 * mean_rr * np.sin(2 * np.pi * t / rng.uniform(3.0, 6.0, size=(n, 1)) + rng.uniform(0, 6.3))
    regular = mean_rr + breathing + rng.normal(0.0, 0.01, size=(n, WINDOW))
    irregular = mean_rr * (1.0 + rng.normal(0.0, 0.18, size=(n, WINDOW)))
    rr = np.where(labels[:, None] > 0, irregular, regular)
    rr = np.clip(rr, 0.3, 2.0)
    return rr[..., None].astype(np.float32), labels


def make_sweep(n: int, seed: int) -> Array:
    """``n`` windows from regular to irregular (interval spread 0 to 18 %).

    Golden inputs whose outputs span the whole probability range, not just the two saturated ends.
    """
    rng = np.random.default_rng(seed)
    spread = np.linspace(0.0, 0.18, n)[:, None]
    mean_rr = rng.uniform(0.5, 1.2, size=(n, 1))
    rr = mean_rr * (1.0 + spread * rng.standard_normal((n, WINDOW))) + rng.normal(0.0, 0.01, (n, WINDOW))
    windows: Array = np.clip(rr, 0.3, 2.0)[..., None].astype(np.float32)
    return windows


def data_identity(x: Array, y: Array, *, seed: int) -> DataSource:
    digest = hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()
    return DataSource(name=f"synthetic-rr-rhythm@seed{seed}-n{len(y)}-w{WINDOW}", sha256=digest)


def build_model() -> Any:
    """The tiny 1D CNN (Keras, not compiled). Every layer is named: names end up in the .tflite."""
    import tensorflow as tf

    layers = tf.keras.layers
    return tf.keras.Sequential(
        [
            tf.keras.Input((WINDOW, 1), name="rr_seconds"),
            layers.Conv1D(8, 3, activation="relu", name="conv_1"),
            layers.Conv1D(8, 3, activation="relu", name="conv_2"),
            layers.GlobalAveragePooling1D(name="pool"),
            layers.Dense(1, activation="sigmoid", name="p_irregular"),
        ],
        name=NAME,
    )


def train(x: Array, y: Array, *, seed: int = SEED, epochs: int = EPOCHS) -> Any:
    """Seeded, deterministic training of :func:`build_model` on ``(x, y)``."""
    import tensorflow as tf

    # Names, counters and seeds are process-wide: start clean so a model trained after others in the same
    # process (the tests) is the same model, byte for byte.
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = build_model()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(LEARNING_RATE),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0)
    return model


def accuracy(p: npt.NDArray[np.floating[Any]], y: Array) -> float:
    return float(np.mean((p.reshape(-1) >= 0.5) == (y.reshape(-1) >= 0.5)))


def generate(out_dir: Path) -> ModelCard:
    """Train, quantize and write the fixture bundle and its goldens into ``out_dir``."""
    import tensorflow as tf

    x_train, y_train = make_data(TRAIN_SAMPLES, SEED)
    x_test, y_test = make_data(TEST_SAMPLES, SEED + 1)
    model = train(x_train, y_train)
    tflite = quantize_int8(model, x_train[:CALIBRATION_SAMPLES], seed=SEED)

    p_float = np.asarray(model.predict(x_test, verbose=0), dtype=np.float32)
    int8 = open_model(tflite, name=NAME, version=VERSION)
    p_int8 = int8.predict(x_test)
    metrics = {
        "float": {"accuracy": accuracy(p_float, y_test)},
        "int8": {
            "accuracy": accuracy(p_int8, y_test),
            "max_abs_diff_vs_float": float(np.max(np.abs(p_int8 - p_float))),
        },
    }
    card = write_bundle(
        out_dir,
        NAME,
        tflite,
        version=VERSION,
        created=CREATED,
        params={"window": WINDOW, "feature": "rr_seconds", "output": "p_irregular"},
        training_data=[data_identity(x_train, y_train, seed=SEED)],
        metrics=metrics,
        build={
            "quantization": dict(INT8_SETTINGS),
            "calibration_samples": CALIBRATION_SAMPLES,
            "seed": SEED,
            "epochs": EPOCHS,
            "tensorflow": tf.__version__,
            "test_data": data_identity(x_test, y_test, seed=SEED + 1).name,
        },
    )

    x_golden = np.concatenate([x_test[:GOLDEN_SAMPLES], make_sweep(GOLDEN_SAMPLES, SEED + 2)])
    golden = {
        "model": NAME,
        "sha256": card.tflite.sha256,
        "inputs": x_golden.tolist(),
        "float_outputs": np.asarray(model.predict(x_golden, verbose=0), dtype=np.float32).tolist(),
        "int8_outputs": int8.predict(x_golden).tolist(),
        "int8_runtime": int8.runtime,
        "tolerance": {
            "int8_runtime_steps": INT8_RUNTIME_TOLERANCE_STEPS,
            "int8_vs_float_abs": INT8_VS_FLOAT_TOLERANCE,
        },
    }
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in golden.items())
    (out_dir / "golden.json").write_text("{\n" + lines + "\n}\n", encoding="utf-8")
    return card


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_build.fixtures", description="Rebuild the tiny model.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    card = generate(args.out)
    size = card.tflite.size
    print(f"{args.out}: {card.name} {card.version} {size} bytes sha256 {card.tflite.sha256}")
    print(f"metrics: {json.dumps(card.to_json()['metrics'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
