"""sim.recording and sim.record: the recording format, capture through bleak (the simulator's backend), and
replaying what was captured."""

from __future__ import annotations

import asyncio
import gzip
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.clock import VirtualClock
from agent.config import DeviceConfig
from agent.errors import ConfigError
from sim import recording
from sim.bleak_backend import sim_backends
from sim.build import build
from sim.player import Disconnect, Event, FeedEvent, SetAdvertising, SetValue, play
from sim.record import Target, capture, parse_device
from sim.recording import Device, Header, LinkChange, Notification, RecordingError, RecordingWriter
from sim.replay import run_replay
from sim.scenario import parse

T0 = 1_768_514_400.0
DEVICES = (Device(0, "w-1", "hr_strap", "AA:00:00:00:00:01", "HRM"), Device(1, "w-1", "cgm", "AA:00:00:00:00:02"))

entries = st.lists(
    st.one_of(
        st.builds(
            Notification,
            t=st.just(0.0),
            device=st.sampled_from([0, 1]),
            characteristic=st.sampled_from(["2A37", "2AA7", "2A19", "0000fff1-0000-1000-8000-00805f9b34fb"]),
            data=st.binary(max_size=40),
            read=st.booleans(),
            session_start=st.one_of(st.none(), st.floats(1e9, 2e9)),
        ),
        st.builds(
            LinkChange, t=st.just(0.0), device=st.sampled_from([0, 1]), state=st.sampled_from(recording.LINK_STATES)
        ),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries, st.lists(st.floats(0, 5), min_size=60, max_size=60))
def test_a_recording_reads_back_exactly_what_was_written(
    tmp_path: Path, written: list[recording.Entry], steps: list[float]
) -> None:
    path = tmp_path / "r.vrec"
    header = Header(start=T0, devices=DEVICES, source="sim", note="round trip", wearers={"w-1": {"thresholds": {}}})
    t = T0
    timed: list[recording.Entry] = []
    with RecordingWriter(path, header) as w:
        for e, step in zip(written, steps, strict=False):
            t += step
            if isinstance(e, Notification):
                w.notification(t, e.device, e.characteristic, e.data, read=e.read, session_start=e.session_start)
                timed.append(Notification(t, e.device, e.characteristic, e.data, e.read, e.session_start))
            else:
                w.link(t, e.device, e.state)
                timed.append(LinkChange(t, e.device, e.state))
    rec = recording.read(path)
    assert rec.complete
    assert rec.header.devices == DEVICES
    assert (rec.header.start, rec.header.source, rec.header.note) == (T0, "sim", "round trip")
    assert rec.entries == timed
    assert recording.is_recording(path)


def test_a_capture_that_was_killed_reads_up_to_its_last_flush(tmp_path: Path) -> None:
    path = tmp_path / "live.vrec"
    w = RecordingWriter(path, Header(start=T0, devices=DEVICES), flush_every_s=10.0)
    for k in range(100):
        w.notification(T0 + k, 0, "2A37", bytes([0x16, 60 + k % 10]))
    killed = tmp_path / "killed.vrec"
    shutil.copy(path, killed)  # as the file is on disk now: no trailer, a torn compressed stream
    w.close()
    rec = recording.read(killed)
    assert not rec.complete
    assert 90 <= len(rec.entries) < 100
    assert all(isinstance(e, Notification) for e in rec.entries)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('{"format": "something-else", "version": 1}', ""),
        ('{"format": "vigil-recording", "version": 9, "start": 0, "devices": []}', ""),
        ('{"format": "vigil-recording", "version": 1, "start": 0, "devices": [{"id": 0}]}', ""),
        (
            '{"format": "vigil-recording", "version": 1, "start": 0, "devices": []}',
            '{"t": 1, "d": 4, "c": "2A37", "x": "00"}',
        ),
        (
            '{"format": "vigil-recording", "version": 1, "start": 0, '
            '"devices": [{"id": 0, "wearer": "w", "kind": "hr_strap", "address": "AA"}]}',
            '{"t": 1, "d": 0, "c": "2A37", "x": "zz"}',
        ),
    ],
)
def test_a_broken_recording_names_its_line(tmp_path: Path, first: str, second: str) -> None:
    path = tmp_path / "bad.vrec"
    with gzip.open(path, "wt") as f:
        f.write(first + "\n" + (second + "\n" if second else ""))
    with pytest.raises(RecordingError) as info:
        recording.read(path)
    assert info.value.line == (2 if second else 1)
    assert not recording.is_recording(tmp_path / "missing.vrec")


