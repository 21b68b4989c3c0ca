"""Seeded fuzzing: only CodecError may escape a decoder, and accepted payloads must re-encode exactly.

Also checks that the harness itself notices the failures it exists to find.
"""

from __future__ import annotations

import pytest

from firmware_bridge.errors import EncodeError, TruncatedError
from firmware_bridge.fuzz import FuzzTarget, default_targets, run

SEED = 20_240_611
N = 20_000


def test_fuzzing_all_decoders_finds_nothing_unexpected() -> None:
    report = run(N, SEED)
    assert report.examples == ()
    assert report.unexpected_count == 0
    assert report.ok
    assert sum(t.decoded + t.rejected + t.unexpected for t in report.tallies.values()) == N
    for name, tally in report.tallies.items():
        # Both outcomes must occur, or the payload mix is not exercising the decoder.
        assert tally.decoded > 0, name
        assert tally.rejected > 0, name


def test_same_seed_same_report() -> None:
    assert run(2_000, 7) == run(2_000, 7)
    assert run(2_000, 7).tallies != run(2_000, 8).tallies


@pytest.mark.parametrize("target", default_targets(), ids=lambda t: t.name)
def test_every_seed_payload_is_valid(target: FuzzTarget) -> None:
    for payload in target.seeds:
        decoded = target.decode(payload)
        assert target.check is None or target.check(payload, decoded) is None


def _strict_decoder(payload: bytes) -> object:
    if not payload:
        raise TruncatedError("FFFF", payload, "empty")
    return payload[0]


def test_harness_reports_a_stray_exception() -> None:
    def buggy(payload: bytes) -> object:
        return payload[3]  # IndexError on short payloads

    report = run(500, 1, targets=[FuzzTarget("buggy", buggy, (b"\x01\x02",))])
    assert not report.ok
    assert report.examples
    assert report.examples[0].problem.startswith("IndexError")


def test_harness_reports_a_wrong_value() -> None:
    def check(payload: bytes, decoded: object) -> str | None:
        return None if len(payload) == 1 else "lost the bytes after the first"

    report = run(500, 1, targets=[FuzzTarget("lossy", _strict_decoder, (b"\x01\x02",), check)])
    assert report.unexpected_count > 0
    assert report.tallies["lossy"].unexpected == report.unexpected_count


def test_harness_reports_encode_error_from_a_decoder() -> None:
    def invalid(payload: bytes) -> object:
        raise EncodeError("FFFF", b"", "built an invalid value")

    report = run(100, 1, targets=[FuzzTarget("invalid", invalid, (b"\x00",))])
    assert report.unexpected_count == 100


def test_harness_counts_codec_errors_as_rejections() -> None:
    report = run(300, 3, targets=[FuzzTarget("strict", _strict_decoder, (b"\x05",))])
    assert report.ok
    assert report.tallies["strict"].rejected > 0
    assert report.tallies["strict"].decoded > 0
