"""The packaged models inside the agent: notifications in, model-driven alerts and the wearer's state out.

Real bundles (agent/models), the agent's own TFLite runtime, a real SQLite store; the bytes are what a strap and
a CGM send. The quality gates (no skin contact, a CGM status annunciation, the sensor's warm-up) suppress the
models' alerts and say why on the state topic."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from agent.ble import CgmNotification
from agent.clock import VirtualClock
from agent.config import parse_config
from agent.core import Agent
from agent.messages import RawNotification
from agent.signals.digest import window_sha256
from agent.signals.quality import REASON_NO_CONTACT, REASON_WARM_UP
from agent.store import Store
from firmware_bridge.cgm import CgmMeasurementRecord, StatusOctet, encode_cgm_measurement
from firmware_bridge.heart_rate import HeartRateMeasurement, SensorContact, encode_heart_rate_measurement
from firmware_bridge.sfloat import SFloat
from model_build.rhythm.data import load_set

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
T0 = 1_700_000_000.0
STRAP = "AA:00:00:00:00:01"
CGM = "AA:00:00:00:00:02"
SESSION = T0 - 3 * 86400.0  # a CGM session three days old: long past its warm-up
AF_ONSET_S = 10433.5  # afdb 04746 (TRAIN fixture): sinus rhythm, then atrial fibrillation from here


def make_agent(tmp_path: Path, *, include_raw: bool = False) -> Agent:
    cfg = parse_config(
        {
            "mqtt": {"include_raw": include_raw},
            "wearers": [
                {
                    "id": "w1",
                    "devices": [{"kind": "hr_strap", "address": STRAP}, {"kind": "cgm", "address": CGM}],
                }
            ],
        }
    )
    agent = Agent(cfg, Store(tmp_path / "v.db"), clock=VirtualClock(T0))
    assert sorted(m.name for m in agent.models) == ["glucose", "rhythm"]
    assert agent.forecaster is not None
    assert agent.rhythm is not None
    return agent


def cgm_note(offset_min: int, mg_dl: float, *, session: float = SESSION, status: StatusOctet | None = None) -> Any:
    record = CgmMeasurementRecord(SFloat.from_value(round(mg_dl)), offset_min, status=status)
    t = session + 60.0 * offset_min
    return CgmNotification("w1", CGM, "2AA7", encode_cgm_measurement([record]), t + 1.0, session)


def falling_night(start_min: int, n: int = 50, steady: int = 24) -> list[tuple[int, float]]:
    """Every 5 minutes: 150 mg/dL for ``steady`` readings, then falling 2 mg/dL a minute (floored at 45)."""
    out, value = [], 150.0
    for k in range(n):
        if k >= steady:
            value = max(value - 10.0, 45.0)
        out.append((start_min + 5 * k, value))
    return out


class Feed:
    """The agent with a stand-in publisher: after each batch, every pending message is taken (and acknowledged)
    in the order the real publisher sends them, so each state message is seen, not only the newest."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, notes: list[RawNotification]) -> None:
        self.agent.handle(notes)
        pending = self.agent.store.outbox_pending(1_000_000)
        self.sent += [(m.topic, json.loads(m.payload)) for m in pending]
        self.agent.store.outbox_done(m.seq for m in pending)

    def states(self) -> list[dict[str, Any]]:
        return [p for topic, p in self.sent if topic.endswith("/w1/state")]

    def alerts(self, kind: str) -> list[dict[str, Any]]:
        return [p for topic, p in self.sent if topic.endswith(f"/alert/{kind}")]