def test_a_cgm_record_that_came_by_backfill_is_played_when_it_was_measured(tmp_path: Path) -> None:
    from firmware_bridge.cgm import CgmMeasurementRecord, encode_cgm_measurement
    from firmware_bridge.sfloat import SFloat

    session = T0 - 86400.0

    def record(minutes_after_t0: int, mg: float) -> bytes:
        offset = int((T0 + 60 * minutes_after_t0 - session) // 60)
        return encode_cgm_measurement([CgmMeasurementRecord(SFloat.from_value(mg), offset)])

    path = tmp_path / "cgm.vrec"
    with RecordingWriter(path, Header(start=T0, devices=DEVICES[1:])) as w:
        w.link(T0, 1, "connecting")
        w.notification(T0, 1, "2AA8", b"\x00\x80\x01\x95\xff\xff", read=True)
        w.notification(T0, 1, "2A19", bytes([77]), read=True)
        w.link(T0, 1, "connected")
        w.notification(T0 + 1, 1, "2AA7", record(0, 100), session_start=session)
        w.link(T0 + 200, 1, "reconnecting")
        w.link(T0 + 1000, 1, "connected")
        w.notification(T0 + 1001, 1, "2AA7", record(5, 101), session_start=session)  # backfilled
        w.notification(T0 + 1002, 1, "2AA7", record(10, 102), session_start=session)  # backfilled
        w.notification(T0 + 1003, 1, "2AA7", record(0, 100), session_start=session)  # already had it
        w.notification(T0 + 1200, 1, "2AA7", record(20, 104), session_start=session)
    p = recording.playable(path)
    kinds = [(type(e).__name__, round(e.t - T0)) for e in p.events]
    assert kinds == [
        ("SetValue", 0),  # the battery level read at connect: served to the next read
        ("FeedEvent", 1),
        ("Disconnect", 200),
        ("SetAdvertising", 200),
        ("FeedEvent", 300),
        ("FeedEvent", 600),
        ("SetAdvertising", 1000),
        ("FeedEvent", 1200),
    ]
    cgm = p.world["AA:00:00:00:00:02"]
    assert cgm.characteristic("2AA8").value == b"\x00\x80\x01\x95\xff\xff"
    assert cgm.characteristic("2A19").value == bytes([77])
    assert p.devices == {"w-1": {"cgm": "AA:00:00:00:00:02"}}
    # Out of range from 200 s to 1000 s, and nothing live from 1 s to 1001 s: longer than the CGM's 15 minutes.
    assert sorted(e.kind for e in p.truth if e.scored) == ["sensor_disconnected", "sensor_stale"]


def test_record_through_the_simulators_backend_then_replay_it(tmp_path: Path) -> None:
    scenario = parse(
        {
            "scenario": {"name": "rec", "hours": 0.5, "seed": 4},
            "wearer": [
                {
                    "id": "w-r",
                    "strap": {"segments": [{"generator": "sinus", "bpm": [[0, 66]]}]},
                    "cgm": {"generator": "anchors", "points": [[0, 90], [0.5, 60]], "noise": 0},
                    "faults": [
                        {"kind": "disconnect", "device": "cgm", "at_min": 8, "minutes": 12},
                        {"kind": "battery", "device": "strap", "to_pct": 85, "minutes": 20},
                    ],
                }
            ],
        }
    )
    built = build(scenario)
    plan = built.wearers[0]
    assert plan.strap is not None
    assert plan.cgm is not None
    targets = [
        Target("w-r", DeviceConfig("hr_strap", address=plan.strap)),
        Target("w-r", DeviceConfig("cgm", address=plan.cgm)),
    ]
    clock = VirtualClock(scenario.start)
    backends = sim_backends(built.world)
    out = tmp_path / "rec.vrec"

    async def connected(address: str) -> None:
        while not built.world[address].is_connected:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # subscriptions and, for the CGM, the RACP backfill

    async def before(event: Event) -> None:
        if isinstance(event, FeedEvent) and before.back is not None:  # type: ignore[attr-defined]
            await connected(before.back)  # type: ignore[attr-defined]
            before.back = None  # type: ignore[attr-defined]
        if isinstance(event, SetAdvertising) and event.on:
            before.back = event.address  # type: ignore[attr-defined]

    before.back = None  # type: ignore[attr-defined]

    async def scenario_plays() -> None:
        for p in built.world:
            await connected(p.address)
        await play(built.world, built.events, clock, before=before)
        await asyncio.sleep(0.2)

    stats = asyncio.run(
        asyncio.wait_for(
            capture(out, targets, until=scenario_plays, clock=clock, scanner_backend=backends.scanner,
                    client_backend=backends.client, source="sim"),
            60,
        )
    )  # fmt: skip
    rec = recording.read(out)
    assert rec.complete
    assert rec.header.source == "sim"
    # Every heart-rate notification, byte for byte and at its time; every CGM reading, live or by backfill.
    sent_hr = [(e.t, e.data) for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2A37"]
    got_hr = [(e.t, e.data) for e in rec.entries if isinstance(e, Notification) and e.characteristic == "2A37"]
    assert got_hr == sent_hr
    sent_cgm = {e.data for e in built.events if isinstance(e, FeedEvent) and e.characteristic == "2AA7"}
    got_cgm = {e.data for e in rec.entries if isinstance(e, Notification) and e.characteristic == "2AA7"}
    assert got_cgm == sent_cgm
    assert stats.reads >= 4  # battery and body sensor location, CGM feature and battery, and again on reconnect
    states = [e.state for e in rec.entries if isinstance(e, LinkChange) and e.device == 1]
    assert states[:2] == ["connecting", "connected"]
    assert "reconnecting" in states
    battery = [e for e in rec.entries if isinstance(e, Notification) and e.characteristic == "2A19" and not e.read]
    assert [e.data[0] for e in battery] == list(range(89, 84, -1))

    playable = recording.playable(out)
    assert any(isinstance(e, Disconnect) for e in playable.events)
    assert any(isinstance(e, SetValue) for e in playable.events) or stats.reads >= 4
    result = run_replay(playable, tmp_path / "replay.db", speed=None, broker="none")
    readings = result.stats["readings"]
    assert readings["hr"] == len(sent_hr)
    assert readings["glucose"] >= len(sent_cgm)
    from agent.store import Store

    store = Store(tmp_path / "replay.db")
    assert store.count_readings()["glucose"] == len(sent_cgm)
    kinds = {a.kind for a in store.alerts() if a.state == "raised"}
    store.close()
    assert {"sensor_disconnected", "glucose_low"} <= kinds


def test_devices_on_the_command_line() -> None:
    assert parse_device("hr_strap=f1:22:33:44:55:66") == DeviceConfig("hr_strap", address="F1:22:33:44:55:66")
    assert parse_device("cgm=name:CGM-1234") == DeviceConfig("cgm", name="CGM-1234")
    with pytest.raises(ConfigError):
        parse_device("thermometer=AA")
