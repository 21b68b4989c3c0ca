"""``vigil decode`` and ``vigil fuzz``: the firmware bridge's codecs from the command line.

``vigil decode CHAR HEX`` decodes one payload and prints one JSON object (the fields of
``firmware_bridge.registry``). ``vigil decode -`` reads lines ``CHAR HEX`` from standard input and prints one
JSON line for each, ``{"error": ...}`` for a line it cannot decode, and goes on to the next. HEX may be
written with spaces, colons or dashes between bytes and an optional ``0x`` prefix (``1e5532002100``,
``1e:55:32:00:21:00``, nRF Connect's ``0x1E-55-32-00-21-00``).

Exit status of ``vigil decode``:

* one payload: 0 when it decoded; 1 when it was rejected (bad payload, unknown characteristic, malformed
  HEX), with the ``{"error": ...}`` object still printed on standard output; 2 for a usage error;
* ``-`` (a stream): 0 at the end of input even when some lines were rejected, because each line's outcome
  is on its own output line and a log with one bad notification is still a log worth reading to the end.
  Blank lines and lines starting with ``#`` are skipped without output; error objects carry ``line`` (the
  1-based input line number).

``vigil fuzz [-n N] [--seed S]`` runs ``firmware_bridge.fuzz`` (1,000,000 payloads by default), prints the
outcomes per codec and every unexpected one it kept, and exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from firmware_bridge.fuzz import FuzzReport

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2

DEFAULT_FUZZ_COUNT = 1_000_000
DEFAULT_FUZZ_SEED = 1

_HEX_SEPARATORS = re.compile(r"[\s:,\-]+")
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")


class MalformedInput(ValueError):
    """A HEX argument or an input line that is not of the form the command reads."""


def parse_hex(text: str) -> bytes:
    """The bytes written in ``text``: hex digits, optionally separated by spaces, colons, commas or dashes,
    each group optionally prefixed ``0x`` (and nRF Connect's ``(0x)`` marker allowed in front)."""
    digits = []
    for group in _HEX_SEPARATORS.split(text.strip()):
        if group.lower() == "(0x)":
            continue
        if group[:2].lower() == "0x":
            group = group[2:]
        if not _HEX_DIGITS.fullmatch(group):
            raise MalformedInput(f"not hexadecimal: {group!r}")
        digits.append(group)
    joined = "".join(digits)
    if len(joined) % 2:
        raise MalformedInput(f"odd number of hex digits ({len(joined)})")
    return bytes.fromhex(joined)


def decode_payload(characteristic: str, hex_text: str) -> dict[str, object]:
    """Decode one payload to its JSON-ready dict; raises ``MalformedInput`` or a ``CodecError``."""
    from firmware_bridge.registry import decode_to_dict

    return decode_to_dict(characteristic, parse_hex(hex_text))


def error_object(exc: Exception, *, line: int | None = None) -> dict[str, object]:
    """The ``{"error": ...}`` object printed for a rejected payload or a malformed line."""
    result: dict[str, object] = {"error": str(exc), "error_type": type(exc).__name__}
    if line is not None:
        result["line"] = line
    return result


def _dumps(obj: dict[str, object]) -> str:
    return json.dumps(obj, allow_nan=False)


def _decode_or_error(characteristic: str, hex_text: str, *, line: int | None = None) -> tuple[dict[str, object], bool]:
    from firmware_bridge.errors import CodecError

    try:
        return decode_payload(characteristic, hex_text), True
    except (CodecError, MalformedInput) as exc:
        return error_object(exc, line=line), False


def decode_stream(lines: Iterable[str | bytes], out: TextIO) -> tuple[int, int]:
    """Decode each ``CHAR HEX`` line to one JSON line on ``out``; returns (decoded, rejected)."""
    decoded = rejected = 0
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        characteristic, *rest = text.split(None, 1)
        result, ok = _decode_or_error(characteristic, rest[0] if rest else "", line=number)
        if ok:
            decoded += 1
        else:
            rejected += 1
        out.write(_dumps(result) + "\n")
        out.flush()  # a live pipe (a sniffer's output) sees each line at once
    return decoded, rejected


def run_decode(args: argparse.Namespace) -> int:
    """``vigil decode``."""
    if args.characteristic == "-":
        if args.hex:
            print("vigil decode: with '-' the payloads come from standard input; give no HEX", file=sys.stderr)
            return EXIT_USAGE
        source: Iterable[str | bytes] = getattr(sys.stdin, "buffer", sys.stdin)
        try:
            decode_stream(source, sys.stdout)
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly
            _silence_stdout()
            return EXIT_REJECTED
        return EXIT_OK
    if not args.hex:
        print("vigil decode: HEX is missing (write '' for an empty payload)", file=sys.stderr)
        return EXIT_USAGE
    result, ok = _decode_or_error(args.characteristic, " ".join(args.hex))
    print(_dumps(result))
    return EXIT_OK if ok else EXIT_REJECTED


def _silence_stdout() -> None:
    # Python would otherwise report the broken pipe again when it flushes stdout at exit.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def format_fuzz_report(report: FuzzReport, seconds: float) -> str:
    """The report ``vigil fuzz`` prints."""
    lines = [f"fuzzed {report.n:,} payloads (seed {report.seed}) in {seconds:.1f} s", ""]
    width = max(len("codec"), *(len(name) for name in report.tallies))
    lines.append(f"{'codec':<{width}}  {'decoded':>9}  {'rejected':>9}  {'unexpected':>10}")
    for name, tally in report.tallies.items():
        lines.append(f"{name:<{width}}  {tally.decoded:>9,}  {tally.rejected:>9,}  {tally.unexpected:>10,}")
    lines.append("")
    if report.ok:
        lines.append("no unexpected exceptions or wrong values")
    else:
        lines.append(f"{report.unexpected_count:,} unexpected outcomes; the first {len(report.examples)}:")
        lines.extend(f"  {e.target} {e.payload_hex or '(empty)'}: {e.problem}" for e in report.examples)
    return "\n".join(lines)


def run_fuzz(args: argparse.Namespace) -> int:
    """``vigil fuzz``."""
    from firmware_bridge.fuzz import run

    start = time.perf_counter()
    report = run(args.n, args.seed)
    print(format_fuzz_report(report, time.perf_counter() - start))
    return EXIT_OK if report.ok else EXIT_REJECTED


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``decode`` and ``fuzz`` verbs; each sets ``func`` to its run function."""
    from firmware_bridge.registry import DECODERS

    decode = subparsers.add_parser(
        "decode",
        help="decode GATT payloads (hex) to JSON, one or a stream",
        description="Decode Bluetooth GATT payloads with Vigil's own codecs and print them as JSON: "
        "for debugging a device. CHAR is the characteristic (2A37, 0x2a37 or its 128-bit UUID); "
        "HEX is the payload.",
        epilog=f"""\
characteristics: {", ".join(sorted(DECODERS))}

HEX: hex digits, with or without spaces, colons or dashes between bytes and 0x prefixes
(1e5532002100, "1e 55 32 00 21 00", 1e:55:32:00:21:00, 0x1E-55-32-00-21-00).

examples:
  vigil decode 2A37 1e5532002100
  vigil decode 2aa7 0D-43-73-00-2C-01-03-24-00-1A-00-3E-04
  printf '2A37 16 4d 16 03\\n2A19 59\\n' | vigil decode -

With '-', lines "CHAR HEX" are read from standard input and each gives one JSON line; a line that cannot
be decoded gives {{"error": ..., "error_type": ..., "line": N}} and decoding goes on. Blank lines and
lines starting with # are skipped.

exit status:
  one payload: 0 decoded; 1 rejected (the {{"error": ...}} object is still printed on standard output);
               2 usage error
  stream (-):  0 at the end of input, even if some lines were rejected (their errors are in the output)
""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("characteristic", metavar="CHAR", help="characteristic UUID, or - to read lines from stdin")
    decode.add_argument("hex", metavar="HEX", nargs="*", help="the payload in hex (several arguments are joined)")
    decode.set_defaults(func=run_decode)

    fuzz = subparsers.add_parser(
        "fuzz",
        help="feed random and mutated payloads to every codec; exit 1 on anything unexpected",
        description="Fuzz every decoder of the firmware bridge with random and mutated payloads (seeded: the "
        "same seed gives the same payloads). A decoder may decode a payload or reject it with a CodecError; "
        "any other exception, a decoded payload that does not re-encode to the same bytes, or a JSON field "
        "that is not strict JSON is unexpected. Prints the counts per codec and the unexpected outcomes.",
        epilog="exit status: 0 when nothing unexpected happened, 1 otherwise, 2 usage error",
    )
    fuzz.add_argument(
        "-n",
        type=_positive_int,
        default=DEFAULT_FUZZ_COUNT,
        metavar="N",
        help="number of payloads, spread over the codecs (default: %(default)s)",
    )
    fuzz.add_argument(
        "--seed", type=int, default=DEFAULT_FUZZ_SEED, metavar="S", help="random seed (default: %(default)s)"
    )
    fuzz.set_defaults(func=run_fuzz)