def test_a_falling_night_raises_a_predicted_low_before_the_low_and_shows_the_forecast(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    feed = Feed(agent)
    start = int((T0 - SESSION) / 60)
    for offset, value in falling_night(start):
        feed([cgm_note(offset, value)])
    predicted = feed.alerts("glucose_predicted_low")
    low = feed.alerts("glucose_low")
    assert [a["state"] for a in predicted][:1] == ["raised"]
    assert [a["state"] for a in low][:1] == ["raised"]
    assert predicted[0]["time"] < low[0]["time"]  # the forecast warned before the reading crossed 70
    raised = predicted[0]
    model = agent.forecaster.model  # type: ignore[union-attr]
    assert raised["source"]["model"] == {"name": "glucose", "version": model.version, "sha256": model.sha256}
    assert set(raised["source"]["window"]) == {"start", "end", "sha256"}
    assert "predicted low" in raised["reason"]
    assert "raw" not in raised  # readings stay home unless [mqtt] include_raw says otherwise
    with_forecast = [s for s in feed.states() if s.get("forecast", {}).get("status") == "ok"]
    assert with_forecast, "the state topic never showed a forecast"
    last = with_forecast[-1]["forecast"]
    assert last["horizons_min"] == [15, 30, 45, 60]
    assert len(last["mg_dl"]) == len(last["lower_mg_dl"]) == len(last["upper_mg_dl"]) == 4
    assert all(lo <= m <= hi for lo, m, hi in zip(last["lower_mg_dl"], last["mg_dl"], last["upper_mg_dl"], strict=True))
    assert "warm_up" not in last  # the session's start is known: the warm-up gate was applied (and passed)
    # The same episode is in the store, raised once.
    rows = [a for a in agent.store.alerts() if a.kind == "glucose_predicted_low"]
    assert [a.state for a in rows].count("raised") == 1


def test_include_raw_puts_the_input_window_in_the_alert_and_its_hash_checks(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, include_raw=True)
    feed = Feed(agent)
    start = int((T0 - SESSION) / 60)
    for offset, value in falling_night(start):
        feed([cgm_note(offset, value)])
    raised = next(a for a in feed.alerts("glucose_predicted_low") if a["state"] == "raised")
    values = raised["raw"]["glucose_mg_dl"]
    assert len(values) == agent.forecaster.params.length  # type: ignore[union-attr]
    assert window_sha256(np.array(values, dtype=float)) == raised["source"]["window"]["sha256"]


def test_cgm_status_and_warm_up_suppress_the_forecast_and_say_why_on_the_state_topic(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    feed = Feed(agent)
    start = int((T0 - SESSION) / 60)
    for offset, value in falling_night(start):
        feed([cgm_note(offset, value, status=StatusOctet.SENSOR_MALFUNCTION)])
    assert feed.alerts("glucose_predicted_low") == []
    forecast = feed.states()[-1]["forecast"]
    assert forecast["status"] == "suppressed"
    assert "cgm_status:sensor_malfunction" in forecast["reasons"]
    assert "mg_dl" not in forecast

    # A fresh sensor: a fall within the session's first two hours (the card's warm_up_s) is not forecast; the
    # threshold rules still alert on the readings themselves.
    warm = Feed(make_agent(tmp_path / "warm"))
    trace = falling_night(10, n=20, steady=8)
    assert trace[-1][1] < 54.0
    for offset, value in trace:
        warm([cgm_note(offset, value, session=T0)])
    assert warm.alerts("glucose_predicted_low") == []
    forecast = warm.states()[-1]["forecast"]
    assert forecast["status"] == "suppressed"
    assert forecast["reasons"] == [REASON_WARM_UP]
    assert [a["state"] for a in warm.alerts("glucose_urgent_low")] == ["raised"]


def strap_notes(contact: SensorContact, from_s: float, to_s: float) -> list[RawNotification]:
    """afdb 04746's beats as Heart Rate Measurement notifications of about a second each."""
    (record,) = load_set(FIXTURES, "afdb", keep=lambda r: r == "04746").records
    keep = (record.t_s >= from_s) & (record.t_s < to_s)
    t_s, rr_s = record.t_s[keep].tolist(), record.rr_s[keep].tolist()
    notes, ticks, began = [], [], t_s[0]
    for t, rr in zip(t_s, rr_s, strict=True):
        ticks.append(round(rr * 1024))
        if t - began >= 1.0:
            bpm = round(60.0 / (sum(ticks) / 1024 / len(ticks)))
            m = HeartRateMeasurement(min(bpm, 255), sensor_contact=contact, rr_intervals=tuple(ticks))
            notes.append(RawNotification("w1", STRAP, "2A37", encode_heart_rate_measurement(m), T0 + t))
            ticks, began = [], t
    return notes


def test_an_af_stretch_from_a_strap_raises_an_irregular_rhythm_alert_that_names_model_and_window(
    tmp_path: Path,
) -> None:
    agent = make_agent(tmp_path)
    feed = Feed(agent)
    notes = strap_notes(SensorContact.DETECTED, AF_ONSET_S - 900.0, AF_ONSET_S + 600.0)
    for k in range(0, len(notes), 30):
        feed(notes[k : k + 30])
    raised = [a for a in feed.alerts("heart_irregular_rhythm") if a["state"] == "raised"]
    assert len(raised) == 1
    alert = raised[0]
    model = agent.rhythm.model  # type: ignore[union-attr]
    assert alert["source"]["model"] == {"name": "rhythm", "version": model.version, "sha256": model.sha256}
    assert set(alert["source"]["window"]) == {"start", "end", "sha256"}
    assert "irregular" in alert["reason"]
    assert "normalised RMSSD" in alert["reason"]
    assert alert["values"]["af_probability"] >= alert["thresholds"]["af_probability"]
    rhythm = [s["rhythm"] for s in feed.states() if "rhythm" in s]
    assert rhythm
    assert any(r["irregular"] is True and r["quality"]["ok"] is True for r in rhythm)
    # A window the gates refuse is shown with the reason and no probability (AF beats can look ectopic).
    assert all(r["af_probability"] is None and r["quality"]["reasons"] for r in rhythm if not r["quality"]["ok"])
    # Before the AF began, the state showed the sinus windows scored, and low.
    onset = datetime.fromtimestamp(T0 + AF_ONSET_S, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    before = [r["af_probability"] for r in rhythm if r["window"]["end"] < onset and r["quality"]["ok"]]
    assert len(before) >= 5
    assert max(before) < 0.5


def test_no_skin_contact_suppresses_the_rhythm_alert_and_says_why(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    feed = Feed(agent)
    notes = strap_notes(SensorContact.NOT_DETECTED, AF_ONSET_S - 300.0, AF_ONSET_S + 600.0)
    for k in range(0, len(notes), 30):
        feed(notes[k : k + 30])
    assert feed.alerts("heart_irregular_rhythm") == []
    rhythm = [s["rhythm"] for s in feed.states() if "rhythm" in s]
    assert rhythm
    assert all(r["quality"]["ok"] is False and r["af_probability"] is None for r in rhythm)
    assert rhythm[-1]["quality"]["reasons"] == [REASON_NO_CONTACT]
    # The heart-rate rules ignore a strap that says it is not on the skin, too.
    assert feed.alerts("heart_tachycardia") == []
