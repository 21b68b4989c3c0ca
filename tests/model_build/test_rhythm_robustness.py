"""model_build.rhythm.robustness without TensorFlow: the simulated beat-detector errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_build.rhythm.data import Rhythm, RRRecord, load_set
from model_build.rhythm.errors import RhythmBuildError
from model_build.rhythm.robustness import detector_errors

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def record() -> RRRecord:
    r = load_set(FIXTURE_ROOT, "afdb").records[1]
    assert r.rhythm is not None
    assert {Rhythm.N, Rhythm.AFIB} <= set(r.rhythm.tolist())
    return r


def test_no_errors_no_jitter_no_clock_gives_the_record_back(record: RRRecord) -> None:
    out = detector_errors(record, 0.0, np.random.default_rng(0), jitter_s=0.0, fs_hz=None)
    assert np.allclose(out.rr_s, record.rr_s, atol=1e-9)
    assert np.allclose(out.t_s, record.t_s, atol=1e-6)
    assert out.rhythm is not None
    assert np.array_equal(out.rhythm, record.rhythm)


def test_errors_add_and_remove_beats_but_keep_the_record_span(record: RRRecord) -> None:
    rate = 0.1
    out = detector_errors(record, rate, np.random.default_rng(3), jitter_s=0.0, fs_hz=None)
    changed = abs(len(out) - len(record)) + np.count_nonzero(~np.isin(np.round(out.rr_s, 6), np.round(record.rr_s, 6)))
    assert changed > rate * len(record) / 4  # errors happened
    # beat times stay consistent with the intervals, and the record starts and ends where it did
    assert np.allclose(np.diff(out.t_s), out.rr_s[1:], atol=1e-9)
    assert out.t_s[0] - out.rr_s[0] == pytest.approx(record.t_s[0] - record.rr_s[0], abs=1e-6)
    assert out.t_s[-1] == pytest.approx(record.t_s[-1], abs=1e-6)
    # one label per detected interval, drawn from the record's own labels
    assert out.rhythm is not None
    assert record.rhythm is not None
    assert out.rhythm.shape == out.rr_s.shape
    assert set(out.rhythm.tolist()) <= set(record.rhythm.tolist())
    # a merged interval is longer than the record's longest, or a split one shorter than its shortest
    assert out.rr_s.max() > record.rr_s.max() or out.rr_s.min() < record.rr_s.min()


def test_jitter_and_the_detector_clock(record: RRRecord) -> None:
    out = detector_errors(record, 0.0, np.random.default_rng(1), jitter_s=0.004, fs_hz=300.0)
    assert len(out) == len(record)
    t0 = record.t_s[0] - record.rr_s[0]
    ticks = (out.t_s - t0) * 300.0
    assert np.allclose(ticks, np.round(ticks), atol=1e-6)  # on the 300 Hz sample clock
    moved = np.abs(out.t_s - record.t_s)
    assert 0.0 < moved.max() < 0.03
    assert np.all(out.rr_s >= 0.0)


def test_seeded_and_checked(record: RRRecord) -> None:
    a = detector_errors(record, 0.05, np.random.default_rng(7))
    b = detector_errors(record, 0.05, np.random.default_rng(7))
    assert np.array_equal(a.rr_s, b.rr_s)
    with pytest.raises(RhythmBuildError):
        detector_errors(record, 1.5, np.random.default_rng(0))
