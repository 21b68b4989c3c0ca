"""The wearer's retained state: new readings send it at most every ``[agent] state_every_s``; an alert or a link
change sends it with its batch; what was held back goes out with the next tick after the interval, and when the
agent stops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.errors import ConfigError
from agent.messages import RawNotification
from agent.store import Store
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement

T0 = 1_700_000_000.0
STRAP = "AA:00:00:00:00:01"


def hr(bpm: int, t: float) -> RawNotification:
    data = encode_heart_rate_measurement(HeartRateMeasurement(bpm, sensor_contact=SensorContact.DETECTED))
    return RawNotification("w1", STRAP, "2A37", data, t)


class Rig:
    def __init__(self, tmp_path: Path, **agent: Any) -> None:
        cfg = parse_config(
            {
                "agent": agent,
                "wearers": [
                    {
                        "id": "w1",
                        "thresholds": {"hr_sustain_s": 0},
                        "devices": [{"kind": "hr_strap", "address": STRAP}],
                    }
                ],
            }
        )
        self.clock = VirtualClock(T0)
        self.agent = Agent(cfg, Store(tmp_path / "v.db"), clock=self.clock)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def take(self) -> list[dict[str, Any]]:
        """The state messages published since the last call (and acknowledged, as a broker would)."""
        pending = self.agent.store.outbox_pending(1_000_000)
        self.agent.store.outbox_done(m.seq for m in pending)
        return [json.loads(m.payload) for m in pending if m.topic.endswith("/w1/state")]


def test_readings_send_the_state_at_most_every_interval_alerts_and_links_at_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, state_every_s=5.0)
    agent = rig.agent
    agent.link_state("w1", STRAP, "connected")
    sent_at = []
    for s in range(60):  # a notification a second, each its own batch, as in real time
        agent.handle([hr(70, T0 + s)])
        if rig.take():
            sent_at.append(s)
    assert sent_at == list(range(0, 60, 5))
    # A heart rate over the tachycardia threshold raises an alert: the state shows it in the same batch.
    agent.handle([hr(70, T0 + 60)])
    rig.take()
    agent.handle([hr(190, T0 + 61)])
    (state,) = rig.take()
    assert [a["kind"] for a in state["alerts_active"]] == ["heart_tachycardia"]
    assert state["heart"]["hr_bpm"] == 190
    assert state["heart"]["time"] == "2023-11-14T22:14:21.000Z"  # T0 + 61 s, as an ISO string
    # A link change goes out at once too.
    agent.link_state("w1", STRAP, "reconnecting")
    agent.handle([hr(120, T0 + 62)])
    (state,) = rig.take()
    assert state["links"] == {STRAP: "reconnecting"}
    # Held back: the next reading waits, and the ticker sends it once the interval has passed.
    agent.handle([hr(118, T0 + 63)])  # within the hysteresis: the alert stays, nothing changes but the value
    assert rig.take() == []
    agent.tick(T0 + 66)
    assert rig.take() == []
    agent.tick(T0 + 67)
    (state,) = rig.take()
    assert state["heart"]["hr_bpm"] == 118
    agent.tick(T0 + 80)
    assert rig.take() == []  # nothing new: nothing sent


def test_stopping_sends_the_state_held_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path, state_every_s=60.0)
    rig.agent.handle([hr(70, T0)])
    assert len(rig.take()) == 1
    rig.agent.handle([hr(71, T0 + 1)])
    assert rig.take() == []
    asyncio.run(rig.agent.drain())
    (state,) = rig.take()
    assert state["heart"]["hr_bpm"] == 71


def test_zero_sends_the_state_after_every_batch(tmp_path: Path) -> None:
    rig = Rig(tmp_path, state_every_s=0)
    for s in range(5):
        rig.agent.handle([hr(70 + s, T0 + s)])
        assert [st["heart"]["hr_bpm"] for st in rig.take()] == [70 + s]


@pytest.mark.parametrize("bad", [-1, 3601, "5", True, float("nan")])
def test_a_bad_interval_is_refused_naming_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"agent\.state_every_s"):
        parse_config({"agent": {"state_every_s": bad}, "wearers": []})
