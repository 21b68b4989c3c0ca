"""``vigil watch``: subscribe to alerts and print them as they arrive, for a person or (``--json``) a program.

Duplicates (the same alert id delivered twice, which QoS 1 allows) are printed once.

Sharing the load (``--group NAME``): every watcher of a group subscribes to ``$share/NAME/<filter>``, an MQTT
shared subscription (MQTT 5; mosquitto, EMQX, HiveMQ and VerneMQ also share 3.1.1 subscriptions this way).
The broker hands each alert to one member of the group only, so several consumers (a fleet back end's
workers) split the alerts of many agents between them; a member that leaves stops receiving, the others
carry on. Different groups, and watchers outside any group, each get every alert.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import paho.mqtt.client as paho

from agent.config import MqttConfig
from agent.errors import BrokerError, ConfigError
from agent.mqtt import make_client
from agent.topics import alert_filter

_SEVERITY_MARK = {"urgent": "URGENT ", "warning": "WARNING", "info": "info   "}


def format_alert(p: dict[str, Any]) -> str:
    """One line a person can read at 3 a.m."""
    t = p.get("time", "")
    try:
        shown = datetime.fromisoformat(str(t).replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        shown = str(t)
    sev = _SEVERITY_MARK.get(str(p.get("severity")), str(p.get("severity")))
    state = str(p.get("state", "")).upper()
    line = f"{shown}  {sev}  {state:<7}  {p.get('wearer')}  {p.get('kind')}: {p.get('reason')}"
    if p.get("episode"):
        line += f"  [episode {str(p['episode'])[:8]}]"  # enough to acknowledge it with `vigil ack --episode`
    return line


def shared_filter(group: str, topic_filter: str) -> str:
    """``$share/<group>/<filter>``; a group name is one topic level without wildcards."""
    if not group or any(c in group for c in "/+#") or group != group.strip():
        raise ConfigError("--group", group, "must be a non-empty name without '/', '+', '#' or surrounding spaces")
    return f"$share/{group}/{topic_filter}"


class Watcher:
    """A subscriber to ``<root>/<site>/<wearer>/alert/<kind>`` that hands each new alert to ``on_alert``."""

    def __init__(
        self,
        cfg: MqttConfig,
        on_alert: Callable[[str, dict[str, Any]], None],
        *,
        site: str = "+",
        wearer: str = "+",
        kind: str = "+",
        client_id: str | None = None,
        group: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.on_alert = on_alert
        self.topic = alert_filter(cfg.root, site, wearer, kind)
        if group is not None:
            self.topic = shared_filter(group, self.topic)
        # Unique per process and per watcher: members of a group often start together on one machine.
        self.client = make_client(cfg, client_id or f"vigil-watch-{os.getpid()}-{secrets.token_hex(4)}")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.received = 0
        self.duplicates = 0
        self._seen: OrderedDict[str, None] = OrderedDict()

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        # Only once the broker's SUBACK is in is the subscription in place.
        if all(not rc.is_failure for rc in rcs):
            self.subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            payload = {"id": None, "reason": f"unreadable payload on {msg.topic}"}
        if not isinstance(payload, dict):
            return
        alert_id = payload.get("id")
        if isinstance(alert_id, str):
            if alert_id in self._seen:
                self.duplicates += 1
                return
            self._seen[alert_id] = None
            if len(self._seen) > 10_000:
                self._seen.popitem(last=False)
        self.received += 1
        self.on_alert(msg.topic, payload)

    def connect(self) -> None:
        try:
            self.client.connect(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        except OSError as exc:
            raise BrokerError(f"{self.cfg.host}:{self.cfg.port}", f"cannot connect: {exc}") from exc

    def start(self) -> None:
        """Connect and run paho's network thread in the background."""
        self.connect()
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def watch(
    cfg: MqttConfig,
    out: TextIO,
    *,
    site: str = "+",
    wearer: str = "+",
    kind: str = "+",
    as_json: bool = False,
    count: int | None = None,
    timeout: float | None = None,
    group: str | None = None,
) -> int:
    """Print alerts until ``count`` have arrived or ``timeout`` seconds passed (forever if neither).
    Returns the number printed."""
    done = threading.Event()

    printed = 0

    def show(topic: str, payload: dict[str, Any]) -> None:
        nonlocal printed
        if count is not None and printed >= count:
            return
        printed += 1
        line = json.dumps(payload, sort_keys=True) if as_json else format_alert(payload)
        out.write(line + "\n")
        out.flush()
        if count is not None and printed >= count:
            done.set()

    w = Watcher(cfg, show, site=site, wearer=wearer, kind=kind, group=group)
    w.start()
    try:
        if w.subscribed.wait(min(timeout, 30.0) if timeout is not None else 30.0):
            print(f"vigil watch: subscribed to {w.topic} on {cfg.host}:{cfg.port}", file=sys.stderr, flush=True)
        else:
            print(f"vigil watch: still waiting for {cfg.host}:{cfg.port} to accept the subscription", file=sys.stderr)
        done.wait(timeout)
    finally:
        w.stop()
    return printed
