"""Loading CGM sets in the shared layout: the cleaning rules, and errors that name the file and the problem.

numpy only (no TensorFlow): runs in the device environment too.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from agent.signals.glucose import GlucoseWindowing, glucose_windows, resample_glucose
from model_build.glucose import data
from model_build.glucose.errors import DataError, SplitError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEADER = "subject_id,timestamp,glucose_value_mg_dl\n"


def write_set(root: Path, name: str, body: str, *, gz: bool = True, header: str = HEADER) -> Path:
    folder = root / "cgm" / name
    folder.mkdir(parents=True, exist_ok=True)
    text = (header + body).encode()
    if gz:
        path = folder / f"{name}_cgm.csv.gz"
        path.write_bytes(gzip.compress(text))
    else:
        path = folder / f"{name}_cgm.csv"
        path.write_bytes(text)
    return path


def test_any_set_in_the_layout_loads_and_is_cleaned_by_the_stated_rules(tmp_path: Path) -> None:
    write_set(
        tmp_path,
        "my-clinic",
        "a,2024-01-01 00:00:00,100\n"
        "a,2024-01-01 00:05,Low\n"  # a device string, and a timestamp without seconds
        "b,2024-01-01T00:00:00,HIGH\n"
        "a,2024-01-01 00:10:00,1.8\n"  # impossible: a unit error
        "a,2024-01-01 00:15:00,\n"  # blank: no value
        "b,2024-01-01 00:05:00,120.5\n"
        "a,2024-01-01 00:20:00,601\n",
        gz=False,
    )
    assert data.available_sets(tmp_path) == ["my-clinic"]
    cgm = data.load_set(tmp_path, "my-clinic")
    assert [s.subject_id for s in cgm.subjects] == ["a", "b"]
    a, b = cgm.subjects
    assert a.t_s.tolist() == [1704067200.0 + k for k in (0, 300, 600, 900, 1200)]
    assert np.isnan(a.mg_dl[1:]).all()
    assert a.mg_dl[0] == 100.0
    assert a.below_range.tolist() == [False, True, False, False, False]
    assert b.above_range.tolist() == [True, False]
    assert b.mg_dl[1] == 120.5
    assert cgm.cleaning.to_json() == {"rows": 7, "blank": 1, "below_range": 1, "above_range": 1, "impossible": 2}
    # Low counts in the truth grid, never in the model's grid.
    assert a.truth_grid().mg_dl[:2].tolist() == [100.0, data.LOW_STAND_IN]
    assert a.grid().mg_dl.tolist() == [100.0]
    assert cgm.file.name == "cgm/my-clinic/my-clinic_cgm.csv"
    assert len(cgm.file.sha256) == 64


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("a,2024-01-01 00:00:00,100\na,yesterday,100\n", 3, "timestamp"),
        ("a,2024-13-01 00:00:00,100\n", 2, "timestamp"),
        ("a,2024-01-01 00:00:00,about 100\n", 2, "glucose value"),
        ("a,2024-01-01 00:00:00,nan\n", 2, "not finite"),
        ("a,2024-01-01 00:00:00\n", 2, "columns"),
        (",2024-01-01 00:00:00,100\n", 2, "subject_id"),
        ("", 2, "no readings"),
    ],
)
def test_malformed_rows_name_the_file_and_the_line(tmp_path: Path, body: str, line: int, what: str) -> None:
    path = write_set(tmp_path, "bad", body)
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path, "bad")
    assert info.value.file == str(path)
    assert info.value.line == line
    assert what in info.value.problem


def test_a_wrong_header_or_a_broken_file_is_named(tmp_path: Path) -> None:
    write_set(tmp_path, "hdr", "a,2024-01-01 00:00:00,100\n", header="id,time,value\n")
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path, "hdr")
    assert (info.value.line, "header" in info.value.problem) == (1, True)
    broken = tmp_path / "cgm" / "gz" / "gz_cgm.csv.gz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path, "gz")
    assert info.value.file == str(broken)
    assert "gzip" in info.value.problem


def test_a_missing_folder_or_set_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path / "nowhere", "azt1d")
    assert info.value.file.endswith("cgm")
    write_set(tmp_path, "there", "a,2024-01-01 00:00:00,100\n")
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path, "azt1d")
    assert "there" in info.value.problem  # lists the sets it did find
    (tmp_path / "cgm" / "empty").mkdir()
    with pytest.raises(DataError) as info:
        data.load_set(tmp_path, "empty")
    assert info.value.problem.startswith("missing")


def test_default_data_root_is_beside_the_checkout_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    repo = Path(data.__file__).resolve().parents[2]
    assert data.default_data_root() == repo.parent / "shared" / "data"
    monkeypatch.setenv(data.DATA_ENV, "/somewhere/else")
    assert data.default_data_root() == Path("/somewhere/else")


def test_training_refuses_a_test_set() -> None:
    data.check_split(["azt1d", "brist1d-open"], allowed=data.TRAIN_SETS, role="TRAIN")
    with pytest.raises(SplitError) as info:
        data.check_split(["azt1d", "physiocgm"], allowed=data.TRAIN_SETS, role="TRAIN")
    assert info.value.set_name == "physiocgm"


def test_the_fixture_excerpt_loads_with_the_agents_windows() -> None:
    """The committed excerpt (CC BY TRAIN rows, DATA_LICENSES.md) is cut by agent.signals, as in the build."""
    cgm = data.load_set(FIXTURES, "azt1d")
    assert [s.subject_id for s in cgm.subjects] == ["Subject 1", "Subject 4", "Subject 2"]
    windowing = GlucoseWindowing(24)
    for subject in cgm.subjects:
        w = subject.windows(windowing)
        batch = glucose_windows(resample_glucose(subject.t_s, subject.mg_dl), windowing)
        assert len(w) > 100
        assert w.past.tobytes() == batch.past.tobytes()
        assert np.all(np.isfinite(w.targets))
    assert math.isclose(cgm.days, 8.0, abs_tol=0.1)  # 3 + 2 + 3 days
