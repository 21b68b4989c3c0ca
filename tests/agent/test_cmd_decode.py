"""``vigil decode`` and ``vigil fuzz`` as a person debugging a device meets them: processes, stdout, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from agent.cmd_decode import MalformedInput, decode_stream, parse_hex
from firmware_bridge.fuzz import FuzzReport, Unexpected, default_targets

VIGIL = [sys.executable, "-m", "agent.cli"]
ROOT = Path(__file__).parents[2]

HR = {"hr_bpm": 85, "sensor_contact": "detected", "energy_expended_kj": 50, "rr_intervals_s": [33 / 1024]}
CGM_RECORD_5 = {
    "glucose_mg_dl": 120.0,
    "time_offset_min": 5,
    "trend_mg_dl_per_min": None,
    "quality_pct": None,
    "crc_ok": None,
    "status_annunciation": [],
    "special_values": {},
}


def vigil(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIGIL, *args], input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_single_payload_prints_one_json_object() -> None:
    proc = vigil("decode", "2A37", "1e5532002100")
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1
    assert json.loads(proc.stdout) == HR
    assert proc.stderr == ""


@pytest.mark.parametrize(
    "hex_args",
    [
        ["1E5532002100"],
        ["1e:55:32:00:21:00"],
        ["0x1E-55-32-00-21-00"],
        ["1e 55 32 00 21 00"],
        ["1e", "55", "32", "00", "21", "00"],
        ["(0x)", "1E-55-32-00-21-00"],
    ],
)
def test_hex_spellings(hex_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "0x2a37", *hex_args]) == 0
    assert json.loads(capsys.readouterr().out) == HR


def test_several_records_give_records() -> None:
    proc = vigil("decode", "2AA7", "06000c10050006000c100600")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"records": [CGM_RECORD_5, {**CGM_RECORD_5, "time_offset_min": 6}]}


@pytest.mark.parametrize(
    ("args", "error_type"),
    [
        (["2A19", "ff"], "ReservedValueError"),
        (["2AA7", "08000c100600586f"], "CrcMismatchError"),
        (["2A37", ""], "TruncatedError"),
        (["2A18", "01"], "UnknownCharacteristicError"),
        (["heart", "01"], "InvalidUuidError"),
        (["2A37", "1e5"], "MalformedInput"),
        (["2A37", "zz"], "MalformedInput"),
    ],
)
def test_single_rejected_payload_exits_1_with_the_error_on_stdout(args: list[str], error_type: str) -> None:
    proc = vigil("decode", *args)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["error_type"] == error_type
    assert result["error"]
    assert "line" not in result
    assert proc.stderr == ""


@pytest.mark.parametrize("args", [["decode"], ["decode", "2A37"], ["decode", "-", "1e55"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    proc = vigil(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr


def test_stream_goes_on_after_a_bad_line() -> None:
    lines = [
        "2A37 1e5532002100",
        "2A37 1e55",  # truncated: Energy Expended announced, one byte of it present
        "not-a-uuid 00",
        "2a37 1e:55:32:00:21:00",
        "2AA7 06000c10050006000c100600",
    ]
    proc = vigil("decode", "-", stdin="\n".join(lines) + "\n")
    assert proc.returncode == 0
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == len(lines)
    assert out[0] == HR
    assert out[1]["error_type"] == "TruncatedError"
    assert out[1]["line"] == 2
    assert out[2]["error_type"] == "InvalidUuidError"
    assert out[2]["line"] == 3
    assert out[3] == HR
    assert list(out[4]) == ["records"]
    assert proc.stderr == ""


def test_stream_skips_blank_and_comment_lines_and_survives_bytes_that_are_not_text() -> None:
    stdin = b"# captured 2026-01-16\n\n2A19\t59\n\xff\xfe garbage\n2A19 64\n"
    proc = subprocess.run([*VIGIL, "decode", "-"], input=stdin, capture_output=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert out[0] == {"battery_pct": 89}
    assert out[1]["line"] == 4
    assert out[1]["error_type"] == "MalformedInput"  # "garbage" is no hex
    assert out[2] == {"battery_pct": 100}


def test_stream_of_nothing() -> None:
    proc = vigil("decode", "-", stdin="")
    assert (proc.returncode, proc.stdout) == (0, "")


def test_stream_stops_quietly_when_the_reader_goes_away(tmp_path: Path) -> None:
    capture = tmp_path / "capture.txt"
    capture.write_text("2AA7 06000c10050006000c100600\n" * 20_000)  # far more than a pipe buffer holds
    stderr = tmp_path / "stderr.txt"
    command = f"{' '.join(VIGIL)} decode - < {capture} 2> {stderr} | head -n 1"
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert list(json.loads(proc.stdout)) == ["records"]
    assert stderr.read_text() == ""


def test_decode_stream_in_process() -> None:
    out = io.StringIO()
    assert decode_stream(["2A19 59\n", b"2A19 65\n", "   \n"], out) == (1, 1)
    lines = out.getvalue().splitlines()
    assert json.loads(lines[0]) == {"battery_pct": 89}
    assert json.loads(lines[1])["error_type"] == "ReservedValueError"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", b""),
        ("1e5532", b"\x1e\x55\x32"),
        ("1E 55\t32", b"\x1e\x55\x32"),
        ("0x1E,0x55,0x32", b"\x1e\x55\x32"),
        ("(0x) 1E-55-32", b"\x1e\x55\x32"),
        ("0x", b""),
    ],
)
def test_parse_hex(text: str, expected: bytes) -> None:
    assert parse_hex(text) == expected


@pytest.mark.parametrize("text", ["1", "1e5", "xyz", "1e 5g", "0x0x1e"])
def test_parse_hex_rejects(text: str) -> None:
    with pytest.raises(MalformedInput):
        parse_hex(text)


# ---- vigil fuzz ----------------------------------------------------------------------------------------


def test_fuzz_runs_and_counts_per_codec() -> None:
    proc = vigil("fuzz", "-n", "3000", "--seed", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fuzzed 3,000 payloads (seed 5)" in proc.stdout
    for target in default_targets():
        assert f"\n{target.name} " in proc.stdout
    assert "no unexpected exceptions" in proc.stdout


def test_fuzz_exits_1_and_shows_what_was_unexpected(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from firmware_bridge import fuzz

    def failing(n: int, seed: int) -> FuzzReport:
        example = Unexpected("heart_rate", "1e55", "IndexError: index out of range")
        return FuzzReport(n, seed, {"heart_rate": fuzz.CodecTally(0, n - 1, 1)}, 1, (example,))

    monkeypatch.setattr(fuzz, "run", failing)
    assert main(["fuzz", "-n", "10"]) == 1
    out = capsys.readouterr().out
    assert "1 unexpected outcomes" in out
    assert "heart_rate 1e55: IndexError: index out of range" in out


@pytest.mark.parametrize("count", ["0", "-5", "many"])
def test_fuzz_refuses_a_bad_count(count: str) -> None:
    proc = vigil("fuzz", "-n", count)
    assert proc.returncode == 2
    assert "-n" in proc.stderr


def test_fuzz_default_is_a_million(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["fuzz", "--help"])
    assert "default: 1000000" in capsys.readouterr().out
