"""``vigil``: the one command-line entry point.

Each verb imports what it needs when it runs, so ``vigil watch`` on a laptop does not load the BLE stack and
nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__, cmd_ack, cmd_decode, cmd_doctor
from agent.config import MqttConfig
from agent.errors import AgentError, ConfigError
from agent.logs import setup_logging

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Vigil watches heart-rate straps and continuous glucose monitors over Bluetooth LE, keeps every reading in a
local SQLite file, and publishes alerts over MQTT.

Start with `vigil demo`: simulated wearers, a local broker and a live alert feed, no hardware needed.
"""


def _broker_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("broker (default: the [mqtt] table of --config, else 127.0.0.1:1883)")
    g.add_argument("--config", type=Path, help="agent configuration (TOML) to take the broker settings from")
    g.add_argument("--broker", metavar="HOST:PORT", help="broker address, overrides --config")
    g.add_argument("--root", help="topic root (default: vigil)")
    g.add_argument("--username", help="MQTT user name")
    g.add_argument("--password-file", type=Path, help="file holding the MQTT password")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--ca-file", type=Path, help="CA certificate(s) that signed the broker's certificate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vigil", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"vigil {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail to standard error")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")

    run = sub.add_parser(
        "run",
        help="run the agent daemon",
        description="Run the agent: connect to the "
        "configured BLE devices, store readings, publish alerts. Stops cleanly on SIGTERM/SIGINT.",
    )
    run.add_argument("--config", type=Path, required=True, help="configuration file (TOML); see README")
    run.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="log lines as text or one JSON object per line (default: [agent] log_format, else text)",
    )

    demo = sub.add_parser(
        "demo",
        help="simulated wearers through the whole agent, with a local broker and a live alert feed",
        description="Two simulated wearers (heart-rate straps and CGMs served by the simulator's BLE backend) "
        "through the real agent, an embedded MQTT broker on loopback and a subscriber that prints each alert. "
        "Finishes by itself with a summary.",
    )
    demo.add_argument(
        "--out", type=Path, default=Path("vigil-demo"), help="folder for the database (default: %(default)s)"
    )
    demo.add_argument("--hours", type=float, default=8.0, help="simulated hours (default: %(default)s)")
    demo.add_argument(
        "--speed",
        type=float,
        default=600.0,
        help="times real time; 0 = as fast as possible (default: %(default)s)",
    )

    watch = sub.add_parser(
        "watch",
        help="print alerts as they arrive",
        description="Subscribe to alerts and print each once (duplicates dropped by id), readably or as JSON lines.",
    )
    _broker_args(watch)
    watch.add_argument("--site", default="+", help="only this site (default: all)")
    watch.add_argument("--wearer", default="+", help="only this wearer (default: all)")
    watch.add_argument("--kind", default="+", help="only this alert kind, e.g. glucose_low (default: all)")
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=int, help="exit after this many alerts")
    watch.add_argument("--timeout", type=float, help="exit after this many seconds")
    watch.add_argument(
        "--group",
        metavar="NAME",
        help="join the shared subscription $share/NAME/...: the broker hands each alert to one member of the "
        "group (several watchers sharing the load); needs MQTT 5 or a broker that shares 3.1.1 subscriptions",
    )
    cmd_ack.register(sub, _broker_args)
    cmd_decode.register(sub)
    from sim.cli import register as register_sim  # replay, record, score, report

    register_sim(sub)
    cmd_doctor.register(sub)
    from sim.bench import register as register_bench  # bench: the measurements of BENCHMARKS.md

    register_bench(sub)
    from model_build.cli import register as register_builder  # build, models: TensorFlow only when they run

    register_builder(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO, "text")
    if args.verb is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if hasattr(args, "func"):
            return int(args.func(args))
        if args.verb == "run":
            return _run(args)
        if args.verb == "demo":
            from sim.demo import run_demo

            return run_demo(out=args.out, hours=args.hours, speed=args.speed or None)
        if args.verb == "watch":
            return _watch(args)
    except ConfigError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgentError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    parser.error(f"unknown verb {args.verb}")
    return EXIT_USAGE  # pragma: no cover


def _run(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.daemon import run_daemon

    cfg = load_config(args.config)
    # -v wins over the configured level; the MQTT password is redacted from every line, whatever logs it.
    setup_logging(
        "debug" if args.verbose else cfg.agent.log_level,
        args.log_format or cfg.agent.log_format,
        secrets=[cfg.mqtt.password],
    )
    asyncio.run(run_daemon(cfg, install_signal_handlers=True))
    return EXIT_OK


def mqtt_settings(args: argparse.Namespace) -> MqttConfig:
    """The broker settings for a client verb: --config's [mqtt] table, then flags over it."""
    from dataclasses import replace

    from agent.config import load_config

    cfg = load_config(args.config).mqtt if args.config else MqttConfig()
    if args.broker:
        host, sep, port = args.broker.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ConfigError("--broker", args.broker, "must be HOST:PORT")
        cfg = replace(cfg, host=host, port=int(port))
    if args.root:
        cfg = replace(cfg, root=args.root)
    if args.username:
        password = None
        if args.password_file:
            try:
                password = args.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError("--password-file", str(args.password_file), f"cannot read: {exc.strerror}") from exc
        cfg = replace(cfg, username=args.username, password=password)
    if args.tls or args.ca_file:
        cfg = replace(cfg, tls=True, ca_file=args.ca_file or cfg.ca_file)
    return cfg


def _watch(args: argparse.Namespace) -> int:
    from agent.watch import watch

    cfg = mqtt_settings(args)
    watch(
        cfg,
        sys.stdout,
        site=args.site,
        wearer=args.wearer,
        kind=args.kind,
        as_json=args.json,
        count=args.count,
        timeout=args.timeout,
        group=args.group,
    )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
