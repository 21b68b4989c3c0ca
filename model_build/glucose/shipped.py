"""``vigil models evaluate glucose``: the shipped bundle, measured on any sets in the shared layout.

The int8 model is loaded as the agent loads it (``agent.models.load_model``: manifest, hashes, runtime).
Its card gives the forecaster params and the baselines fitted at build time (ridge coefficients, linear
span). The float reference is rebuilt from ``build.float_weights`` (checked against its sha256) when
TensorFlow is installed; without it, or when the weights file is missing, ``rmse_float`` is null and the
output says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.forecast import ForecastParams
from agent.models import PACKAGED_MODELS_DIR, LoadedModel, load_model
from model_build.glucose import baselines, data, evaluate
from model_build.glucose.build import NAME
from model_build.glucose.model import TrainConfig
from model_build.glucose.progress import bar as progress_bar

REPO_ROOT = Path(__file__).resolve().parents[2]


def float_reference(
    card_build: dict[str, Any], params: ForecastParams
) -> tuple[Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]] | None, str]:
    """The float model's predict function, or ``None`` and the reason."""
    info = card_build.get("float_weights") or {}
    path = REPO_ROOT / str(info.get("file", ""))
    if not info or not path.is_file():
        return None, f"float weights not found ({path})"
    if data.file_sha256(path) != info.get("sha256"):
        return None, f"float weights {path} do not match the card's sha256 (rebuilt since?)"
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return None, "TensorFlow is not installed (the build extra)"
    from model_build.glucose import model as net

    config = TrainConfig(**card_build["train_config"])
    keras_model = net.load_weights(config, params.length, params.horizons, path)
    return (lambda x: net.predict_float(keras_model, x)), "ok"


def _ticker(bar: Any) -> Callable[[str], None]:
    def tick(_: str) -> None:
        bar.update(1)

    return tick


def evaluate_shipped(
    data_root: Path,
    set_names: Sequence[str],
    *,
    models_dir: Path = PACKAGED_MODELS_DIR,
    progress: bool = True,
) -> dict[str, Any]:
    """Load the bundle, evaluate ``set_names`` (data errors raise before any work), return the JSON."""
    for name in set_names:
        data.cgm_file(data_root, name)  # a missing set is reported before anything runs
    int8: LoadedModel = load_model(models_dir, NAME)
    card = int8.card
    assert card is not None  # load_model always attaches the card
    params = ForecastParams.from_json(card.params)
    build_info = dict(card.build)
    base = build_info["baselines"]
    float_predict, float_note = float_reference(build_info, params)
    fc = evaluate.Forecasters(
        params=params,
        int8=int8,
        float_predict=float_predict,
        ridge=baselines.RidgeAR.from_json(dict(base["ridge"])),
        linear_span=int(base["linear_span_steps"]),
    )
    results: dict[str, Any] = {}
    bar = progress_bar(len(set_names), "sets", enabled=progress)
    for name in set_names:
        bar.set_postfix(set=name)
        cgm = data.load_set(data_root, name)
        sub = progress_bar(len(cgm.subjects), name, enabled=progress)
        t0 = time.perf_counter()
        results[name] = evaluate.evaluate_set(cgm, fc, on_subject=_ticker(sub))
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        results[name]["role"] = "TEST" if name in data.TEST_SETS else "TRAIN" if name in data.TRAIN_SETS else "other"
        sub.close()
        bar.update(1)
    bar.close()
    speed = evaluate.inference_ms(int8, params)
    bars = evaluate.bars(results, model_bytes=card.tflite.size, predict_ms=speed["predict_ms"])
    out = evaluate.issue_json(results)
    out["model"] = {**int8.describe(), "bytes": card.tflite.size}
    out["float_reference"] = float_note
    out["inference"] = speed
    out["bars"] = bars
    return out
