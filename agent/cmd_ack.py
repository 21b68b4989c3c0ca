"""``vigil ack``: acknowledge or snooze a wearer's alert from a terminal.

It publishes a command on ``<root>/<site>/<wearer>/cmd/ack`` (or ``cmd/snooze``) at QoS 1, then waits for the
agent's answer on the alert topics: the alert re-announced as ``ongoing`` with ``acknowledged`` filled in. An
agent that rejects a command (unknown episode, another wearer's topic, bad JSON) changes nothing and logs why;
``vigil ack`` then says it saw no acknowledgement and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from agent.alerts import all_kinds
from agent.errors import BrokerError, ConfigError
from agent.topics import alert_filter, command_topic
from agent.watch import Watcher, format_alert


def register(sub: Any, broker_args: Any) -> None:
    p = sub.add_parser(
        "ack",
        help="acknowledge or snooze an alert",
        description="Acknowledge a wearer's active alert (by episode id, or all of a kind), or snooze a kind for "
        "some minutes, through the wearer's cmd/ topic; then wait for the agent to confirm.",
    )
    broker_args(p)
    p.add_argument("--site", help="the wearer's site (default: [agent] site of --config, else 'home')")
    p.add_argument("--wearer", required=True, help="the wearer's pseudonymous id")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--episode", help="episode id (or its first 6+ characters) shown by `vigil watch`")
    what.add_argument("--kind", choices=all_kinds(), help="every active alert of this kind")
    p.add_argument("--snooze", type=float, metavar="MIN", help="snooze the kind for MIN minutes instead")
    p.add_argument("--by", default="vigil-ack", help="who acknowledges, for the record (default: %(default)s)")
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the agent (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.cli import mqtt_settings
    from agent.config import load_config

    cfg = mqtt_settings(args)
    site = args.site or (load_config(args.config).agent.site if args.config else "home")
    verb = "snooze" if args.snooze is not None else "ack"
    body: dict[str, Any] = {"by": args.by}
    if args.episode:
        body["episode"] = args.episode
    if args.kind:
        body["kind"] = args.kind
    if args.snooze is not None:
        if args.snooze <= 0:
            raise ConfigError("--snooze", args.snooze, "must be a positive number of minutes")
        body["minutes"] = args.snooze

    confirmed = threading.Event()

    def on_alert(topic: str, payload: dict[str, Any]) -> None:
        ack = payload.get("acknowledged") or {}
        episode_ok = args.episode is None or str(payload.get("episode", "")).startswith(args.episode)
        kind_ok = args.kind is None or payload.get("kind") == args.kind
        if ack.get("by") == args.by and episode_ok and kind_ok:
            print(format_alert(payload))
            confirmed.set()

    watcher = Watcher(cfg, on_alert, site=site, wearer=args.wearer)
    watcher.topic = alert_filter(cfg.root, site, args.wearer)
    watcher.start()
    try:
        if not watcher.subscribed.wait(10):
            raise BrokerError(f"{cfg.host}:{cfg.port}", "no subscription acknowledgement from the broker")
        info = watcher.client.publish(command_topic(cfg.root, site, args.wearer, verb), json.dumps(body), qos=1)
        info.wait_for_publish(10)
        if not confirmed.wait(args.wait):
            print(
                f"vigil ack: no acknowledgement from the agent within {args.wait:g} s; the agent logs why it "
                "rejected a command (unknown episode, wrong site or wearer)",
                file=sys.stderr,
            )
            return 1
    finally:
        watcher.stop()
    return 0
