"""MQTT topics and payloads: the contract with every subscriber (DESIGN.md, "MQTT").

    <root>/<site>/<wearer>/alert/<kind>     QoS 1, JSON, not retained
    <root>/<site>/<wearer>/state            retained: latest values and link states
    <root>/<site>/agent/<agent-id>/status   retained; {"state": "offline", ...} is the last will
    <root>/<site>/<wearer>/cmd/<verb>       acknowledge, snooze (the agent subscribes to its own wearers only)

Wearer ids are pseudonyms from the configuration; no name, address or device serial appears in a topic.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from agent.alerts import AlertEvent

SCHEMA_VERSION = 1


def alert_topic(root: str, site: str, wearer: str, kind: str) -> str:
    return f"{root}/{site}/{wearer}/alert/{kind}"


def state_topic(root: str, site: str, wearer: str) -> str:
    return f"{root}/{site}/{wearer}/state"


def status_topic(root: str, site: str, agent_id: str) -> str:
    return f"{root}/{site}/agent/{agent_id}/status"


def alert_filter(root: str, site: str = "+", wearer: str = "+", kind: str = "+") -> str:
    return f"{root}/{site}/{wearer}/alert/{kind}"


def iso_time(t: float) -> str:
    """Epoch seconds as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_payload(event: AlertEvent, *, site: str, agent_id: str) -> dict[str, Any]:
    """The JSON object published for one alert event. ``id`` is fixed when the event is made, so a
    redelivered message carries the same id and subscribers can drop duplicates."""
    values = dict(event.values)
    since = values.pop("condition_since", None)
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "id": event.id,
        "episode": event.episode,
        "site": site,
        "agent": agent_id,
        "wearer": event.wearer,
        "kind": event.kind,
        "severity": event.severity,
        "state": event.state,
        "time": iso_time(event.t),
        "condition_since": iso_time(since) if since is not None else None,
        "reason": event.reason,
        "values": values,
        "thresholds": event.thresholds,
        "source": event.source,
    }
    return payload


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
