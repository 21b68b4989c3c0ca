"""The forecaster network, its loss and its training. TensorFlow is imported inside the functions only.

Input ``(length, 2)`` from :func:`agent.forecast.encode_windows`; output ``3 * horizons`` values, in units of
``output_scale`` mg/dL of change from the window's last value: the mean forecast per horizon, then the 10%
quantile, then the 90% quantile (:func:`agent.forecast.decode_outputs`).

Loss: mean squared error of the mean outputs plus the pinball (quantile) loss of the two quantile outputs.

Architectures (chosen by measurement on TRAIN validation subjects; see ``model_build/glucose/README.md``):

- ``cnn``: three 1D convolutions of ``width`` filters, kernel 3, dilations 1, 2, 4 (valid padding, ReLU),
  flattened, a ``dense``-unit ReLU layer, a linear output layer. Converts to full int8 cleanly.
- ``gru`` / ``lstm``: one recurrent layer of ``width`` units, unrolled (TensorFlow 2.21's converter segfaults
  on a Keras GRU/LSTM that is not), then the same dense head.
- ``mlp``: flattened window, 64 and ``dense`` ReLU units, the same output layer (a non-sequence reference).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

ARCHITECTURES = ("cnn", "gru", "lstm", "mlp")
QUANTILES = (0.1, 0.9)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights besides the data (recorded in the card)."""

    architecture: str = "cnn"
    width: int = 16
    dense: int = 32
    epochs: int = 12
    batch_size: int = 1024
    learning_rate: float = 2e-3
    patience: int = 2
    seed: int = 20261130

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _tf_numpy2_quiet() -> Iterator[None]:
    """TensorFlow 2.21's variables implement ``__array__`` without numpy 2's ``copy`` keyword, and Keras warns
    about it when it reads the learning rate or the weights. Not ours to fix, and harmless: values are copied.
    Only that warning is silenced (pytest turns warnings into errors)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept a copy keyword")
        yield


def seed_everything(seed: int) -> None:
    """Seeds Python, numpy and TensorFlow and makes TensorFlow's ops deterministic."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def quantile_loss(horizons: int, quantiles: tuple[float, float] = QUANTILES) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    q_lo, q_hi = quantiles

    def loss(y_true: Any, y_pred: Any) -> Any:
        mean = y_pred[:, :horizons]
        e_lo = y_true - y_pred[:, horizons : 2 * horizons]
        e_hi = y_true - y_pred[:, 2 * horizons : 3 * horizons]
        mse = tf.reduce_mean(tf.square(y_true - mean))
        pin_lo = tf.reduce_mean(tf.maximum(q_lo * e_lo, (q_lo - 1.0) * e_lo))
        pin_hi = tf.reduce_mean(tf.maximum(q_hi * e_hi, (q_hi - 1.0) * e_hi))
        return mse + pin_lo + pin_hi

    return loss


def build_model(config: TrainConfig, length: int, horizons: int, channels: int = 2) -> Any:
    import keras
    from keras import layers

    if config.architecture not in ARCHITECTURES:
        raise ValueError(f"architecture {config.architecture!r} is not one of {ARCHITECTURES}")
    inputs = keras.Input((length, channels), name="window")
    x = inputs
    if config.architecture == "cnn":
        if length < 15:
            raise ValueError(f"the cnn's receptive field is 15 steps; a window of {length} is too short")
        for i, dilation in enumerate((1, 2, 4), start=1):
            x = layers.Conv1D(config.width, 3, dilation_rate=dilation, activation="relu", name=f"conv{i}")(x)
        x = layers.Flatten(name="flatten")(x)
    elif config.architecture == "gru":
        x = layers.GRU(config.width, unroll=True, name="gru")(x)
    elif config.architecture == "lstm":
        x = layers.LSTM(config.width, unroll=True, name="lstm")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(64, activation="relu", name="hidden")(x)
    x = layers.Dense(config.dense, activation="relu", name="dense")(x)
    outputs = layers.Dense(3 * horizons, name="forecast")(x)
    return keras.Model(inputs, outputs, name="glucose")


def train(
    config: TrainConfig,
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.float32],
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    *,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train from seeded initial weights, stop early on the validation loss, keep the best weights.

    ``y`` are the changes from each window's last value over ``output_scale``, one column per horizon.
    Returns the model and one ``{"epoch", "loss", "val_loss", "learning_rate"}`` per epoch."""
    import keras

    keras.backend.clear_session()  # fresh name counters and graph: a second build in one process is the same
    seed_everything(config.seed)
    horizons = int(y_train.shape[1])
    model = build_model(config, int(x_train.shape[1]), horizons, int(x_train.shape[2]))
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss=quantile_loss(horizons))
    history: list[dict[str, float]] = []

    class Record(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            row = {
                "epoch": float(epoch + 1),
                "loss": float(logs.get("loss", math.nan)),
                "val_loss": float(logs.get("val_loss", math.nan)),
                "learning_rate": float(logs.get("learning_rate", config.learning_rate)),
            }
            history.append(row)
            if on_epoch is not None:
                on_epoch(epoch + 1, row["loss"], row["val_loss"])

    callbacks = [
        keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(patience=1, factor=0.3),
        Record(),
    ]
    with _tf_numpy2_quiet():
        _fit(model, config, x_train, y_train, x_val, y_val, callbacks)
    return model, history


def _fit(
    model: Any,
    config: TrainConfig,
    x_train: npt.NDArray[np.float32],
    y_train: npt.NDArray[np.float32],
    x_val: npt.NDArray[np.float32],
    y_val: npt.NDArray[np.float32],
    callbacks: list[Any],
) -> None:
    model.fit(
        x_train,
        y_train,
        batch_size=config.batch_size,
        epochs=config.epochs,
        validation_data=(x_val, y_val),
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )


def predict_float(model: Any, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    with _tf_numpy2_quiet():
        out = model.predict(x, batch_size=8192, verbose=0)
    return np.asarray(out, dtype=np.float32)


def save_weights(model: Any, path: str | os.PathLike[str]) -> None:
    """The float weights as a plain ``.npz`` (arrays ``w0``, ``w1``, ...): the evaluation's float reference."""
    with _tf_numpy2_quiet():
        arrays = {f"w{i}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    np.savez(path, **arrays)


def load_weights(config: TrainConfig, length: int, horizons: int, path: str | os.PathLike[str]) -> Any:
    seed_everything(config.seed)
    model = build_model(config, length, horizons)
    with np.load(path) as data, _tf_numpy2_quiet():
        model.set_weights([data[f"w{i}"] for i in range(len(data.files))])
    return model
