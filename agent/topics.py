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

from agent.alerts import AlertEvent, Condition

SCHEMA_VERSION = 1


def alert_topic(root: str, site: str, wearer: str, kind: str) -> str:
    return f"{root}/{site}/{wearer}/alert/{kind}"


def state_topic(root: str, site: str, wearer: str) -> str:
    return f"{root}/{site}/{wearer}/state"


def status_topic(root: str, site: str, agent_id: str) -> str:
    return f"{root}/{site}/agent/{agent_id}/status"


def command_filter(root: str, site: str, wearer: str) -> str:
    return f"{root}/{site}/{wearer}/cmd/+"


def command_topic(root: str, site: str, wearer: str, verb: str) -> str:
    return f"{root}/{site}/{wearer}/cmd/{verb}"


def alert_filter(root: str, site: str = "+", wearer: str = "+", kind: str = "+") -> str:
    return f"{root}/{site}/{wearer}/alert/{kind}"


def iso_time(t: float) -> str:
    """Epoch seconds as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(s: str) -> float:
    """The inverse of :func:`iso_time`."""
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def alert_payload(event: AlertEvent, *, site: str, agent_id: str, include_raw: bool = False) -> dict[str, Any]:
    """The JSON object published for one alert event. ``id`` is fixed when the event is made, so a
    redelivered message carries the same id and subscribers can drop duplicates. A model's raw input window
    (``raw``) goes out only with ``include_raw``: by default an alert carries the values and thresholds behind
    it and the window's span and hash, not the readings themselves."""
    since = event.condition_since
    ack = None
    if event.acknowledged:
        ack = {k: iso_time(v) if k in ("at", "snoozed_until") else v for k, v in event.acknowledged.items()}
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
        "device": event.subject or None,
        "reason": event.reason,
        "values": event.values,
        "thresholds": event.thresholds,
        "source": event.source,
        "acknowledged": ack,
    }
    if include_raw and event.raw is not None:
        payload["raw"] = event.raw
    return payload


def condition_from_payload(payload: dict[str, Any] | None) -> Condition | None:
    """The condition behind a stored 'raised' payload, so a restarted agent can keep re-announcing it."""
    if not payload:
        return None
    try:
        t = parse_iso(str(payload["time"]))
        return Condition(
            wearer=payload["wearer"],
            kind=payload["kind"],
            active=True,
            t=t,
            severity=payload["severity"],
            reason=payload["reason"],
            values=dict(payload.get("values") or {}),
            thresholds=dict(payload.get("thresholds") or {}),
            subject=payload.get("device") or "",
            source=dict(payload.get("source") or {"type": "rule"}),
        )
    except (KeyError, TypeError, ValueError):
        return None


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
