"""``vigil build glucose`` and ``vigil models evaluate glucose``: help without TensorFlow, and clear errors for a
missing or malformed data folder (checked before any training). Runs in the device environment."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

VIGIL = [sys.executable, "-m", "agent.cli"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIGIL, *args], capture_output=True, text=True, check=False, timeout=120)


def test_help_loads_no_tensorflow() -> None:
    script = (
        "import sys, json, contextlib, io\n"
        "from agent.cli import build_parser\n"
        "p = build_parser()\n"
        "for argv in (['build', '--help'], ['models', 'evaluate', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            p.parse_args(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tqdm'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
    helped = run("build", "--help")
    assert helped.returncode == 0
    assert "glucose" in helped.stdout
    assert "--data" in helped.stdout


def test_a_missing_data_folder_is_named(tmp_path: Path) -> None:
    result = run("build", "glucose", "--data", str(tmp_path / "nowhere"), "--no-progress")
    assert result.returncode == 2
    assert str(tmp_path / "nowhere" / "cgm") in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_file_is_named_with_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "cgm" / "azt1d"
    folder.mkdir(parents=True)
    text = "subject_id,timestamp,glucose_value_mg_dl\na,2024-01-01 00:00:00,100\na,2024-01-01 00:05:00,lots\n"
    (folder / "azt1d_cgm.csv.gz").write_bytes(gzip.compress(text.encode()))
    result = run("models", "evaluate", "glucose", "--data", str(tmp_path), "--set", "azt1d", "--no-progress")
    assert result.returncode == 2
    assert f"{folder / 'azt1d_cgm.csv.gz'}:3: glucose value 'lots'" in result.stderr


def test_evaluate_names_a_set_that_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "cgm" / "azt1d").mkdir(parents=True)
    result = run("models", "evaluate", "glucose", "--data", str(tmp_path), "--set", "nosuch", "--no-progress")
    assert result.returncode == 2
    assert "nosuch" in result.stderr
