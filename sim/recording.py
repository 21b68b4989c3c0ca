"""The recording format: what BLE devices sent, byte for byte, with when it arrived, and how to replay it.

A recording (``.vrec``) is gzip-compressed JSON Lines, UTF-8. The first line is the header; then one line per
thing that happened, in the order it happened (times never decrease); the last line may be a trailer::

    {"format": "vigil-recording", "version": 1,
     "created": "2026-01-16T07:00:02Z",            # when the file was finished or started (UTC)
     "start": 1768514400.0,                        # epoch seconds (UTC) the capture started
     "tool": "vigil 0.1.0", "source": "bleak",     # "bleak": real devices; "sim": the simulator's backend
     "note": "free text",
     "wearers": {"w-1": {"thresholds": {...}}},    # the agent's per-wearer thresholds at capture (optional)
     "devices": [{"id": 0, "wearer": "w-1", "kind": "hr_strap", "address": "F1:22:33:44:55:66",
                  "name": "HRM-Pro"}, ...]}
    {"t": 1768514401.013, "d": 0, "c": "2A37", "x": "16400004"}               # a notification
    {"t": 1768514400.410, "d": 1, "c": "2AA8", "x": "...", "read": true}       # a read at connect
    {"t": 1768514700.002, "d": 1, "c": "2AA7", "x": "...", "s": 1768255200.0}  # CGM, with the session anchor
    {"t": 1768518000.500, "d": 1, "link": "reconnecting"}                      # the link's state changed
    {"end": 1768543200.0, "lines": 86712}                                     # the trailer (optional)

``t`` is the agent clock when the bytes arrived; ``d`` the device's ``id`` in the header; ``c`` the
characteristic's 16-bit UUID in upper-case hex (or the 128-bit UUID); ``x`` the bytes in lower-case hex, exactly
as received; ``read`` marks a value read at connect rather than notified; ``s`` is the epoch time the link
placed a CGM session's time offset 0 at (see agent/ble.py, "CGM backfill"); ``link`` is one of
``connecting``, ``connected``, ``reconnecting``, ``lost``. Readers ignore keys they do not know; a file that
ends without a trailer (a capture that was killed) is still read up to its last whole line.

Replaying a recording (:func:`playable`): each device becomes a virtual peripheral serving the values read
at connect; notifications are played at their times; a link that dropped drops and the device stops
advertising until the link came back. CGM records that arrived by backfill (more than two minutes after they
were measured) are played at the time they were measured instead, so that the virtual sensor keeps them while
the link is down and serves them over RACP when the agent reconnects, as the real one did; a record that
arrived twice is played once. The truth of a recording is what its own data say: glucose events from the
CGM's values, heart-rate events from the strap's rate, silences, outages and battery levels; there is no
rhythm truth (no labels), so AF alerts are not scored on a recording.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from agent import __version__
from agent.config import AlertPolicy, Config, Thresholds, parse_config
from firmware_bridge.battery import decode_battery_level
from firmware_bridge.cgm import decode_cgm_measurement
from firmware_bridge.errors import CodecError
from firmware_bridge.heart_rate import SensorContact, decode_heart_rate_measurement
from sim.cgm_device import CgmDevice
from sim.peripheral import SimError, SimWorld, heart_rate_strap
from sim.player import Disconnect, Event, FeedEvent, SetAdvertising, SetValue
from sim.truth import TruthEvent, battery_truth, glucose_truth, hr_truth, outage_truth, silence_truth

if TYPE_CHECKING:
    from sim.replay import Playable

FORMAT = "vigil-recording"
VERSION = 1
LINK_STATES = ("connecting", "connected", "reconnecting", "lost")
BACKFILL_AFTER_S = 120.0
_READ_ONLY = frozenset({"2A38", "2AA8"})


class RecordingError(SimError):
    """A recording is unreadable or inconsistent: ``path``, ``line`` (1-based, 0 for the file) and ``problem``."""

    def __init__(self, path: Path | str, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}" if line else f"{path}: {problem}")


@dataclass(frozen=True)
class Device:
    id: int
    wearer: str
    kind: str  # hr_strap | cgm
    address: str
    name: str | None = None


@dataclass(frozen=True)
class Header:
    start: float
    devices: tuple[Device, ...]
    source: str = "bleak"
    note: str = ""
    created: str = ""
    tool: str = ""
    wearers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created or _iso(datetime.now(timezone.utc).timestamp()),
            "start": self.start,
            "tool": self.tool or f"vigil {__version__}",
            "source": self.source,
            "note": self.note,
            "wearers": self.wearers,
            "devices": [asdict(d) for d in self.devices],
        }


@dataclass(frozen=True)
class Notification:
    t: float
    device: int
    characteristic: str
    data: bytes
    read: bool = False
    session_start: float | None = None


@dataclass(frozen=True)
class LinkChange:
    t: float
    device: int
    state: str


Entry = Notification | LinkChange


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RecordingWriter:
    """Writes a recording as things arrive. Use as a context manager; times must not decrease.

    The compressed stream is flushed every ``flush_every_s`` of recording time, so a capture that is killed
    loses at most that much."""

    def __init__(self, path: Path, header: Header, *, flush_every_s: float = 10.0) -> None:
        self.path = path
        self.header = header
        self.lines = 0
        self.last_t = -math.inf
        self._flush_every = flush_every_s
        self._last_flush = -math.inf
        self._known = {d.id for d in header.devices}
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115  (closed by close())
        self._write(header.to_json())

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, obj: dict[str, Any]) -> None:
        self._f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        self.lines += 1

    def _check(self, t: float, device: int) -> float:
        if device not in self._known:
            raise RecordingError(self.path, self.lines + 1, f"device {device} is not in the header")
        t = max(t, self.last_t)  # a clock that stepped back a hair must not break the order
        self.last_t = t
        if t - self._last_flush >= self._flush_every:
            self._f.flush()
            self._last_flush = t
        return t

    def notification(
        self, t: float, device: int, characteristic: str, data: bytes, *, read: bool = False,
        session_start: float | None = None,
    ) -> None:  # fmt: skip
        obj: dict[str, Any] = {"t": self._check(t, device), "d": device, "c": characteristic, "x": bytes(data).hex()}
        if read:
            obj["read"] = True
        if session_start is not None:
            obj["s"] = session_start
        self._write(obj)

    def link(self, t: float, device: int, state: str) -> None:
        if state not in LINK_STATES:
            raise RecordingError(self.path, self.lines + 1, f"unknown link state {state!r}")
        self._write({"t": self._check(t, device), "d": device, "link": state})

    def close(self, end: float | None = None) -> None:
        if self._f.closed:
            return
        self._write({"end": end if end is not None else self.last_t, "lines": self.lines + 1})
        self._f.close()


def is_recording(path: Path) -> bool:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return bool(json.loads(f.readline()).get("format") == FORMAT)
    except (OSError, ValueError, UnicodeDecodeError, AttributeError, EOFError):
        return False


@dataclass
class Recording:
    header: Header
    entries: list[Entry]
    end: float
    complete: bool  # it had a trailer


def read(path: Path) -> Recording:
    """Read a whole recording. Raises :class:`RecordingError` naming the line that is wrong."""
    entries: list[Entry] = []
    end: float | None = None
    complete = False
    last_t = -math.inf
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = _header(path, f.readline())
            ids = {d.id for d in header.devices}
            for n, line in enumerate(_whole_lines(f), start=2):
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise RecordingError(path, n, f"not JSON: {exc}") from exc
                if "end" in obj:
                    end, complete = float(obj["end"]), True
                    break
                entry = _entry(path, n, obj, ids)
                if entry.t < last_t:
                    raise RecordingError(path, n, f"time {entry.t} is before the line above ({last_t})")
                last_t = entry.t
                entries.append(entry)
    except (OSError, EOFError) as exc:
        if not entries:
            raise RecordingError(path, 0, f"cannot read: {exc}") from exc
    return Recording(header, entries, end if end is not None else (last_t if entries else header.start), complete)


def _whole_lines(f: IO[str]) -> Iterator[str]:
    """The lines of a stream that may end in a torn, unterminated line (a capture killed mid-write)."""
    try:
        for line in f:
            if line.endswith("\n"):
                yield line
    except EOFError:
        return


def _header(path: Path, line: str) -> Header:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise RecordingError(path, 1, "not a recording (the first line is not JSON)") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise RecordingError(path, 1, f"not a recording (format is not {FORMAT!r})")
    if obj.get("version") != VERSION:
        raise RecordingError(path, 1, f"version {obj.get('version')!r}; this reader knows {VERSION}")
    try:
        devices = tuple(
            # A device found by its advertised name has no address in the header: replay invents one.
            Device(
                int(d["id"]),
                str(d["wearer"]),
                str(d["kind"]),
                str(d.get("address") or f"C0:FF:EE:FF:{int(d['id']):02X}:00").upper(),
                d.get("name"),
            )
            for d in obj["devices"]
        )
        start = float(obj["start"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(path, 1, f"header: {exc!r}") from exc
    for d in devices:
        if d.kind not in ("hr_strap", "cgm"):
            raise RecordingError(path, 1, f"device {d.id}: kind {d.kind!r} is neither hr_strap nor cgm")
    return Header(start, devices, str(obj.get("source", "")), str(obj.get("note", "")), str(obj.get("created", "")),
                  str(obj.get("tool", "")), dict(obj.get("wearers") or {}))  # fmt: skip


def _entry(path: Path, n: int, obj: Any, ids: set[int]) -> Entry:
    try:
        t, d = float(obj["t"]), int(obj["d"])
        if d not in ids:
            raise RecordingError(path, n, f"device {d} is not in the header")
        if "link" in obj:
            if obj["link"] not in LINK_STATES:
                raise RecordingError(path, n, f"unknown link state {obj['link']!r}")
            return LinkChange(t, d, obj["link"])
        s = obj.get("s")
        return Notification(t, d, str(obj["c"]).upper() if len(str(obj["c"])) == 4 else str(obj["c"]),
                            bytes.fromhex(obj["x"]), bool(obj.get("read", False)),
                            None if s is None else float(s))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordingError(path, n, f"bad entry: {exc!r}") from exc


# -- replaying ------------------------------------------------------------------------------------------------


def _thresholds(header: Header, wearer: str) -> Thresholds:
    given = (header.wearers.get(wearer) or {}).get("thresholds") or {}
    known = set(Thresholds.__dataclass_fields__)
    return Thresholds(**{k: float(v) for k, v in given.items() if k in known})


def _cgm_measured(n: Notification) -> list[tuple[int, float | None]]:
    """(time offset, measured epoch time or None) of each record in a CGM notification; [] if ill-formed."""
    try:
        records = decode_cgm_measurement(n.data)
    except CodecError:
        return []
    return [(r.time_offset_min, None if n.session_start is None else n.session_start + 60.0 * r.time_offset_min)
            for r in records]  # fmt: skip


def playable(path: Path) -> Playable:
    """A :class:`sim.replay.Playable` of the recording at ``path``."""
    from sim.replay import Playable

    rec = read(path)
    h = rec.header
    world = SimWorld()
    by_id = {d.id: d for d in h.devices}
    first_read: dict[tuple[int, str], bytes] = {}
    for e in rec.entries:
        if isinstance(e, Notification) and (e.read or e.characteristic in _READ_ONLY):
            first_read.setdefault((e.device, e.characteristic), e.data)
    session = next((e.session_start for e in rec.entries if isinstance(e, Notification) and e.session_start), None)
    for d in h.devices:
        battery_bytes = first_read.get((d.id, "2A19"))
        battery = _battery(battery_bytes) if battery_bytes else 100
        if d.kind == "hr_strap":
            bsl = first_read.get((d.id, "2A38"))
            world.add(
                heart_rate_strap(d.address, d.name, battery=battery, body_sensor_location=bsl[0] if bsl else None)
            )
        else:
            cgm = CgmDevice(d.address, d.name, session_start=session or h.start, battery=battery)
            feature = first_read.get((d.id, "2AA8"))
            if feature is not None:
                cgm.set_value("2AA8", feature)
            world.add(cgm)
    events: list[tuple[float, int, int, Event]] = []
    seen_records: set[tuple[int, float | None, int]] = set()
    connected: dict[int, bool] = {}
    dropped: set[int] = set()
    for i, e in enumerate(rec.entries):
        addr = by_id[e.device].address
        if isinstance(e, LinkChange):
            was = connected.get(e.device, False)
            now = e.state == "connected"
            if was and not now:
                events += [(e.t, 0, i, Disconnect(e.t, addr)), (e.t, 0, i, SetAdvertising(e.t, addr, False))]
                dropped.add(e.device)
            elif now and not was and e.device in dropped:
                events.append((e.t, 0, i, SetAdvertising(e.t, addr, True)))
                dropped.discard(e.device)
            connected[e.device] = now
            continue
        if e.read or e.characteristic in _READ_ONLY:
            if e.characteristic == "2A19":
                events.append((e.t, 0, i, SetValue(e.t, addr, e.characteristic, e.data)))
            continue
        t = e.t
        if e.characteristic == "2AA7":
            measured = _cgm_measured(e)
            keys = {(e.device, e.session_start, off) for off, _ in measured}
            if keys and keys <= seen_records:
                continue  # a record that came twice (live and by backfill) is played once
            seen_records |= keys
            times = [m for _, m in measured if m is not None]
            if times and e.t - max(times) > BACKFILL_AFTER_S:
                t = max(times)  # it came by backfill: the sensor measured it then
        events.append((t, 1, i, FeedEvent(t, addr, e.characteristic, e.data)))
    events.sort(key=lambda x: (x[0], x[1], x[2]))
    devices: dict[str, dict[str, str]] = {}
    for d in h.devices:
        devices.setdefault(d.wearer, {})["strap" if d.kind == "hr_strap" else "cgm"] = d.address
    start = min(h.start, events[0][0]) if events else h.start
    end = max(rec.end, events[-1][0]) if events else rec.end

    def make_config(db: Path, mqtt: dict[str, Any]) -> Config:
        wearers = []
        for w, devs in devices.items():
            listed = [{"kind": "hr_strap" if role == "strap" else "cgm", "address": a} for role, a in devs.items()]
            wearers.append({"id": w, "devices": listed, "thresholds": asdict(_thresholds(h, w))})
        return parse_config({"agent": {"id": "replay", "site": "sim", "db": str(db)}, "mqtt": mqtt,
                             "wearers": wearers})  # fmt: skip

    return Playable(
        name=path.name.split(".")[0],
        kind="recording",
        source=str(path),
        world=world,
        events=[e for *_, e in events],
        devices=devices,
        start=start,
        end=end,
        make_config=make_config,
        truth=truth(rec, start, end),
    )


def _battery(data: bytes) -> int:
    try:
        return decode_battery_level(data)
    except CodecError:
        return 100


def truth(rec: Recording, start: float, end: float) -> list[TruthEvent]:
    """What the recording's own data say happened (see the module docstring)."""
    from sim.signals import Glucose

    out: list[TruthEvent] = []
    policy = AlertPolicy()
    h = rec.header
    for d in h.devices:
        th = _thresholds(h, d.wearer)
        mine = [e for e in rec.entries if e.device == d.id]
        notes = [e for e in mine if isinstance(e, Notification)]
        live = [e.t for e in notes]
        outages: list[tuple[float, float]] = []
        down: float | None = None
        for e in mine:
            if isinstance(e, LinkChange):
                if e.state != "connected" and down is None and any(x.t < e.t for x in notes):
                    down = e.t
                elif e.state == "connected" and down is not None:
                    outages.append((down, e.t))
                    down = None
        if down is not None:
            outages.append((down, end))
        limit = th.cgm_stale_s if d.kind == "cgm" else th.strap_stale_s
        out += silence_truth(d.wearer, d.address, np.array(sorted(live)), limit, start, end)
        out += outage_truth(d.wearer, d.address, outages, policy)
        levels = [(e.t, _battery(e.data)) for e in notes if e.characteristic == "2A19"]
        out += battery_truth(d.wearer, d.address, levels, th, end)
        if d.kind == "cgm":
            pts: dict[float, float] = {}
            for n in notes:
                if n.characteristic != "2AA7":
                    continue
                try:
                    records = decode_cgm_measurement(n.data)
                except CodecError:
                    continue
                for r in records:
                    t = n.t if n.session_start is None else min(n.t, n.session_start + 60.0 * r.time_offset_min)
                    pts[t] = r.glucose_mg_dl
            if pts:
                ts = np.array(sorted(pts))
                vs = np.array([pts[t] for t in ts])
                out += glucose_truth(d.wearer, Glucose(ts - start, vs, vs), th, start)
        else:
            hr: dict[int, float] = {}
            for n in notes:
                if n.characteristic != "2A37":
                    continue
                try:
                    m = decode_heart_rate_measurement(n.data)
                except CodecError:
                    continue
                ok = m.sensor_contact is not SensorContact.NOT_DETECTED
                hr[round(n.t - start)] = float(m.hr_bpm) if ok else math.nan
            if hr:
                seconds = np.arange(0.0, max(hr) + 1.0)
                values = np.array([hr.get(int(s), math.nan) for s in seconds])
                # A second with no notification (a late one, a lost one) takes the rate before it.
                for k in range(1, len(values)):
                    if math.isnan(values[k]) and int(seconds[k]) not in hr:
                        values[k] = values[k - 1]
                out += hr_truth(d.wearer, seconds, values, th, start)
    return out


def truth_kinds(kind: str, devices: dict[str, dict[str, str]]) -> list[str]:
    """The kinds whose truth a run knows: a recording has no rhythm labels."""
    from sim.truth import AF, TRUTH_KINDS

    roles = {r for d in devices.values() for r in d}
    kinds = [k for k in TRUTH_KINDS if k.startswith("sensor_")]
    if "cgm" in roles:
        kinds += [k for k in TRUTH_KINDS if k.startswith("glucose_")]
    if "strap" in roles:
        kinds += ["heart_tachycardia", "heart_bradycardia"]
        if kind == "scenario":
            kinds.append(AF)
    return kinds
