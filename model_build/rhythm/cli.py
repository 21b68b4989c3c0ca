"""``vigil build rhythm`` and ``vigil models evaluate rhythm``.

Two ways in, one implementation: :func:`build_command` / :func:`evaluate_command` take the parsed arguments
(``data``, ``models_dir``, ``no_progress``; evaluate also ``set``, ``json``, ``write_card``), which is how
``model_build.cli`` dispatches by model name; :func:`register_build` / :func:`register_evaluate` add a
``rhythm`` parser to a ``build`` or ``models evaluate`` sub-parser group, for a CLI organised that way.

TensorFlow is imported only when the build runs (evaluation needs none). Data root: ``--data``, else
``$VIGIL_DATA``, else ``../shared/data`` beside the checkout. Exit codes: 0 done, 1 the build or evaluation
failed, 2 bad input (missing or malformed data, named with the problem).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2
DATA_ENV = "VIGIL_DATA"


def default_data_root() -> Path:
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    return checkout.parent / "shared" / "data"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="data root holding rr/<set>/ (default: $VIGIL_DATA, else ../shared/data)")
    p.add_argument("--models-dir", type=Path, help="bundle folder (default: the agent's packaged models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register_build(build_sub: Any) -> None:
    p = build_sub.add_parser(
        "rhythm",
        help="the AF detector from RR intervals",
        description="Train the AF detector on the TRAIN records (afdb without its six TEST records, nsr2db "
        "nsr001-nsr044), choose its threshold and alert policy by record-wise cross-validation, quantize it to "
        "int8 and write the bundle. Seeded; reads no TEST record.",
    )
    _common(p)
    p.set_defaults(func=build_command)


def register_evaluate(evaluate_sub: Any) -> None:
    p = evaluate_sub.add_parser(
        "rhythm",
        help="the AF detector on the TEST sets",
        description="Evaluate the shipped AF detector (int8, through the agent's runtime loader) with its float "
        "twin and the classic baseline on the same windows; alerts through the agent's detector and alert engine.",
    )
    add_evaluate_args(p)
    p.set_defaults(func=evaluate_command)


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--set", action="append", metavar="NAME", help="afdb-test, nsr2db-test, cinc2017 (default: all) "
                   "or any other set folder under DATA/rr (repeatable)")  # fmt: skip
    p.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON here")
    p.add_argument("--write-card", action="store_true", help="record the TEST figures in the bundle's model card")


def _data_root(args: argparse.Namespace) -> Path:
    return Path(args.data) if getattr(args, "data", None) else default_data_root()


def _models_dir(args: argparse.Namespace) -> Path:
    from agent.models import PACKAGED_MODELS_DIR

    return Path(args.models_dir) if getattr(args, "models_dir", None) else PACKAGED_MODELS_DIR


def build_command(args: argparse.Namespace) -> int:
    def run() -> int:
        from model_build.rhythm.build import build_rhythm

        result = build_rhythm(
            _data_root(args),
            models_dir=_models_dir(args),
            progress=not getattr(args, "no_progress", False),
            log=lambda line: print(line, flush=True),
        )
        card = result.card
        print(f"wrote {card.name} {card.version}: {card.tflite.size} bytes, sha256 {card.tflite.sha256}")
        print(json.dumps(result.summary, indent=1, default=str))
        print(f"build took {result.seconds:.0f} s")
        return EXIT_OK

    return _guarded("build rhythm", run)


def evaluate_command(args: argparse.Namespace) -> int:
    def run() -> int:
        from model_build.rhythm.evaluate import evaluate_rhythm, format_tables, write_card_metrics
        from model_build.rhythm.split import DEFAULT_TEST_SETS

        models_dir = _models_dir(args)
        result = evaluate_rhythm(
            _data_root(args),
            getattr(args, "set", None) or DEFAULT_TEST_SETS,
            models_dir=models_dir,
            progress=not getattr(args, "no_progress", False),
        )
        print(format_tables(result))
        out = getattr(args, "json", None)
        if out:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n", encoding="utf-8")
            print(f"wrote {out}")
        if getattr(args, "write_card", False):
            write_card_metrics(result, models_dir)
            print(f"recorded the TEST figures in {models_dir}/rhythm.json")
        return EXIT_OK

    return _guarded("models evaluate rhythm", run)


def _guarded(what: str, run: Any) -> int:
    """Input problems (exit 2) and failures (exit 1) as one line on stderr, not a traceback."""
    from agent.errors import AgentError
    from model_build.quantize import QuantizeError
    from model_build.rhythm.errors import DataError, RhythmBuildError

    try:
        return int(run())
    except DataError as exc:
        print(f"vigil {what}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (RhythmBuildError, QuantizeError, AgentError) as exc:
        print(f"vigil {what}: {exc}", file=sys.stderr)
        return EXIT_FAILED
