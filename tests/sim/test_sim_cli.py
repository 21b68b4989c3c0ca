"""`vigil replay`, `vigil score`, `vigil report` and `vigil record` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main

KNOWN = Path(__file__).parents[1] / "fixtures" / "scenarios" / "known.toml"
PNG = b"\x89PNG\r\n\x1a\n"


def test_replay_list_names_the_bundled_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert {"demo", "day-24h", "faults", "night-hypo"} <= set(names)
    assert "[needs simglucose]" in lines[names.index("night-hypo")]
    assert "needs" not in lines[names.index("demo")]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "known.db"
    assert main(["replay", str(KNOWN), "--db", str(db), "--hours", "3", "--broker", "none", "--quiet"]) == 0
    return db


def test_replay_prints_a_summary_and_the_score(replayed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The module's replay has run; a second one into the same (replay) database replaces it.
    assert main(["replay", str(KNOWN), "--db", str(replayed), "--hours", "3", "--broker", "none", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Replay finished: known, 1 wearer(s), 3 h" in out
    assert "3 rejected by the codecs" in out
    assert "Score of known" in out
    assert "glucose_urgent_low" in out


def test_score_writes_json(replayed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "score.json"
    assert main(["score", "--db", str(replayed), "--json", str(out)]) == 0
    assert "sensitivity" in capsys.readouterr().out
    score = json.loads(out.read_text())
    low = score["kinds"]["glucose_low"]
    assert {"events", "sensitivity", "false_alerts_per_day", "median_lead_min"} <= set(low)
    assert (low["events"], low["sensitivity"], low["false_alerts_per_day"]) == (1, 1.0, 0.0)
    assert score["wearer_days"] == pytest.approx(3 / 24)


def test_report_draws_the_pictures_and_the_page(replayed: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert main(["report", "--db", str(replayed), "--out", str(out)]) == 0
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert pictures == ["w-k-glucose.png", "w-k-heart.png"]
    for name in pictures:
        data = (out / name).read_bytes()
        assert data.startswith(PNG)
        assert len(data) > 20_000
    page = (out / "index.html").read_text()
    for name in pictures:
        assert f"src='{name}'" in page
    assert "glucose_low" in page
    assert "urgent low glucose" in page  # the alert list


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "no-such-scenario", "--db", str(tmp_path / "x.db")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vigil: ")
    assert "demo" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["score", "--db", str(tmp_path / "missing.db")]) == 1
    assert main(["record", "--out", str(tmp_path / "r.vrec")]) == 2
    assert main(["replay", "demo"]) == 2  # no --db
