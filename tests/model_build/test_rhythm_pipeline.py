"""The rhythm build end to end on the committed fixture (TRAIN excerpts), with a tiny configuration: load, cut,
cross-validate, choose threshold and policy, train, quantize, bundle, then evaluate through the agent's code.
Needs TensorFlow: run in the build venv."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.models import load_model
from agent.rhythm import RhythmDetector, RhythmParams, model_input
from model_build.rhythm import model as rhythm_model
from model_build.rhythm.build import BuildResult, build_rhythm
from model_build.rhythm.config import CHOSEN, RhythmConfig
from model_build.rhythm.data import load_set
from model_build.rhythm.evaluate import evaluate_rhythm, write_card_metrics
from model_build.rhythm.model import ModelSpec
from model_build.rhythm.replay import replay_agent, replay_scores
from model_build.rhythm.windows import record_windows

pytestmark = pytest.mark.builder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = replace(
    CHOSEN,
    folds=2,
    model=ModelSpec(width=4, epochs=3, batch_size=64),
    policy_n=(1, 2, 4),
    policy_max_false_per_24h=1e9,  # the fixture's 0.4 h of sinus rhythm cannot hold a tiny model to 0.1/24 h
    calibration_samples=64,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildResult, Path]:
    out = tmp_path_factory.mktemp("rhythm")
    result = build_rhythm(
        FIXTURES,
        models_dir=out / "models",
        config=TINY,
        float_path=out / "rhythm_float.tflite",
        golden_path=out / "golden.json",
        progress=False,
        created="2025-01-01T00:00:00Z",
        log=lambda line: None,
    )
    return result, out


def test_the_build_writes_a_bundle_the_agent_loads(built: tuple[BuildResult, Path]) -> None:
    result, out = built
    model = load_model(out / "models", "rhythm")
    assert model.card is not None
    assert model.card.tflite.sha256 == result.card.tflite.sha256
    params = RhythmParams.from_json(model.card.params)
    assert params.windowing.n_beats == TINY.n_beats
    assert params.encoding == TINY.encoding
    assert model.card.tflite.size <= 32 * 1024
    assert {"cv_afdb_train_f1", "cv_nsr2db_train_false_alerts_per_24h"} <= set(model.card.metrics["float"])
    assert "int8_minus_float_f1_train" in model.card.metrics["int8"]
    assert {s.name for s in model.card.training_data} == {
        "rr/afdb/afdb_rr.csv.gz",
        "rr/afdb/afdb_rhythm_episodes.csv",
        "rr/nsr2db/nsr2db_rr.csv",
        "rr/nsr2db/nsr2db_records.csv",
    }
    build = dict(model.card.build)
    assert build["records"]["train"] == ["afdb/04746", "afdb/04908", "afdb/06426", "nsr2db/nsr001", "nsr2db/nsr002"]
    assert len(build["selection"]["policies"]) == sum(TINY.policy_n)
    golden = json.loads((out / "golden.json").read_text())
    assert golden["sha256"] == model.sha256
    assert len(golden["int8_outputs"]) == len(golden["float_outputs"])


def test_training_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    rr = 0.8 * (1 + np.where(rng.random((64, 1)) < 0.5, 0.2, 0.01) * rng.standard_normal((64, 32)))
    x = model_input(rr, TINY.encoding)
    y = (np.abs(rr - 0.8).mean(axis=1) > 0.05).astype(np.float32)
    a = rhythm_model.train(x, y, TINY.model, seed=4)
    b = rhythm_model.train(x, y, TINY.model, seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert np.array_equal(wa, wb)


def _evaluation_root(tmp: Path) -> Path:
    """The fixture's afdb excerpt as a set of another name: a set the loaders know by its layout only."""
    root = tmp / "data"
    (root / "rr" / "afdbx").mkdir(parents=True)
    for src in (FIXTURES / "rr" / "afdb").iterdir():
        shutil.copy(src, root / "rr" / "afdbx" / src.name.replace("afdb_", "afdbx_"))
    shutil.copytree(FIXTURES / "rr" / "shortrec", root / "rr" / "shortrec")
    return root


def test_evaluation_through_the_agent_reports_every_figure(built: tuple[BuildResult, Path], tmp_path: Path) -> None:
    _, out = built
    root = _evaluation_root(tmp_path)
    result = evaluate_rhythm(
        root, ["afdbx", "shortrec"], models_dir=out / "models", float_path=out / "rhythm_float.tflite", progress=False
    )
    keys = {
        "sensitivity",
        "specificity",
        "ppv",
        "f1",
        "auc",
        "f1_baseline",
        "int8_minus_float_f1",
        "false_alerts_per_24h",
    }
    for name in ("afdbx", "shortrec"):
        assert keys <= set(result["sets"][name])
    assert result["sets"]["afdbx"]["episodes"]["af_episodes_5min"] == 2  # 04908's 408 s and 04746's onset
    assert result["sets"]["shortrec"]["recordings"] == {"A": 6, "N": 6, "O": 0, "~": 1}
    assert result["timing"]["predict_ms_median"] < 1.0
    json.dumps(result, allow_nan=False)
    write_card_metrics(result, out / "models")
    card = load_model(out / "models", "rhythm").card
    assert card is not None
    assert "test:afdbx" in card.metrics
    assert card.created == "2025-01-01T00:00:00Z"


def test_replaying_scores_and_feeding_the_agent_give_the_same_alerts(built: tuple[BuildResult, Path]) -> None:
    _, out = built
    model = load_model(out / "models", "rhythm")
    assert model.card is not None
    params = RhythmParams.from_json(model.card.params)
    for record in load_set(FIXTURES, "afdb").records:
        table = record_windows(record, params.windowing, params.cleaning, params.limits)
        scores = np.zeros(len(table))
        ok = table.quality_ok
        scores[ok] = model.predict(model_input(table.rr_s[ok], params.encoding)).reshape(-1)
        by_scores = replay_scores(table.t_end_s, scores, ok, params.threshold, params.alert, float(record.t_s[-1]))
        by_agent = replay_agent(record, RhythmDetector(model, params))
        assert by_scores == by_agent


def test_config_is_recorded_whole() -> None:
    assert RhythmConfig().to_json()["encoding"] == CHOSEN.encoding
