"""Wearer scenarios: the file format (TOML), its validation, and the bundled scenarios.

A scenario is one or more wearers over a stretch of time, each with a heart-rate strap and/or a CGM, the
signals those devices measure (real recordings, generators, or both spliced together), and faults. Every
scenario carries ground truth (:mod:`sim.truth`), so a replay's alerts can be scored (:mod:`sim.score`).
:mod:`sim.build` turns a :class:`Scenario` into virtual devices and the time-ordered feed of what they send.

The format (every key optional unless marked; times in minutes from the scenario's start, curves in hours)::

    [scenario]
    name = "demo"                          # required; a bundled scenario's name is its file's stem
    description = "..."
    start = "2026-01-15T22:00:00Z"         # ISO 8601 with a zone (default 2026-01-15T22:00:00Z)
    hours = 8.0                            # required: the length (at most 168)
    seed = 7                               # generators and faults are random only through this seed
    data = "shared"                        # where real sources are read: "shared" (--data, default) or
                                           # "bundled" (the excerpts in sim/data)

    [[wearer]]                             # one table per wearer (at least one)
    id = "w-ann"                           # required: a pseudonymous id (letters, digits, _ . -)
    thresholds = { glucose_low = 70 }      # the agent's per-wearer thresholds (agent.config.Thresholds)

    [wearer.strap]                         # a heart-rate strap (0x180D with RR intervals, battery)
    battery = 90                           # battery level at the start, percent
    [[wearer.strap.segments]]              # spliced in order; each lasts `minutes` (the last: to the end)
    minutes = 120
    source = "afdb"                        # real: a set under rr/ (afdb, nsr2db, or any in those layouts)
    record = "08378"
    from_s = 1080                          # where in the record the segment starts (s)
    [[wearer.strap.segments]]
    generator = "sinus"                    # generated sinus rhythm with HRV (sim.generators)
    bpm = [[0, 64], [3, 55], [6, 60]]      # the mean heart rate through (hour, bpm) anchors
    hrv = "rest"                           # rest | sleep | exercise, or a table {cv, lf_hf, resp_hz}
    ectopics_per_hour = 20                 # premature beats with compensatory pauses
    episodes = [                           # within this segment (at_min from the segment's start)
      { kind = "af", at_min = 30, minutes = 40, bpm = 105 },         # paroxysmal AF
      { kind = "exercise", at_min = 200, minutes = 30, bpm = 150 },  # HR up to bpm; context: exercise
      { kind = "sleep", at_min = 0, minutes = 180 },                 # sleep HRV (HF-dominated, larger)
    ]

    [wearer.cgm]                           # a CGM (0x181F with RACP backfill, battery)
    battery = 80
    source = "azt1d"                       # real: a set under cgm/, one subject from a local time
    subject = "Subject 5"
    from = "2024-01-23 23:04:00"
    # or: generator = "anchors", points = [[0, 150], [3, 60], [4, 110]], noise = 3
    # or: generator = "uva_padova", patient = "adult#001", warmup_h = 4, basal_factor = 1.0,
    #     meals = [[-180, 70, 1.8]]        # (at_min, grams, bolus factor): 1.8 = 80% too much insulin

    [[wearer.faults]]                      # any number, any order
    kind = "disconnect"                    # the device is out of range: link lost, not advertising
    device = "cgm"                         # strap | cgm
    at_min = 72
    minutes = 25
    # kind = "silent"        device, at_min, minutes: connected, sends nothing (a CGM does not measure)
    # kind = "corrupt"       device, at_min, count = 1, every_s = 1, mode = "truncate" | "crc" | "random"
    # kind = "battery"       device, to_pct, at_min = 0, minutes = to the end: drains from the level it has
    # kind = "contact_loss"  at_min, minutes: the strap loses skin contact (no RR, "not detected")
    # kind = "cgm_artifact"  at_min, minutes, mg_dl: the sensor reads mg_dl (a compression low); truth unchanged

Unknown keys are refused (a typo cannot pass silently); every error names the file, the key and the problem.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.config import Thresholds
from sim.peripheral import SimError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
DEFAULT_START = "2026-01-15T22:00:00Z"
MAX_HOURS = 168.0
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEVICES = ("strap", "cgm")
FAULT_KINDS = ("disconnect", "silent", "corrupt", "battery", "contact_loss", "cgm_artifact")
CORRUPT_MODES = ("truncate", "crc", "random")
EPISODE_KINDS = ("af", "exercise", "sleep")


class ScenarioError(SimError):
    """A scenario file is wrong: ``source`` (file or name), ``key`` (dotted, e.g. ``wearer[0].cgm.points``)
    and ``problem``."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class HrvSpec:
    cv: float
    lf_hf: float
    resp_hz: float


