"""model_build.rhythm without TensorFlow: loaders for the three layouts, labels, split, metrics, baselines."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from agent.signals.rr import RRWindowing
from model_build.rhythm import split
from model_build.rhythm.baseline import cosen_score, fit_baselines
from model_build.rhythm.build import assign_folds, short_figures, snippets
from model_build.rhythm.data import (
    LAYOUT_BEAT_LABELS,
    LAYOUT_RECORD_LABELS,
    LAYOUT_TICKS,
    Rhythm,
    RRRecord,
    load_set,
)
from model_build.rhythm.errors import DataError
from model_build.rhythm.metrics import auc, scores_at, sensitivity_at_specificity, youden_threshold
from model_build.rhythm.windows import LABEL_AF, LABEL_NONE, LABEL_NOT_AF, label_windows, set_windows

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "fixtures"


def test_afdb_layout_loads_beats_labels_and_episodes() -> None:
    s = load_set(FIXTURE_ROOT, "afdb")
    assert s.layout == LAYOUT_BEAT_LABELS
    assert s.record_names() == ["04746", "04908", "06426"]
    r = s.records[1]
    # beat_sample at 250 Hz (inferred), rr_ms exact: successive beat times differ by the intervals
    assert np.allclose(np.diff(r.t_s), r.rr_s[1:], atol=1e-9)
    assert r.rhythm is not None
    assert {Rhythm.N, Rhythm.AFIB} <= set(r.rhythm.tolist())
    af = [e for e in r.episodes if e.rhythm == Rhythm.AFIB]
    assert af
    assert af[0].start_s == pytest.approx(4908.868)
    assert af[0].duration_s == pytest.approx(408.088)
    assert [f.path for f in s.files] == ["rr/afdb/afdb_rr.csv.gz", "rr/afdb/afdb_rhythm_episodes.csv"]
    assert all(len(f.sha256) == 64 for f in s.files)


def test_ticks_layout_places_beats_from_the_first_tick() -> None:
    s = load_set(FIXTURE_ROOT, "nsr2db")
    assert s.layout == LAYOUT_TICKS
    r = s.records[0]
    assert r.rhythm is None
    assert len(r) == 1200
    assert np.all(r.rr_s * 128 == np.round(r.rr_s * 128))  # 1/128 s ticks, exactly
    assert np.allclose(np.diff(r.t_s), r.rr_s[1:])


def test_record_labels_layout_keeps_a_labelled_recording_without_beats() -> None:
    s = load_set(FIXTURE_ROOT, "shortrec")
    assert s.layout == LAYOUT_RECORD_LABELS
    labels = {r.record: r.label for r in s.records}
    assert list(labels.values()).count("A") == 6
    assert list(labels.values()).count("N") == 6
    empty = [r for r in s.records if len(r) == 0]
    assert [r.label for r in empty] == ["~"]


def test_keep_drops_records_at_parse_time() -> None:
    s = load_set(FIXTURE_ROOT, "afdb", keep=lambda r: r == "04908")
    assert s.record_names() == ["04908"]
    with pytest.raises(DataError):
        s.select(["04043"])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize(
    ("name", "content", "problem_has"),
    [
        ("x_rr.csv", "record,beat,rr\na,1,2\n", "unknown layout"),
        ("x_rr.csv", "record,rr_ticks_128hz\na,12x\n", "line 2"),
        ("x_rr.csv", "record,beat_sample,rr_ms,rhythm\na,250,1000,N\na,500,1000,VT\n", "rhythm 'VT'"),
        ("x_rr.csv", "record,rr_ticks_128hz\n", "no data rows"),
        ("x_rr.csv.gz", None, "gzip"),
    ],
)
def test_malformed_sets_raise_data_error_naming_the_file(
    tmp_path: Path, name: str, content: str | None, problem_has: str
) -> None:
    path = tmp_path / "rr" / "x" / name
    if content is None:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not gzip at all")
    else:
        _write(path, content)
    with pytest.raises(DataError) as info:
        load_set(tmp_path, "x")
    assert info.value.file.endswith(name)
    assert problem_has in info.value.problem


def test_missing_set_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError):
        load_set(tmp_path, "afdb")


def test_window_labels_majority_af_and_flutter_unlabelled() -> None:
    n = 8
    rhythm = np.array([0] * 8 + [1] * 4 + [0] * 4 + [2] * 2 + [0] * 6 + [1] * 5 + [2] * 3 + [3] * 8, dtype=np.uint8)
    starts = np.array([0, 8, 16, 24, 32], dtype=np.int64)
    share, label = label_windows(rhythm, starts, n)
    assert share.tolist() == [0.0, 0.5, 0.0, 5 / 8, 0.0]
    # N only; AF half (>= 0.5); AFL present without AF majority; AF majority with AFL; J (junctional) is not AF
    assert label.tolist() == [LABEL_NOT_AF, LABEL_AF, LABEL_NONE, LABEL_AF, LABEL_NOT_AF]


def test_nsr2db_windows_are_sinus_by_documentation() -> None:
    s = load_set(FIXTURE_ROOT, "nsr2db")
    t = set_windows(s.records, RRWindowing(32, 16))
    assert len(t) > 0
    assert set(t.label.tolist()) == {LABEL_NOT_AF}


def test_split_names_the_six_afdb_and_ten_nsr2db_test_records() -> None:
    assert len(split.AFDB_TEST) == 6
    assert len(split.NSR2DB_TEST) == 10
    assert not split.NSR2DB_TEST & split.NSR2DB_TRAIN
    assert all(p.keep("04908") for p in split.TRAIN_PARTS if p.folder == "afdb")
    assert not any(p.keep("04043") for p in split.TRAIN_PARTS if p.folder == "afdb")
    with pytest.raises(ValueError, match="TRAIN"):
        split.evaluation_part("afdb")
    assert split.evaluation_part("mitdb").keep("100")


def test_folds_deal_each_set_out_separately() -> None:
    recs = [RRRecord("afdb", f"a{i}", np.zeros(0), np.zeros(0)) for i in range(10)]
    recs += [RRRecord("nsr2db", f"n{i}", np.zeros(0), np.zeros(0)) for i in range(5)]
    folds = assign_folds(recs, 5, seed=0)
    assert folds == assign_folds(recs, 5, seed=0)
    for f in range(5):
        assert sum(1 for k, v in folds.items() if v == f and k.startswith("afdb")) == 2
        assert sum(1 for k, v in folds.items() if v == f and k.startswith("nsr2db")) == 1


def test_snippets_keep_one_rhythm_pieces_only() -> None:
    r = load_set(FIXTURE_ROOT, "afdb", keep=lambda n: n == "04908").records[0]
    pieces = snippets(r, 30.0)
    assert pieces
    assert {p.label for p in pieces} == {"A", "N"}
    assert all(p.t_s[-1] <= 30.0 + 1e-9 for p in pieces)


def test_metrics_against_hand_counts() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.1, 0.3])
    w = scores_at(s, y, 0.5)
    assert (w.sensitivity, w.specificity, w.ppv) == (2 / 3, 3 / 4, 2 / 3)
    assert w.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # AUC: pairs (pos, neg) with pos > neg: 0.9 beats all 4, 0.8 beats all 4, 0.2 beats two 0.1s
    assert auc(s, y) == pytest.approx((4 + 4 + 2) / 12)
    assert math.isnan(scores_at(s[y == 0], y[y == 0], 0.5).sensitivity)
    assert youden_threshold(s, y) == pytest.approx(0.8)
    sens, thr = sensitivity_at_specificity(s, y, 1.0)
    assert (sens, thr) == (2 / 3, 0.8)


def test_baselines_separate_regular_from_irregular_windows() -> None:
    rng = np.random.default_rng(1)
    regular = 0.8 + 0.01 * rng.standard_normal((200, 32))
    irregular = 0.8 * (1 + 0.2 * rng.standard_normal((200, 32)))
    rr = np.concatenate([regular, irregular])
    y = np.array([0] * 200 + [1] * 200)
    best, both = fit_baselines(rr, y)
    assert {b.name for b in both} == {"cosen", "nrmssd_shannon"}
    assert best.train_f1 > 0.95
    assert np.mean(best.predict(rr) == (y == 1)) > 0.95
    assert np.isinf(cosen_score(np.array([[0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]]))[0])


def test_short_figures_count_unscored_recordings_as_no_af() -> None:
    from model_build.rhythm.build import ShortScores

    s = ShortScores(np.array(["A", "A", "N", "N"]), np.array([0.9, np.nan, 0.1, np.nan]), np.array([2, 0, 2, 0]))
    f = short_figures(s, 0.5)
    assert (f["sensitivity"], f["specificity"]) == (0.5, 1.0)
    assert (f["sensitivity_scored"], f["unscored_a"]) == (1.0, 1.0)


def test_vectorised_policy_matches_the_agents_k_of_n() -> None:
    from agent.rhythm import AlertRule, KOfN
    from model_build.rhythm.replay import policy_states

    rng = np.random.default_rng(7)
    t = np.cumsum(rng.choice([8.0, 9.0, 200.0], size=600, p=[0.6, 0.38, 0.02]))
    flags = rng.random(600) < 0.4
    for k, n in [(1, 1), (2, 3), (3, 4), (5, 8), (8, 8)]:
        rule = AlertRule(k=k, n=n, max_age_s=60.0)
        policy = KOfN(rule)
        expected = [policy.push(ti, fi)[0] for ti, fi in zip(t.tolist(), flags.tolist(), strict=True)]
        coded = [-1 if a is None else int(a) for a in expected]
        assert policy_states(t, flags, rule).tolist() == coded


def test_commands_name_missing_data_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from model_build.rhythm.cli import EXIT_INPUT, build_command, evaluate_command

    args = argparse.Namespace(data=tmp_path / "nowhere", models_dir=None, no_progress=True, set=None, json=None)
    assert build_command(args) == EXIT_INPUT
    assert "nowhere" in capsys.readouterr().err
    assert evaluate_command(args) == EXIT_INPUT
    assert "no such set folder" in capsys.readouterr().err


def test_default_data_root_follows_vigil_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from model_build.rhythm.cli import default_data_root

    monkeypatch.setenv("VIGIL_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("VIGIL_DATA")
    assert default_data_root().parts[-2:] == ("shared", "data")
