"""The simulator's verbs of the ``vigil`` command: ``replay``, ``record``, ``score`` and ``report``.

``agent.cli`` calls :func:`register`; each verb imports what it needs only when it runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.errors import AgentError, ConfigError
from sim.peripheral import SimError


def _as_agent_errors(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The simulator's errors (a bad scenario, a missing data file, an unreadable recording) reach the
    command line as one line and exit code 1, like the agent's."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except SimError as exc:
            raise AgentError(str(exc)) from exc

    return run


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or max, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="play a scenario or a recording through the whole agent, at any speed",
        description="Play a bundled scenario (by name), a scenario file (.toml) or a recording (.vrec) through "
        "the simulator's BLE backend into the real agent: BLE links, codecs, store, alerts and MQTT. Alerts are "
        "printed as the subscriber receives them; the database then holds the readings, the alerts and the "
        "scenario's ground truth for `vigil score` and `vigil report`.",
    )
    p.add_argument("what", nargs="?", metavar="SCENARIO|RECORDING", help="a bundled scenario, a .toml or a .vrec")
    p.add_argument("--list", action="store_true", help="list the bundled scenarios and exit")
    p.add_argument("--speed", type=_speed, default=None, metavar="N|max",
                   help="times real time, or max: as fast as the agent takes it (default: max)")  # fmt: skip
    p.add_argument("--db", type=Path, help="the replay's database (a new file, or a previous replay's)")
    p.add_argument("--broker", metavar="URL",
                   help="mqtt://HOST:PORT of a broker to publish to; `none` for no broker "
                   "(default: an embedded broker on a free loopback port)")  # fmt: skip
    p.add_argument("--mqtt-protocol", choices=("5", "3.1.1"), default="5", help="for --broker (default: 5)")
    p.add_argument("--data", type=Path, help="folder with rr/ and cgm/ for scenarios that read real recordings "
                   "(default: $VIGIL_DATA, else ../shared/data beside the checkout)")  # fmt: skip
    p.add_argument("--hours", type=float, help="play only the first H hours of a scenario")
    p.add_argument("--quiet", action="store_true", help="print only the summary and the score, not each alert")
    p.set_defaults(func=_as_agent_errors(replay))

    p = sub.add_parser(
        "record",
        help="capture what real BLE devices send into a recording",
        description="Connect to heart-rate straps and CGMs with the agent's own BLE link code and write every "
        "notification, read and link change, with its time, into a compressed recording (.vrec) that "
        "`vigil replay` plays back. Runs for --duration seconds or until Ctrl-C.",
    )
    p.add_argument("--out", type=Path, required=True, help="the recording to write (.vrec)")
    p.add_argument("--config", type=Path, help="take the wearers and devices from an agent configuration")
    p.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="KIND=ADDRESS",
        help="a device to record: hr_strap=AA:BB:..., cgm=AA:BB:... or KIND=name:NAME (repeatable)",
    )
    p.add_argument("--wearer", default="w-1", help="the wearer of the --device devices (default: %(default)s)")
    p.add_argument("--duration", type=float, help="seconds to record (default: until Ctrl-C)")
    p.add_argument("--note", default="", help="free text kept in the recording's header")  # fmt: skip
    p.set_defaults(func=_as_agent_errors(record))

    p = sub.add_parser(
        "score",
        help="a replay's alerts against its ground truth",
        description="Per alert kind: event-level sensitivity, false alerts per wearer-day and the lead (+) or "
        "lag (-) of the first alert, in minutes. Reads only the replay's database.",
    )
    p.add_argument("--db", type=Path, required=True, help="a replay's database")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the score as JSON to OUT ('-': stdout)")
    p.set_defaults(func=_as_agent_errors(score))

    p = sub.add_parser(
        "report",
        help="plots and an HTML page of a replay",
        description="PNG plots per wearer (glucose with truth, alerts and forecasts; heart rate and RR tachogram "
        "with AF truth, alerts and AF probability) and an index.html that shows them with the score.",
    )
    p.add_argument("--db", type=Path, required=True, help="a replay's database")
    p.add_argument("--out", type=Path, required=True, help="folder for the pictures and index.html")
    p.set_defaults(func=_as_agent_errors(report))


def replay(args: argparse.Namespace) -> int:
    from sim import score as scoring
    from sim.replay import load_playable, run_replay, summary_lines
    from sim.scenario import bundled, load

    if args.list:
        for name, path in bundled().items():
            s = load(path)
            needs = []
            if s.needs_data:
                needs.append("--data")
            if s.needs_simglucose:
                needs.append("simglucose")
            extra = f"  [needs {', '.join(needs)}]" if needs else ""
            print(f"{name:<18} {s.hours:>5g} h  {len(s.wearers)} wearer(s)  {s.description}{extra}")
        return 0
    if not args.what or args.db is None:
        raise ConfigError("replay", args.what, "give a SCENARIO or RECORDING and --db PATH (or --list)")
    playable = load_playable(args.what, data_root=args.data, hours=args.hours)
    hours = (playable.end - playable.start) / 3600.0
    pace = "as fast as possible" if args.speed is None else f"at {args.speed:g}x real time"
    print(f"Replaying {playable.name}: {len(playable.devices)} wearer(s), {hours:g} h, {pace}.", flush=True)
    result = run_replay(
        playable, args.db, speed=args.speed, broker=args.broker, mqtt_protocol=args.mqtt_protocol,
        stream=sys.stdout, quiet=args.quiet,
    )  # fmt: skip
    print()
    for line in summary_lines(playable, result):
        print(line)
    print()
    scoring.print_table(scoring.score_db(args.db), sys.stdout)
    return 0


def record(args: argparse.Namespace) -> int:
    from sim.record import Target, parse_device, run_record

    targets: list[Target] = []
    if args.config:
        from agent.config import load_config

        cfg = load_config(args.config)
        targets += [Target(w.id, d, w.thresholds) for w in cfg.wearers for d in w.devices]
    targets += [Target(args.wearer, parse_device(d)) for d in args.device]
    if not targets:
        raise ConfigError("record", None, "give --config FILE or at least one --device KIND=ADDRESS")
    if args.duration is not None and not args.duration > 0:
        raise ConfigError("--duration", args.duration, "must be more than 0 seconds")
    return run_record(args.out, targets, duration=args.duration, note=args.note, stream=sys.stdout)


def score(args: argparse.Namespace) -> int:
    from sim.score import print_table, score_db

    result = score_db(args.db)
    print_table(result, sys.stdout)
    if args.json:
        text = json.dumps(result, indent=2)
        if str(args.json) == "-":
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
    return 0


def report(args: argparse.Namespace) -> int:
    from sim.report import write_report

    page = write_report(args.db, args.out)
    print(f"Report written: {page.resolve()}")
    return 0
