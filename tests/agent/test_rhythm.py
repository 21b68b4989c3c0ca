"""The AF detector on the device: the packaged int8 bundle through the real runtime, fed one beat at a time, with
its gates, its k-of-n policy and its irregular-rhythm condition. No TensorFlow here; runs on both interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agent.alerts import HEART_IRREGULAR_RHYTHM, AlertEngine, Condition, all_kinds
from agent.config import Thresholds
from agent.errors import ModelError
from agent.models import PACKAGED_MODELS_DIR, LoadedModel, load_models
from agent.rhythm import (
    ENCODINGS,
    KIND,
    MODEL_NAME,
    AlertRule,
    KOfN,
    RhythmDetector,
    RhythmParams,
    model_input,
)
from agent.runtime import available_runtimes, load_interpreter
from agent.signals.quality import REASON_ARTIFACTS, REASON_NO_CONTACT
from model_build.rhythm.data import RRRecord, load_set
from model_build.rhythm.windows import set_windows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = json.loads((FIXTURES / "rr" / "rhythm_golden.json").read_text(encoding="utf-8"))
FLOAT_MODEL = Path(__file__).resolve().parents[2] / "model_build" / "rhythm" / "artifacts" / "rhythm_float.tflite"
T0 = 1_700_000_000.0

# int8 against float on the AF probability (a sigmoid output, step 1/256): one input scale for four channels
# in [-1, 1] and rounding through five layers. Measured on the golden windows: at most 0.039 (ai-edge-litert
# with its XNNPACK delegate) and 0.016 (builtin kernels); allowed 0.06. Over every afdb TRAIN window the largest
# difference is larger (the card's int8_vs_float_max_abs_train) where the sigmoid is steep, but the F1 at the
# threshold moves by 0.0002 (int8_minus_float_f1_train); the TEST figure is in the evaluation.
INT8_VS_FLOAT_TOLERANCE = 0.06
# The same int8 model in two runtimes: ai-edge-litert applies its XNNPACK delegate (not when tflite-runtime was
# imported first in the process, as in this module), tflite-runtime its builtin kernels; they round differently.
# Measured on the fixture's 463 windows: 29 differ, by at most 6 output steps (0.023). Allowed 8 steps.
INT8_RUNTIME_TOLERANCE_STEPS = 8


@pytest.fixture(scope="module", params=[r for r in available_runtimes() if r != "tensorflow"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    models, problems = load_models(PACKAGED_MODELS_DIR, runtime=request.param)
    assert [p for p in problems if p.name == MODEL_NAME] == []
    (rhythm,) = [m for m in models if m.name == MODEL_NAME]
    assert rhythm.runtime == request.param
    return rhythm


@pytest.fixture
def detector(model: LoadedModel) -> RhythmDetector:
    return RhythmDetector(model)


def _record(name: str) -> RRRecord:
    return load_set(FIXTURES, "afdb", keep=lambda r: r == name).records[0]


def test_the_packaged_bundle_is_small_int8_and_says_what_it_needs(model: LoadedModel) -> None:
    assert model.card is not None
    params = RhythmParams.from_json(model.card.params)
    channels = model_input(np.ones((1, params.windowing.n_beats)), params.encoding).shape[-1]
    assert model.input.shape == (1, params.windowing.n_beats, channels)
    assert model.output.shape == (1, 1)
    assert model.input.dtype == model.output.dtype == "int8"
    assert model.card.tflite.size <= 32 * 1024
    assert 1 <= params.alert.k <= params.alert.n
    assert params.encoding in ENCODINGS
    assert {"nrmssd_sinus_p95", "shannon_entropy_sinus_p95", "cosen_sinus_p95"} <= set(params.reference)
    assert RhythmParams.from_json(params.to_json()) == params


def test_golden_windows_int8_against_float_and_the_stored_outputs(model: LoadedModel) -> None:
    assert GOLDEN["sha256"] == model.sha256
    params = RhythmParams.from_json(model.card.params) if model.card else None
    assert params is not None
    table = set_windows(load_set(FIXTURES, "afdb").records, params.windowing, params.cleaning, params.limits)
    by_key = {
        (r, int(s)): i for i, (r, s) in enumerate(zip(table.record.tolist(), table.start_index.tolist(), strict=True))
    }
    rows = [by_key[(r, s)] for r, s in zip(GOLDEN["records"], GOLDEN["start_index"], strict=True)]
    from agent.signals.digest import window_sha256

    assert [window_sha256(table.rr_s[i]) for i in rows] == GOLDEN["window_sha256"]  # the cut did not drift
    x = model_input(table.rr_s[rows], params.encoding)
    p_int8 = model.predict(x).reshape(-1)
    step = model.output.scale
    assert np.max(np.abs(p_int8 - np.array(GOLDEN["int8_outputs"]))) <= INT8_RUNTIME_TOLERANCE_STEPS * step + 1e-6

    interpreter, _ = load_interpreter(FLOAT_MODEL.read_bytes(), runtime=model.runtime, name="rhythm-float")
    p_float = []
    for sample in x:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample[np.newaxis])
        interpreter.invoke()
        p_float.append(float(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)[0]))
    assert np.allclose(p_float, GOLDEN["float_outputs"], atol=1e-5)
    assert np.max(np.abs(p_int8 - np.array(p_float))) <= INT8_VS_FLOAT_TOLERANCE
    # the goldens span both classes, and the model gets them mostly right
    labels = np.array(GOLDEN["labels"])
    assert set(labels.tolist()) == {0, 1}
    assert np.mean((p_int8 >= params.threshold) == (labels == 1)) >= 0.8


def test_agent_and_model_build_cut_identical_windows_and_score_them_alike(
    model: LoadedModel, detector: RhythmDetector
) -> None:
    record = _record("04908")
    p = detector.params
    batch = set_windows([record], p.windowing, p.cleaning, p.limits)
    from agent.signals.digest import window_sha256

    seen: list[dict[str, object]] = []
    for t, rr in zip(record.t_s.tolist(), record.rr_s.tolist(), strict=True):
        _, state = detector.feed_rr("w", T0 + t, rr, "detected")
        if state is not None:
            seen.append(state)
    assert len(seen) == len(batch)
    assert [s["window"]["sha256"] for s in seen] == [window_sha256(r) for r in batch.rr_s]  # type: ignore[index]
    expected = model.predict(model_input(batch.rr_s, p.encoding)).reshape(-1)
    for state, ok, prob in zip(seen, batch.quality_ok.tolist(), expected.tolist(), strict=True):
        if ok:
            assert state["af_probability"] == pytest.approx(prob, abs=1e-4)
        else:
            assert state["af_probability"] is None


def _feed(
    detector: RhythmDetector, record: RRRecord, contact: str = "detected"
) -> tuple[list[Condition], list[dict[str, object]]]:
    conditions, states = [], []
    for t, rr in zip(record.t_s.tolist(), record.rr_s.tolist(), strict=True):
        found, state = detector.feed_rr("w", T0 + t, rr, contact)
        conditions.extend(found)
        if state is not None:
            states.append(state)
    return conditions, states


def test_an_af_stretch_raises_one_alert_that_names_model_window_and_irregularity(
    model: LoadedModel, detector: RhythmDetector
) -> None:
    record = _record("04746")  # sinus, then atrial fibrillation from 10433.5 s
    conditions, states = _feed(detector, record)
    engine = AlertEngine({"w": Thresholds()})
    events = [e for c in conditions for e in engine.assess(c)]
    raised = [e for e in events if e.state == "raised"]
    assert len(raised) == 1
    ev = raised[0]
    assert ev.kind == KIND == HEART_IRREGULAR_RHYTHM
    assert KIND in all_kinds()
    assert ev.t - T0 > 10433.5  # not before the AF began
    assert ev.t - T0 < 10433.5 + 300.0  # and within five minutes of it
    src = ev.source
    assert src["type"] == "model"
    assert src["model"] == {"name": model.name, "version": model.version, "sha256": model.sha256}
    assert set(src["window"]) == {"start", "end", "sha256"}
    assert len(src["window"]["sha256"]) == 64
    assert "normalised RMSSD" in ev.reason
    assert "sinus-rhythm windows" in ev.reason
    assert "irregular" in ev.reason
    assert ev.values["af_probability"] >= detector.params.threshold
    assert ev.thresholds["af_probability"] == detector.params.threshold
    scored = [s for s in states if s["af_probability"] is not None]
    assert scored[-1]["irregular"] is True


def test_sinus_rhythm_never_alerts(detector: RhythmDetector) -> None:
    records = load_set(FIXTURES, "nsr2db").records
    engine = AlertEngine({"w": Thresholds()})
    for record in records:
        conditions, states = _feed(detector, record)
        assert not [e for c in conditions for e in engine.assess(c) if e.state == "raised"]
        assert max(float(s["af_probability"] or 0.0) for s in states) < 0.5  # type: ignore[arg-type]


def test_no_skin_contact_suppresses_and_says_why(detector: RhythmDetector) -> None:
    conditions, states = _feed(detector, _record("04746"), contact="not_detected")
    assert conditions
    assert all(c.active is None for c in conditions)
    assert all("no skin contact" in c.reason for c in conditions)
    assert all(s["quality"]["ok"] is False for s in states)  # type: ignore[index]
    assert all(s["quality"]["reasons"][0] == REASON_NO_CONTACT for s in states)  # type: ignore[index]
    assert all(s["af_probability"] is None for s in states)


def test_artifacts_suppress_and_say_why(detector: RhythmDetector) -> None:
    rng = np.random.default_rng(3)
    rr = 0.8 + 0.01 * rng.standard_normal(400)
    rr[::5] = 0.15  # a false detection every fifth beat: out of range, an artifact
    t = np.cumsum(rr)
    reasons = set()
    for ti, ri in zip(t.tolist(), rr.tolist(), strict=True):
        found, state = detector.feed_rr("noisy", T0 + ti, ri, None)
        for c in found:
            assert c.active is None
            assert "artifact" in c.reason
        if state is not None:
            reasons.update(state["quality"]["reasons"])
    assert REASON_ARTIFACTS in reasons


def test_wearers_have_their_own_buffers(detector: RhythmDetector) -> None:
    af = _record("04746")
    for t, rr in zip(af.t_s.tolist()[:60], af.rr_s.tolist()[:60], strict=True):
        detector.feed_rr("a", T0 + t, rr, "detected")
    assert detector.feed_rr("b", T0, 0.8, "detected") == ([], None)


def test_k_of_n_raises_at_k_clears_at_none_and_forgets_old_windows() -> None:
    policy = KOfN(AlertRule(k=3, n=4, max_age_s=100.0))
    flags = [True, True, False, True, True, False, False, False, False]
    got = [policy.push(float(10 * i), f)[0] for i, f in enumerate(flags)]
    assert got == [None, None, None, True, True, None, None, None, False]
    policy = KOfN(AlertRule(k=2, n=4, max_age_s=15.0))
    assert policy.push(0.0, True)[0] is None
    assert policy.push(100.0, True) == (None, 1, 1)  # the first is too old to count


def test_bad_params_are_refused_as_model_errors(model: LoadedModel) -> None:
    assert model.card is not None
    good = RhythmParams.from_json(model.card.params).to_json()
    for broken in (
        {**good, "input": "nope"},
        {**good, "threshold": 1.5},
        {k: v for k, v in good.items() if k != "alert"},
    ):
        with pytest.raises(ModelError):
            RhythmParams.from_json(broken)
    with pytest.raises(ValueError, match="k <= n"):
        AlertRule(k=5, n=4, max_age_s=10.0)


def test_encodings_keep_every_channel_within_the_int8_range() -> None:
    rng = np.random.default_rng(0)
    rr = np.clip(0.8 * (1 + 0.4 * rng.standard_normal((64, 32))), 0.25, 2.0)
    for name in ENCODINGS:
        x = model_input(rr, name)
        assert x.dtype == np.float32
        assert x.shape[:2] == (64, 32)
        assert np.all(np.abs(x) <= 1.0)
    assert np.array_equal(
        model_input(rr, "rr_relative_density_cosen_v1")[:1], model_input(rr[:1], "rr_relative_density_cosen_v1")
    )
    with pytest.raises(ValueError, match="unknown input encoding"):
        model_input(rr, "nope")


def test_importing_the_detector_loads_no_tensorflow() -> None:
    script = "import sys, agent.rhythm; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_words_are_worked_out_only_when_the_engine_may_announce_them(detector: RhythmDetector) -> None:
    """Sinus rhythm, then AF, then sinus again, one wearer: the first verdict and every change carry the
    irregularity figures; a "regular" after "regular" (nearly every window of a wearer in sinus rhythm) does not."""
    sinus = load_set(FIXTURES, "nsr2db").records[0]
    af = _record("04746")
    onset = int(np.searchsorted(af.t_s, 10433.5)) + 50
    rr = np.concatenate([sinus.rr_s[:600], af.rr_s[onset : onset + 600], sinus.rr_s[600:1200]])
    t = T0 + np.cumsum(rr)
    engine = AlertEngine({"w": Thresholds()})
    told: list[tuple[bool | None, bool, str]] = []
    for ti, ri in zip(t.tolist(), rr.tolist(), strict=True):
        for c in detector.feed_rr("w", ti, ri, "detected")[0]:
            for e in engine.assess(c):
                told.append((c.active, "normalised RMSSD" in c.reason, e.state))
            if c.active is not None:
                told.append((c.active, "normalised RMSSD" in c.reason, ""))
    verdicts = [(active, worded) for active, worded, state in told if not state]
    assert verdicts[0] == (False, True)  # the first: an episode may be open from before a restart
    assert (False, False) in verdicts  # then regular after regular: no figures
    first_true = verdicts.index((True, True))
    assert all(worded for active, worded in verdicts[first_true:] if active)  # every "irregular" is worded
    back = next(i for i in range(first_true, len(verdicts)) if verdicts[i][0] is False)
    assert verdicts[back] == (False, True)  # the clearing verdict is worded
    assert all(v == (False, False) for v in verdicts[back + 1 :])
    assert [(state, worded) for _, worded, state in told if state] == [("raised", True), ("cleared", True)]
