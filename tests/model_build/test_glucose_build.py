"""The glucose build end to end on the committed fixture excerpt: train, int8 in a child process, bundle, card,
evaluation through the agent's runtime. Needs TensorFlow: run in the build venv (``-m builder``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.forecast import ForecastParams, GlucoseForecaster
from agent.models import load_models, read_manifest
from model_build.glucose import data
from model_build.glucose.build import GOLDEN_TOLERANCE_MG_DL, LENGTH, BuildOptions, build
from model_build.glucose.model import TrainConfig
from model_build.glucose.shipped import evaluate_shipped

pytestmark = pytest.mark.builder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ISSUE_HORIZON_KEYS = {"rmse", "rmse_float", "rmse_persistence", "rmse_ar2", "rmse_ridge", "mae", "mard_pct"}


def options(tmp: Path) -> BuildOptions:
    # azt1d's excerpt plays TRAIN (Subject 2 falls on the validation side of the split), t1d-uom's plays TEST.
    return BuildOptions(
        data_root=FIXTURES,
        models_dir=tmp / "models",
        weights_file=tmp / "weights.npz",
        train_sets=("azt1d",),
        test_sets=("t1d-uom",),
        stride=1,
        config=TrainConfig(epochs=3, batch_size=256),
        representative=300,
        progress=False,
        check_split=False,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("glucose")
    return tmp, build(options(tmp), log=lambda line: None)


def test_the_bundle_is_one_the_agent_loads_with_the_data_it_saw(built: tuple[Path, dict[str, Any]]) -> None:
    tmp, _ = built
    models, problems = load_models(tmp / "models")
    assert problems == []
    (model,) = models
    card = model.card
    assert card is not None
    assert card.tflite.size <= 64 * 1024
    assert [(e.name, e.sha256) for e in read_manifest(tmp / "models").bundles] == [("glucose", card.tflite.sha256)]
    fixture = FIXTURES / "cgm" / "azt1d" / "azt1d_cgm.csv.gz"
    assert [(s.name, s.sha256) for s in card.training_data] == [
        ("cgm/azt1d/azt1d_cgm.csv.gz", hashlib.sha256(fixture.read_bytes()).hexdigest())
    ]
    assert [d["name"] for d in card.build["evaluation_data"]] == ["cgm/t1d-uom/t1d-uom_cgm.csv.gz"]
    assert card.build["split"]["validation_subjects"] == ["azt1d/Subject 2"]
    assert card.build["float_weights"]["sha256"] == data.file_sha256(tmp / "weights.npz")
    for key in ("rmse", "mae", "mard_pct", "clarke_ab_pct", "coverage_80", "lag_min", "rmse_persistence"):
        assert f"t1d-uom.h30.{key}" in card.metrics["int8"]
    assert "t1d-uom.h30.rmse" in card.metrics["float"]
    params = ForecastParams.from_json(card.params)
    assert params.length == LENGTH
    assert params.alert_statistic in ("mean", "lower")
    GlucoseForecaster(model)  # the agent accepts the card's params for this model


def test_int8_and_float_agree_on_golden_windows(built: tuple[Path, dict[str, Any]]) -> None:
    _, out = built
    golden = out["card"]["build"]["golden"]
    assert golden["tolerance_mg_dl"] == GOLDEN_TOLERANCE_MG_DL
    assert golden["max_abs_diff_mg_dl"] <= GOLDEN_TOLERANCE_MG_DL
    for key in ("mean", "lower", "upper"):
        np.testing.assert_allclose(golden["int8"][key], golden["float"][key], atol=GOLDEN_TOLERANCE_MG_DL)
    # Not a constant model: the forecasts spread with the windows.
    assert np.std(np.asarray(golden["float"]["mean"])[:, 1]) > 10.0


def test_evaluate_reproduces_the_cards_figures_in_the_issues_shape(built: tuple[Path, dict[str, Any]]) -> None:
    tmp, out = built
    result = evaluate_shipped(FIXTURES, ["t1d-uom"], models_dir=tmp / "models", progress=False)
    s = result["sets"]["t1d-uom"]
    assert ISSUE_HORIZON_KEYS | {"clarke_ab_pct"} <= set(s["h30"]) & set(s["h60"])
    assert {"sensitivity", "false_alerts_per_day", "median_lead_min"} <= set(s["hypo"])
    assert 0.0 <= s["coverage_80"] <= 1.0
    assert result["float_reference"] == "ok"
    card = out["card"]
    for key in ("h15", "h30", "h60"):
        assert s[key]["rmse"] == pytest.approx(card["metrics"]["int8"][f"t1d-uom.{key}.rmse"], rel=1e-9)
        assert s[key]["rmse_float"] == pytest.approx(card["metrics"]["float"][f"t1d-uom.{key}.rmse"], rel=1e-6)
    assert s["hypo"]["events"] > 0  # the excerpt holds lows, so the alert path ran
    assert set(result["bars"]["sets"]["t1d-uom"]) >= {"h30_rmse_vs_persistence", "hypo_sensitivity", "coverage_80"}
    assert result["bars"]["model_bytes"]["met"]


def test_the_build_is_deterministic(built: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, out = built
    again = build(options(tmp_path), log=lambda line: None)
    assert again["card"]["tflite"]["sha256"] == out["card"]["tflite"]["sha256"]
    assert again["card"]["params"] == out["card"]["params"]
