"""The benchmark runs (it is not a timed test: nothing here asserts a speed)."""

from __future__ import annotations

import pytest

from firmware_bridge.bench import CASES, main, measure


def test_every_case_decodes_its_payload() -> None:
    for case in CASES:
        case.decode(case.payload)
    assert {case.name[:4] for case in CASES} == {"2A37", "2AA7"}


def test_measure_reports_a_rate() -> None:
    result = measure(CASES[0], seconds=0.001, rounds=1)
    assert result.decodes_per_second > 0
    assert result.microseconds_per_decode == pytest.approx(1e6 / result.decodes_per_second)


def test_main_prints_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seconds", "0.001"]) == 0
    out = capsys.readouterr().out
    assert "decodes/s" in out
    assert all(case.name in out for case in CASES)