HRV_PRESETS: Mapping[str, HrvSpec] = {
    "rest": HrvSpec(0.05, 1.5, 0.25),
    "sleep": HrvSpec(0.07, 0.6, 0.22),
    "exercise": HrvSpec(0.015, 3.0, 0.45),
}


@dataclass(frozen=True)
class Episode:
    kind: str  # af | exercise | sleep
    at_min: float
    minutes: float
    bpm: float | None = None


@dataclass(frozen=True)
class HeartSegment:
    """A stretch of a strap's signal: a real recording (``source``) or a generator."""

    minutes: float | None  # None: to the end of the scenario
    source: str | None = None
    record: str | None = None
    from_s: float = 0.0
    generator: str | None = None
    bpm: tuple[tuple[float, float], ...] = ((0.0, 65.0),)
    hrv: HrvSpec = HRV_PRESETS["rest"]
    ectopics_per_hour: float = 0.0
    episodes: tuple[Episode, ...] = ()


@dataclass(frozen=True)
class StrapSpec:
    battery: int = 90
    segments: tuple[HeartSegment, ...] = ()


@dataclass(frozen=True)
class MealSpec:
    at_min: float
    grams: float
    bolus_factor: float = 1.0


@dataclass(frozen=True)
class CgmSpec:
    battery: int = 80
    source: str | None = None
    subject: str | None = None
    start: str | None = None  # the `from` key
    generator: str | None = None
    points: tuple[tuple[float, float], ...] = ()
    noise: float = 3.0
    patient: str = "adult#001"
    meals: tuple[MealSpec, ...] = ()
    basal_factor: float = 1.0
    warmup_h: float = 0.0
    sensor: str = "Dexcom"


@dataclass(frozen=True)
class Fault:
    kind: str
    device: str
    at_min: float = 0.0
    minutes: float | None = None
    count: int = 1
    every_s: float = 1.0
    mode: str = "truncate"
    to_pct: int | None = None
    mg_dl: float | None = None


@dataclass(frozen=True)
class WearerSpec:
    id: str
    strap: StrapSpec | None = None
    cgm: CgmSpec | None = None
    faults: tuple[Fault, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)


@dataclass(frozen=True)
class Scenario:
    name: str
    hours: float
    wearers: tuple[WearerSpec, ...]
    description: str = ""
    start: float = 0.0  # epoch seconds
    seed: int = 0
    data: str = "shared"  # shared | bundled
    source: str = ""  # the file it was read from

    @property
    def duration_s(self) -> float:
        return self.hours * 3600.0

    @property
    def end(self) -> float:
        return self.start + self.duration_s

    def cut(self, hours: float) -> Scenario:
        """The first ``hours`` of this scenario (faults and episodes after that simply do not happen)."""
        if not 0 < hours <= self.hours:
            raise ScenarioError(self.source or self.name, "hours", f"must be more than 0 and at most {self.hours:g}")
        return replace(self, hours=hours)

    @property
    def needs_data(self) -> bool:
        """Whether it reads real recordings from the shared data folder (``--data``)."""
        if self.data == "bundled":
            return False
        return any(
            (w.cgm is not None and w.cgm.source is not None)
            or (w.strap is not None and any(s.source is not None for s in w.strap.segments))
            for w in self.wearers
        )

    @property
    def needs_simglucose(self) -> bool:
        return any(w.cgm is not None and w.cgm.generator == "uva_padova" for w in self.wearers)


# -- bundled scenarios -----------------------------------------------------------------------------------------


