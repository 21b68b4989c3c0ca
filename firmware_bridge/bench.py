"""Decodes per second for the per-notification codecs: ``python -m firmware_bridge.bench [--seconds S]``.

A benchmark, not a test: the numbers depend on the machine, so nothing asserts them. Each case decodes one
payload in a loop for about ``seconds`` per round, three rounds, and reports the best round (the least
disturbed by the rest of the machine). The payloads are real ones from tests/fixtures/gatt_golden.json.
``measure`` is pure; only ``main`` prints, and only when the module is run as a program.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.heart_rate import decode_heart_rate_measurement
from firmware_bridge.registry import decode_to_dict


@dataclass(frozen=True)
class BenchCase:
    name: str
    payload: bytes
    decode: Callable[[bytes], object]


@dataclass(frozen=True)
class BenchResult:
    case: BenchCase
    decodes_per_second: float
    microseconds_per_decode: float


def _cases() -> tuple[BenchCase, ...]:
    polar = bytes.fromhex("164d1603")  # Polar H7: contact detected, one RR interval
    energy = bytes.fromhex("1e5532002100")  # energy expended and one RR interval
    roche = bytes.fromhex("0d4373002c010324001a003e04")  # one record: Cal/Temp, trend, quality, E2E-CRC
    two = bytes.fromhex("06000c10050006000c100600")  # two minimal records in one notification
    return (
        BenchCase("2A37 decode, 1 RR", polar, decode_heart_rate_measurement),
        BenchCase("2A37 decode, energy + 1 RR", energy, decode_heart_rate_measurement),
        BenchCase("2A37 decode_to_dict, 1 RR", polar, lambda p: decode_to_dict("2A37", p)),
        BenchCase("2AA7 decode, 1 record + CRC", roche, decode_cgm_measurement),
        BenchCase("2AA7 decode, 2 records", two, decode_cgm_measurement),
        BenchCase("2AA7 decode_to_dict, 1 record + CRC", roche, lambda p: decode_to_dict("2AA7", p)),
    )


CASES = _cases()


def measure(case: BenchCase, *, seconds: float = 0.5, rounds: int = 3) -> BenchResult:
    """Time ``case.decode(case.payload)``; the best of ``rounds`` rounds of about ``seconds`` each."""
    decode, payload = case.decode, case.payload
    batch = 1
    while True:  # grow the batch until one takes a measurable time
        start = time.perf_counter()
        for _ in range(batch):
            decode(payload)
        if time.perf_counter() - start >= 0.02:
            break
        batch *= 2
    best = float("inf")
    for _ in range(rounds):
        count, elapsed = 0, 0.0
        start = time.perf_counter()
        while elapsed < seconds:
            for _ in range(batch):
                decode(payload)
            count += batch
            elapsed = time.perf_counter() - start
        best = min(best, elapsed / count)
    return BenchResult(case, 1.0 / best, best * 1e6)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_bridge.bench", description="Decodes per second of 0x2A37 and 0x2AA7."
    )
    parser.add_argument("--seconds", type=float, default=0.5, help="length of one round (default: %(default)s)")
    args = parser.parse_args(argv)
    print(f"Python {platform.python_version()} ({platform.python_implementation()}), {platform.machine()}, one core")
    print(f"{'case':<40} {'decodes/s':>12} {'µs/decode':>10}")
    for case in CASES:
        result = measure(case, seconds=args.seconds)
        print(f"{case.name:<40} {result.decodes_per_second:>12,.0f} {result.microseconds_per_decode:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
