"""sim.build: scenario signals into GATT bytes, faults into the feed, and the truth beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.errors import CodecError
from firmware_bridge.heart_rate import SensorContact, decode_heart_rate_measurement
from sim.build import SESSION_LEAD_S, build
from sim.player import Disconnect, FeedEvent, SetAdvertising
from sim.scenario import load, parse
from sim.sources import DataError

KNOWN = Path(__file__).parents[1] / "fixtures" / "scenarios" / "known.toml"
STRAP, CGM = "C0:FF:EE:00:00:01", "C0:FF:EE:00:00:02"


def scenario(faults: list[dict[str, Any]] | None = None, hours: float = 1.0) -> Any:
    return parse(
        {
            "scenario": {"name": "b", "hours": hours, "seed": 2},
            "wearer": [
                {
                    "id": "w",
                    "strap": {"battery": 50, "segments": [{"generator": "sinus", "bpm": [[0, 70]]}]},
                    "cgm": {"generator": "anchors", "points": [[0, 100], [1, 130]], "noise": 0},
                    "faults": faults or [],
                }
            ],
        }
    )


def test_strap_notifications_carry_the_beats_exactly() -> None:
    built = build(scenario())
    beats = built.wearers[0].beats
    assert beats is not None
    t0 = built.scenario.start
    hr = [e for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2A37"]
    assert len(hr) == 3600
    assert [e.t - t0 for e in hr[:3]] == [1.0, 2.0, 3.0]
    ticks: list[int] = []
    for e in hr:
        m = decode_heart_rate_measurement(e.data)
        assert m.sensor_contact is SensorContact.DETECTED
        assert 50 <= m.hr_bpm <= 95
        ticks += list(m.rr_intervals or ())
    assert len(ticks) == len(beats)
    assert np.allclose(np.array(ticks) / 1024.0, beats.rr, atol=0.5 / 1024)


def test_cgm_records_are_stamped_on_the_session_time_line_with_crc() -> None:
    built = build(scenario())
    t0 = built.scenario.start
    cgm = [e for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2AA7"]
    assert len(cgm) == 13
    for k, e in enumerate(cgm):
        (record,) = decode_cgm_measurement(e.data, require_crc=True)
        assert e.t == t0 + 300 * k
        assert record.time_offset_min == (SESSION_LEAD_S + 300 * k) // 60
        assert record.glucose_mg_dl == pytest.approx(100 + 30 * k / 12, abs=0.6)


def test_faults_shape_the_feed() -> None:
    built = build(
        scenario(
            [
                {"kind": "disconnect", "device": "cgm", "at_min": 10, "minutes": 20},
                {"kind": "silent", "device": "strap", "at_min": 5, "minutes": 2},
                {"kind": "corrupt", "device": "strap", "at_min": 40, "count": 3, "every_s": 10},
                {"kind": "corrupt", "device": "cgm", "at_min": 45, "mode": "crc"},
                {"kind": "contact_loss", "at_min": 50, "minutes": 1},
                {"kind": "battery", "device": "strap", "to_pct": 40, "at_min": 0, "minutes": 50},
            ]
        )
    )
    t0 = built.scenario.start
    hr = {e.t - t0: e.data for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2A37"}
    assert not any(300 <= t < 420 for t in hr)
    rejected = []
    for t, data in hr.items():
        try:
            m = decode_heart_rate_measurement(data)
        except CodecError:
            rejected.append(t)
            continue
        if 3000 <= t < 3060:
            assert m.sensor_contact is SensorContact.NOT_DETECTED
            assert not m.rr_intervals
    assert rejected == [2400.0, 2410.0, 2420.0]
    cgm = [e for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2AA7"]
    with pytest.raises(CodecError):
        decode_cgm_measurement(next(e.data for e in cgm if e.t - t0 == 2700), require_crc=True)
    controls = [(type(e).__name__, e.t - t0) for e in built.events if not isinstance(e, FeedEvent)]
    assert controls == [("Disconnect", 600.0), ("SetAdvertising", 600.0), ("SetAdvertising", 1800.0)]
    assert isinstance(built.events[[type(e) for e in built.events].index(Disconnect)], Disconnect)
    assert any(isinstance(e, SetAdvertising) and e.on for e in built.events)
    levels = [
        decode_battery_level(e.data) for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2A19"
    ]
    assert levels == list(range(49, 39, -1))
    kinds = {(e.kind, e.subject) for e in built.truth if e.scored}
    assert ("sensor_disconnected", CGM) in kinds
    assert ("sensor_stale", CGM) in kinds
    assert ("sensor_stale", STRAP) not in kinds  # 2 minutes of silence is not over the 2-minute limit plus margin


def test_the_known_scenario_builds_its_documented_truth() -> None:
    built = build(load(KNOWN))
    t0 = built.scenario.start
    scored = sorted((e.kind, round((e.start - t0) / 60)) for e in built.truth if e.scored)
    assert [k for k, _ in scored].count("sensor_stale") == 2
    assert ("heart_irregular_rhythm", 30) in scored
    assert ("sensor_disconnected", 225) in scored
    assert ("sensor_battery_low", 192) in scored
    assert {k for k, _ in scored} >= {"glucose_low", "glucose_urgent_low", "glucose_high", "glucose_urgent_high",
                                      "heart_tachycardia", "heart_bradycardia"}  # fmt: skip


def test_a_missing_data_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        build(load("af-records"), tmp_path)
    assert str(tmp_path) in info.value.path