def bundled() -> dict[str, Path]:
    """The scenarios shipped in ``sim/scenarios``, by name."""
    return {p.stem: p for p in sorted(SCENARIOS_DIR.glob("*.toml"))}


def load(name_or_path: str | Path) -> Scenario:
    """A bundled scenario by name, or a scenario file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.exists():
        found = bundled().get(str(name_or_path))
        if found is None:
            raise ScenarioError(
                str(name_or_path), "", f"no such file, nor a bundled scenario (bundled: {', '.join(bundled())})"
            )
        path = found
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise ScenarioError(str(path), "", f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(str(path), "", f"not valid TOML: {exc}") from exc
    return parse(doc, source=str(path))


# -- parsing ---------------------------------------------------------------------------------------------------


class _Reader:
    """Typed access to one table, remembering which keys were used so unknown ones can be refused."""

    def __init__(self, table: Any, key: str, source: str) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(source, key, "must be a table")
        self.table = table
        self.key = key
        self.source = source
        self.used: set[str] = set()

    def err(self, name: str, problem: str) -> ScenarioError:
        return ScenarioError(self.source, f"{self.key}.{name}" if self.key else name, problem)

    def get(self, name: str) -> Any:
        self.used.add(name)
        return self.table.get(name)

    def has(self, name: str) -> bool:
        return name in self.table

    def number(self, name: str, default: float | None = None, *, lo: float = -math.inf, hi: float = math.inf) -> float:
        v = self.get(name)
        if v is None:
            if default is None:
                raise self.err(name, "is required")
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.err(name, f"must be a number, got {v!r}")
        if not lo <= v <= hi:
            raise self.err(name, f"must be between {lo:g} and {hi:g}, got {v:g}")
        return float(v)

    def opt_number(self, name: str, *, lo: float = -math.inf, hi: float = math.inf) -> float | None:
        return self.number(name, lo=lo, hi=hi) if self.has(name) else self.get(name)

    def integer(self, name: str, default: int, *, lo: int, hi: int) -> int:
        v = self.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.err(name, f"must be a whole number from {lo} to {hi}, got {v!r}")
        return v

    def text(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> str:
        v = self.get(name)
        if v is None:
            if default is None:
                raise self.err(name, "is required")
            return default
        if not isinstance(v, str):
            raise self.err(name, f"must be a string, got {v!r}")
        if choices and v not in choices:
            raise self.err(name, f"must be one of {', '.join(choices)}; got {v!r}")
        return v

    def opt_text(self, name: str) -> str | None:
        v = self.get(name)
        if v is not None and not isinstance(v, str):
            raise self.err(name, f"must be a string, got {v!r}")
        return v

    def pairs(self, name: str) -> tuple[tuple[float, float], ...]:
        v = self.get(name)
        ok = (
            isinstance(v, list)
            and v
            and all(isinstance(p, list) and len(p) == 2 and all(_is_num(x) for x in p) for p in v)
        )
        if not ok:
            raise self.err(name, "must be a non-empty list of [hour, value] pairs")
        out = tuple((float(a), float(b)) for a, b in v)
        if any(b[0] <= a[0] for a, b in itertools.pairwise(out)):
            raise self.err(name, "hours must increase")
        return out

    def tables(self, name: str) -> list[Any]:
        v = self.get(name)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise self.err(name, "must be a list of tables")
        return v

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.err(unknown[0], f"unknown key (known here: {', '.join(sorted(self.used))})")


def _is_num(x: object) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float)) and math.isfinite(x)


def _parse_start(r: _Reader) -> float:
    text = r.text("start", DEFAULT_START)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise r.err("start", f"not an ISO 8601 time: {text!r}") from exc
    if dt.tzinfo is None:
        raise r.err("start", "needs a zone (e.g. Z or +01:00)")
    return dt.timestamp()


def parse(doc: Mapping[str, Any], *, source: str = "<scenario>") -> Scenario:
    """A scenario from a parsed TOML document. Raises :class:`ScenarioError`."""
    top = _Reader(dict(doc), "", source)
    s = _Reader(top.get("scenario") or {}, "scenario", source)
    name = s.text("name")
    if not _ID.match(name):
        raise s.err("name", f"must be letters, digits, _ . - (up to 64), got {name!r}")
    hours = s.number("hours", lo=1 / 60, hi=MAX_HOURS)
    start = _parse_start(s)
    seed = s.integer("seed", 0, lo=0, hi=2**32 - 1)
    data = s.text("data", "shared", choices=("shared", "bundled"))
    description = s.text("description", "")
    s.done()
    wearer_tables = top.tables("wearer")
    top.done()
    if not wearer_tables:
        raise ScenarioError(source, "wearer", "at least one [[wearer]] is required")
    wearers = tuple(_wearer(t, f"wearer[{i}]", source) for i, t in enumerate(wearer_tables))
    ids = [w.id for w in wearers]
    if len(set(ids)) != len(ids):
        raise ScenarioError(source, "wearer", f"wearer ids must differ: {ids}")
    return Scenario(name, hours, wearers, description, start, seed, data, source)


def _wearer(table: Any, key: str, source: str) -> WearerSpec:
    r = _Reader(table, key, source)
    wid = r.text("id")
    if not _ID.match(wid):
        raise r.err("id", f"must be letters, digits, _ . - (up to 64), got {wid!r}")
    thresholds = _thresholds(r)
    strap = _strap(r.get("strap"), f"{key}.strap", source) if r.has("strap") else None
    cgm = _cgm(r.get("cgm"), f"{key}.cgm", source) if r.has("cgm") else None
    if strap is None and cgm is None:
        raise r.err("strap", "a wearer needs a strap, a cgm or both")
    faults = tuple(_fault(t, f"{key}.faults[{i}]", source) for i, t in enumerate(r.tables("faults")))
    for i, f in enumerate(faults):
        if (f.device == "strap" and strap is None) or (f.device == "cgm" and cgm is None):
            raise ScenarioError(source, f"{key}.faults[{i}].device", f"the wearer has no {f.device}")
    r.done()
    return WearerSpec(wid, strap, cgm, faults, thresholds)


def _thresholds(r: _Reader) -> Thresholds:
    given = r.get("thresholds")
    if given is None:
        return Thresholds()
    t = _Reader(given, f"{r.key}.thresholds", r.source)
    defaults = Thresholds()
    values = {f.name: t.number(f.name, getattr(defaults, f.name), lo=0.0) for f in fields(Thresholds) if t.has(f.name)}
    t.done()
    return Thresholds(**values)


def _strap(table: Any, key: str, source: str) -> StrapSpec:
    r = _Reader(table, key, source)
    battery = r.integer("battery", 90, lo=0, hi=100)
    segments = tuple(_segment(t, f"{key}.segments[{i}]", source) for i, t in enumerate(r.tables("segments")))
    if not segments:
        raise r.err("segments", "a strap needs at least one segment")
    if any(s.minutes is None for s in segments[:-1]):
        raise r.err("segments", "every segment but the last needs `minutes`")
    r.done()
    return StrapSpec(battery, segments)


def _segment(table: Any, key: str, source: str) -> HeartSegment:
    r = _Reader(table, key, source)
    minutes = r.opt_number("minutes", lo=1 / 60)
    if r.has("source") == r.has("generator"):
        raise r.err("source", "give either `source` (a recording) or `generator`")
    if r.has("source"):
        seg = HeartSegment(minutes, source=r.text("source"), record=r.text("record"), from_s=r.number("from_s", 0.0))
        r.done()
        return seg
    r.text("generator", choices=("sinus",))
    hrv_value = r.get("hrv")
    if hrv_value is None:
        hrv = HRV_PRESETS["rest"]
    elif isinstance(hrv_value, str):
        if hrv_value not in HRV_PRESETS:
            raise r.err("hrv", f"must be one of {', '.join(HRV_PRESETS)} or a table, got {hrv_value!r}")
        hrv = HRV_PRESETS[hrv_value]
    else:
        h = _Reader(hrv_value, f"{key}.hrv", source)
        hrv = HrvSpec(h.number("cv", lo=0, hi=0.5), h.number("lf_hf", 1.5, lo=0.01, hi=100),
                      h.number("resp_hz", 0.25, lo=0.05, hi=1.0))  # fmt: skip
        h.done()
    episodes = []
    for i, t in enumerate(r.tables("episodes")):
        e = _Reader(t, f"{key}.episodes[{i}]", source)
        kind = e.text("kind", choices=EPISODE_KINDS)
        ep = Episode(
            kind,
            e.number("at_min", lo=0),
            e.number("minutes", lo=1 / 60),
            e.number("bpm", lo=20, hi=240) if kind != "sleep" else e.opt_number("bpm", lo=20, hi=240),
        )
        e.done()
        episodes.append(ep)
    seg = HeartSegment(
        minutes,
        generator="sinus",
        bpm=r.pairs("bpm") if r.has("bpm") else ((0.0, 65.0),),
        hrv=hrv,
        ectopics_per_hour=r.number("ectopics_per_hour", 0.0, lo=0, hi=3600),
        episodes=tuple(episodes),
    )
    r.done()
    return seg


def _cgm(table: Any, key: str, source: str) -> CgmSpec:
    r = _Reader(table, key, source)
    battery = r.integer("battery", 80, lo=0, hi=100)
    if r.has("source") == r.has("generator"):
        raise r.err("source", "give either `source` (a recording) or `generator`")
    if r.has("source"):
        spec = CgmSpec(battery, source=r.text("source"), subject=r.text("subject"), start=r.text("from"))
        r.done()
        return spec
    gen = r.text("generator", choices=("anchors", "uva_padova"))
    if gen == "anchors":
        spec = CgmSpec(battery, generator=gen, points=r.pairs("points"), noise=r.number("noise", 3.0, lo=0, hi=50))
        r.done()
        return spec
    meals = []
    raw = r.get("meals") or []
    if not isinstance(raw, list):
        raise r.err("meals", "must be a list of [at_min, grams] or [at_min, grams, bolus_factor]")
    for m in raw:
        if not (isinstance(m, list) and len(m) in (2, 3) and all(_is_num(x) for x in m)):
            raise r.err("meals", f"each meal is [at_min, grams] or [at_min, grams, bolus_factor], got {m!r}")
        meals.append(MealSpec(float(m[0]), float(m[1]), float(m[2]) if len(m) == 3 else 1.0))
    spec = CgmSpec(
        battery,
        generator=gen,
        patient=r.text("patient", "adult#001"),
        meals=tuple(meals),
        basal_factor=r.number("basal_factor", 1.0, lo=0, hi=5),
        warmup_h=r.number("warmup_h", 0.0, lo=0, hi=48),
        sensor=r.text("sensor", "Dexcom"),
    )
    if any(m.at_min < -spec.warmup_h * 60 for m in meals):
        raise r.err("meals", "a meal before the warm-up starts (at_min < -60 * warmup_h)")
    r.done()
    return spec


def _fault(table: Any, key: str, source: str) -> Fault:
    r = _Reader(table, key, source)
    kind = r.text("kind", choices=FAULT_KINDS)
    default_device = {"contact_loss": "strap", "cgm_artifact": "cgm"}.get(kind)
    device = r.text("device", default_device, choices=DEVICES)
    if default_device and device != default_device:
        raise r.err("device", f"a {kind} fault is on the {default_device}")
    at_min = r.number("at_min", 0.0, lo=0)
    if kind in ("disconnect", "silent", "contact_loss", "cgm_artifact"):
        fault = Fault(kind, device, at_min, r.number("minutes", lo=1 / 60))
        if kind == "cgm_artifact":
            fault = replace(fault, mg_dl=r.number("mg_dl", lo=40, hi=400))
    elif kind == "corrupt":
        fault = Fault(
            kind, device, at_min, count=r.integer("count", 1, lo=1, hi=100_000),
            every_s=r.number("every_s", 1.0, lo=0.001), mode=r.text("mode", "truncate", choices=CORRUPT_MODES),
        )  # fmt: skip
    else:  # battery
        fault = Fault(kind, device, at_min, r.opt_number("minutes", lo=1 / 60),
                      to_pct=r.integer("to_pct", 0, lo=0, hi=100))  # fmt: skip
        if not r.has("to_pct"):
            raise r.err("to_pct", "is required")
    r.done()
    return fault
