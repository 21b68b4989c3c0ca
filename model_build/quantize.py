"""Full-int8 post-training quantization of a Keras model, in a child process.

The TFLite converter is C++ and can crash the interpreter that runs it: TensorFlow 2.21 segfaults on a Keras
GRU or LSTM layer that is not unrolled. So :func:`quantize_int8` saves the model and the representative data
to a temporary directory and converts them in ``python -m model_build.quantize``; a crash, a non-zero exit or
a timeout there becomes a :class:`QuantizeError` here and the build goes on to report it.

The int8 settings (:data:`INT8_SETTINGS`, recorded in the model card):

- ``optimizations = [tf.lite.Optimize.DEFAULT]`` with a ``representative_dataset``: post-training
  quantization calibrated on real inputs, one sample (batch 1) at a time, in the order given;
- ``target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]``: every op int8, or conversion fails
  (no silent float fallback);
- ``inference_input_type = inference_output_type = tf.int8``: the device feeds and reads int8 through the
  tensors' own scale and zero-point (``agent.models``).

This module imports TensorFlow only inside the child (:func:`convert`), so the builder's other code and the
tests can import it anywhere.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

INT8_SETTINGS: Mapping[str, object] = {
    "optimizations": ["DEFAULT"],
    "supported_ops": ["TFLITE_BUILTINS_INT8"],
    "inference_input_type": "int8",
    "inference_output_type": "int8",
    "representative_batch": 1,
}

DEFAULT_TIMEOUT_S = 600.0
_STDERR_TAIL_LINES = 20
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class QuantizeError(Exception):
    """The converter failed or crashed.

    ``returncode`` is the child's exit code (negative: killed by that signal; ``None``: timed out or never
    started) and ``stderr_tail`` the last lines it wrote to stderr.
    """

    def __init__(self, reason: str, *, returncode: int | None = None, stderr_tail: str = "") -> None:
        self.reason = reason
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        detail = f"\n--- converter stderr (tail) ---\n{stderr_tail}" if stderr_tail else ""
        super().__init__(f"int8 quantization: {reason}{detail}")


def quantize_int8(
    model: Any,
    representative: npt.NDArray[np.floating[Any]],
    *,
    seed: int = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """Quantize a Keras model (single input) to a full-int8 ``.tflite``; return the file's bytes.

    ``representative`` holds calibration samples with a leading sample axis, shaped like the model's input
    (``(n, *input_shape[1:])``), ideally a few hundred real training windows. The model must be loadable by
    ``keras.models.load_model`` without custom objects.
    """
    samples = np.asarray(representative, dtype=np.float32)
    if samples.ndim < 2 or samples.shape[0] == 0:
        raise QuantizeError(f"representative data needs shape (n>0, ...), got {samples.shape}")
    if not np.all(np.isfinite(samples)):
        raise QuantizeError("representative data has NaN or infinite values")
    with tempfile.TemporaryDirectory(prefix="vigil-quantize-") as tmp:
        work = Path(tmp)
        model_path = work / "model.keras"
        data_path = work / "representative.npy"
        out_path = work / "model.tflite"
        try:
            with warnings.catch_warnings():
                # TensorFlow 2.21's tensors implement __array__ without numpy 2's copy keyword; saving warns
                # about it once per variable. Not ours to fix, and harmless here: the values are copied.
                warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
                model.save(model_path)
        except Exception as exc:
            raise QuantizeError(f"cannot save the Keras model for the converter: {exc}") from exc
        np.save(data_path, samples)
        argv = [
            sys.executable,
            "-m",
            "model_build.quantize",
            str(model_path),
            str(data_path),
            str(out_path),
            "--seed",
            str(seed),
        ]
        run_child(argv, timeout_s=timeout_s)
        if not out_path.is_file() or out_path.stat().st_size == 0:
            raise QuantizeError("the converter exited cleanly but wrote no model")
        return out_path.read_bytes()


def run_child(argv: Sequence[str], *, timeout_s: float) -> None:
    """Run a converter child process; turn a crash, a failure or a timeout into :class:`QuantizeError`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise QuantizeError(f"the converter did not finish within {timeout_s:g} s") from exc
    except OSError as exc:
        raise QuantizeError(f"cannot start the converter: {exc}") from exc
    if proc.returncode == 0:
        return
    tail = "\n".join(proc.stderr.strip().splitlines()[-_STDERR_TAIL_LINES:])
    if proc.returncode < 0:
        try:
            how = signal.Signals(-proc.returncode).name
        except ValueError:
            how = f"signal {-proc.returncode}"
        raise QuantizeError(f"the converter crashed ({how})", returncode=proc.returncode, stderr_tail=tail)
    raise QuantizeError(
        f"the converter failed (exit code {proc.returncode})", returncode=proc.returncode, stderr_tail=tail
    )


def convert(model_path: Path, representative_path: Path, out_path: Path, *, seed: int) -> None:
    """The child's work: load the Keras model, quantize with :data:`INT8_SETTINGS`, write the ``.tflite``."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    model = tf.keras.models.load_model(model_path, compile=False)
    samples = np.load(representative_path).astype(np.float32)

    def representative_dataset() -> Iterator[list[npt.NDArray[np.float32]]]:
        for i in range(samples.shape[0]):
            yield [samples[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    out_path.write_bytes(converter.convert())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_build.quantize", description="Full-int8 quantization of a Keras model."
    )
    parser.add_argument("model", type=Path, help="a Keras model file (.keras)")
    parser.add_argument("representative", type=Path, help="calibration samples (.npy, shape (n, ...))")
    parser.add_argument("out", type=Path, help="where to write the int8 .tflite")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    convert(args.model, args.representative, args.out, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
