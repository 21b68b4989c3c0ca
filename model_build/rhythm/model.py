"""The small AF model: a 1D CNN over the encoded window, and its seeded, deterministic training.

TensorFlow is imported inside the functions only. Layers are plain Conv1D / pooling / Dense, which the TFLite
converter quantizes to full int8 cleanly (DEVELOPERS.md: recurrent layers crash it unless unrolled).

Training: Adam, binary cross-entropy, classes weighted to equal total weight (afdb's AF windows are the
minority once nsr2db's sinus windows are in), a fixed number of epochs chosen by record-wise cross-validation
on TRAIN (``model_build.rhythm.select``), no early stopping on any held-out data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ModelSpec:
    """The architecture and training settings (recorded in the card's ``build``)."""

    width: int = 16
    kernel: int = 5
    epochs: int = 10
    batch_size: int = 256
    learning_rate: float = 3e-3

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "kernel": self.kernel,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
        }


def build_model(n_beats: int, channels: int, spec: ModelSpec) -> Any:
    """The Keras model (not compiled). Every layer is named: the names end up in the ``.tflite``."""
    import tensorflow as tf

    layers = tf.keras.layers
    w, k = spec.width, spec.kernel
    return tf.keras.Sequential(
        [
            tf.keras.Input((n_beats, channels), name="rr_window"),
            layers.Conv1D(w, k, padding="same", activation="relu", name="conv_1"),
            layers.Conv1D(w, k, padding="same", activation="relu", name="conv_2"),
            layers.MaxPooling1D(2, name="pool_1"),
            layers.Conv1D(2 * w, 3, padding="same", activation="relu", name="conv_3"),
            layers.GlobalAveragePooling1D(name="pool_2"),
            layers.Dense(w, activation="relu", name="dense_1"),
            layers.Dense(1, activation="sigmoid", name="p_af"),
        ],
        name="rhythm",
    )


def seed_everything(seed: int) -> None:
    import tensorflow as tf

    # Names, counters and seeds are process-wide: start clean so that the same call trains the same model.
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def train(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], spec: ModelSpec, *, seed: int) -> Any:
    """Train a fresh model on ``(x, y)`` with balanced class weights; deterministic for a given seed."""
    import tensorflow as tf

    seed_everything(seed)
    model = build_model(x.shape[1], x.shape[2], spec)
    model.compile(optimizer=tf.keras.optimizers.Adam(spec.learning_rate), loss="binary_crossentropy")
    share = float(np.mean(y))
    weight = np.where(y >= 0.5, 0.5 / share, 0.5 / (1.0 - share)).astype(np.float32)
    model.fit(x, y, sample_weight=weight, epochs=spec.epochs, batch_size=spec.batch_size, shuffle=True, verbose=0)
    return model


def predict(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    if len(x) == 0:
        return np.zeros(0)
    return np.asarray(model.predict(x, batch_size=4096, verbose=0), dtype=np.float64).reshape(-1)
