"""The float model as a float32 ``.tflite`` (no quantization), converted in a child process.

``vigil models evaluate rhythm`` compares the int8 bundle with the float model on TEST; keeping the float model
as a float TFLite file lets it run through the same runtime loader (``agent.runtime``) without TensorFlow. The
conversion keeps the Keras graph's float32 arithmetic (measured against Keras on TRAIN windows: the build
records the largest difference in the card).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.runtime import load_interpreter
from model_build.quantize import DEFAULT_TIMEOUT_S, QuantizeError, run_child


def float_tflite(model: Any, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    """Convert a Keras model to a float32 ``.tflite`` in a child process; return the file's bytes."""
    with tempfile.TemporaryDirectory(prefix="vigil-float-") as tmp:
        model_path, out_path = Path(tmp) / "model.keras", Path(tmp) / "model.tflite"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
            model.save(model_path)
        run_child(
            [sys.executable, "-m", "model_build.rhythm.export", str(model_path), str(out_path)], timeout_s=timeout_s
        )
        if not out_path.is_file() or out_path.stat().st_size == 0:
            raise QuantizeError("the float converter exited cleanly but wrote no model")
        return out_path.read_bytes()


class FloatModel:
    """A float32 ``.tflite`` run through the agent's runtime loader, one window at a time."""

    def __init__(self, content: bytes, *, name: str = "rhythm-float") -> None:
        self._content = content
        self.interpreter, self.runtime = load_interpreter(content, name=name)
        self._in = int(self.interpreter.get_input_details()[0]["index"])
        self._out = int(self.interpreter.get_output_details()[0]["index"])

    def predict(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        out = np.empty(len(x))
        for i in range(len(x)):
            self.interpreter.set_tensor(self._in, x[i : i + 1].astype(np.float32))
            self.interpreter.invoke()
            out[i] = float(self.interpreter.get_tensor(self._out).reshape(-1)[0])
        return out


def convert(model_path: Path, out_path: Path) -> None:
    import tensorflow as tf

    model = tf.keras.models.load_model(model_path, compile=False)
    out_path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_build.rhythm.export", description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    convert(args.model, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
