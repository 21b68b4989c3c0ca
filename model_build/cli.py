"""``vigil build MODEL`` and ``vigil models evaluate MODEL``: the builder's verbs.

Registered by ``agent.cli`` through :func:`register`. Importing this module loads neither TensorFlow nor the
builder: each command imports what it needs when it runs, so ``vigil --help`` stays light on a device.
A model is one entry of :data:`BUILDERS` / :data:`EVALUATORS` (``glucose`` here; the rhythm model adds its own).

Exit codes: 0 done, 1 the build or evaluation failed (converter, bundle), 2 bad input (a missing or malformed
data folder or file, named with the problem, or a TEST set where only TRAIN sets may go).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_INPUT = 0, 1, 2


def _data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        type=Path,
        help="data root holding cgm/<set>/<set>_cgm.csv.gz (default: $VIGIL_DATA, else ../shared/data beside"
        " the checkout)",
    )
    p.add_argument("--models-dir", type=Path, help="bundle folder (default: the agent's packaged models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _data_root(args: argparse.Namespace) -> Path:
    from model_build.glucose.data import default_data_root

    return Path(args.data) if args.data else default_data_root()


def _models_dir(args: argparse.Namespace) -> Path:
    from agent.models import PACKAGED_MODELS_DIR

    return Path(args.models_dir) if args.models_dir else PACKAGED_MODELS_DIR


def build_glucose(args: argparse.Namespace) -> int:
    from model_build.glucose.build import BuildOptions, build

    def log(line: str) -> None:
        print(line, flush=True)

    build(
        BuildOptions(data_root=_data_root(args), models_dir=_models_dir(args), progress=not args.no_progress),
        log=log,
    )
    return EXIT_OK


def evaluate_glucose(args: argparse.Namespace) -> int:
    from model_build.glucose import evaluate
    from model_build.glucose.data import TEST_SETS
    from model_build.glucose.shipped import evaluate_shipped

    names = args.set or list(TEST_SETS)
    out = evaluate_shipped(_data_root(args), names, models_dir=_models_dir(args), progress=not args.no_progress)
    sets = {name: _without_subjects(s) for name, s in out["sets"].items()}
    print(
        f"model {out['model']['name']} {out['model']['version']} ({out['model']['bytes']} bytes,"
        f" runtime {out['model']['runtime']}); float reference: {out['float_reference']}"
    )
    print(evaluate.tables(sets, out["bars"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return EXIT_OK


def _without_subjects(s: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in s.items() if k != "per_subject"}


def build_rhythm(args: argparse.Namespace) -> int:
    from model_build.rhythm.cli import build_command  # handles its own errors and exit codes

    return build_command(args)


def evaluate_rhythm(args: argparse.Namespace) -> int:
    from model_build.rhythm.cli import evaluate_command

    return evaluate_command(args)


BUILDERS: dict[str, Callable[[argparse.Namespace], int]] = {"glucose": build_glucose, "rhythm": build_rhythm}
EVALUATORS: dict[str, Callable[[argparse.Namespace], int]] = {"glucose": evaluate_glucose, "rhythm": evaluate_rhythm}


def register(sub: Any) -> None:
    b = sub.add_parser(
        "build",
        help="train, quantize and bundle a model (host only: needs the build extra)",
        description="Train a model on the TRAIN sets, quantize it to int8, measure it on the TEST sets and write "
        "the bundle (.tflite, model card, manifest entry) into the agent's packaged models. Seeded.",
    )
    b.add_argument("model", choices=sorted(BUILDERS), help="which model")
    _data_arg(b)
    b.set_defaults(func=_guarded(lambda a: BUILDERS[a.model](a)))

    m = sub.add_parser(
        "models",
        help="evaluate the shipped models",
        description="Work with the agent's model bundles.",
    )
    msub = m.add_subparsers(dest="models_verb", metavar="ACTION", required=True)
    e = msub.add_parser(
        "evaluate",
        help="measure a shipped model on CGM sets",
        description="Evaluate the shipped int8 model (through the agent's runtime loader), its float reference "
        "and the baselines on the same windows; print tables and the issue's bars.",
    )
    e.add_argument("model", choices=sorted(EVALUATORS), help="which model")
    e.add_argument(
        "--set", action="append", metavar="NAME", help="a set under DATA/cgm (repeatable; default: the TEST sets)"
    )
    e.add_argument("--json", type=Path, metavar="OUT", help="write every figure as JSON here")
    e.add_argument("--write-card", action="store_true", help="rhythm: record the TEST figures in its model card")
    _data_arg(e)
    e.set_defaults(func=_guarded(lambda a: EVALUATORS[a.model](a)))


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Input problems (exit 2) and build failures (exit 1) as one line on stderr, not a traceback."""

    def wrapped(args: argparse.Namespace) -> int:
        from agent.errors import ModelError
        from model_build.glucose.errors import DataError, GlucoseBuildError, SplitError
        from model_build.quantize import QuantizeError

        try:
            return run(args)
        except (DataError, SplitError) as exc:
            print(f"vigil {args.verb}: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except GlucoseBuildError as exc:
            print(f"vigil {args.verb}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except (QuantizeError, ModelError) as exc:
            print(f"vigil {args.verb}: {exc}", file=sys.stderr)
            return EXIT_FAILED

    return wrapped
