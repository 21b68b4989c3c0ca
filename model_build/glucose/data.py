"""CGM sets in the shared layout, loaded by subject and cleaned by stated rules.

Layout (``../shared/data/README.md``): ``<root>/cgm/<name>/<name>_cgm.csv.gz`` (or ``.csv``), a header
``subject_id,timestamp,glucose_value_mg_dl`` and one reading a row. Any folder in that layout loads, not only
the named sets; :func:`available_sets` lists them.

Cleaning rules, in order (counted per set in :class:`Cleaning`):

1. ``timestamp`` is ``YYYY-MM-DD HH:MM[:SS[.f]]`` (a ``T`` separator is accepted), local time without a
   zone, read as if it were UTC: only differences matter here. Anything else stops the load with a
   :class:`DataError` naming the file and line.
2. ``glucose_value_mg_dl`` is a number, blank (no value), or a device string: ``Low``/``LO`` (below the
   sensor's range) and ``High``/``HI`` (above it), any case. Device strings and blanks are not values: they
   become NaN, as the agent's quality gate treats a reading flagged "lower/higher than the device can process"
   (it never enters a model window), and the flags are kept beside the values (``below_range`` /
   ``above_range``) so the hypoglycaemia evaluation counts a ``Low`` as a low. Any other string stops the load.
3. Values outside 20-600 mg/dL are impossible for a CGM reading (sensors report 39/40-400 or 40-500 mg/dL;
   t1d-uom holds 1.8 mg/dL, a unit error) and become NaN, counted as ``impossible``.
4. Duplicated timestamps, readings in any order, and gaps are left to the agent's own code
   (``agent.signals.glucose.resample_glucose``): duplicates become their median, gaps up to 20 minutes are
   interpolated onto the 5-minute grid, longer ones stay gaps. So the builder and the device see the same grid.

Rows are grouped by ``subject_id`` (order of first appearance); the file's sha256 is the data's identity in
the model card.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.signals.glucose import GlucoseGrid, GlucoseGridding, GlucoseWindowing, GlucoseWindows, glucose_windows
from agent.signals.glucose import resample_glucose as _resample
from model_build.glucose.errors import DataError, SplitError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

TRAIN_SETS = ("azt1d", "hupa-ucm", "t1d-uom", "brist1d-open")
TEST_SETS = ("physiocgm", "d1namo", "hall2018")
HEADER = ("subject_id", "timestamp", "glucose_value_mg_dl")
DATA_ENV = "VIGIL_DATA"
MIN_MG_DL = 20.0
MAX_MG_DL = 600.0
LOW_STRINGS = frozenset({"low", "lo"})
HIGH_STRINGS = frozenset({"high", "hi"})
# Stand-ins for device strings where a number is needed (hypo truth, the agent's replay): just outside the
# Dexcom/Medtronic range. They never enter a model window.
LOW_STAND_IN = 39.0
HIGH_STAND_IN = 401.0

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
_HASH_CHUNK = 1 << 20


def default_data_root() -> Path:
    """``$VIGIL_DATA`` if set, else ``../shared/data`` beside the checkout (resolved from the repository root)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True)
class DataFile:
    """A file the build read: its path relative to the data root, its sha256 and size."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True, eq=False)
class Subject:
    """One person's readings, in file order: times (s), values (mg/dL, NaN where none) and range flags."""

    set_name: str
    subject_id: str
    t_s: FloatArray
    mg_dl: FloatArray
    below_range: BoolArray
    above_range: BoolArray

    @property
    def key(self) -> str:
        return f"{self.set_name}/{self.subject_id}"

    def grid(self, gridding: GlucoseGridding | None = None) -> GlucoseGrid:
        """The usable values on the 5-minute grid, by the agent's own rules."""
        return _resample(self.t_s, self.mg_dl, gridding)

    def truth_grid(self, gridding: GlucoseGridding | None = None) -> GlucoseGrid:
        """The grid with ``Low``/``High`` readings counted at their stand-ins: what hypoglycaemia truth uses."""
        v = np.where(self.below_range, LOW_STAND_IN, np.where(self.above_range, HIGH_STAND_IN, self.mg_dl))
        return _resample(self.t_s, v, gridding)

    def windows(self, windowing: GlucoseWindowing) -> GlucoseWindows:
        return glucose_windows(self.grid(windowing.gridding), windowing)


@dataclass(frozen=True)
class Cleaning:
    """What rule 2 and 3 did to one set."""

    rows: int
    blank: int
    below_range: int
    above_range: int
    impossible: int

    def to_json(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "blank": self.blank,
            "below_range": self.below_range,
            "above_range": self.above_range,
            "impossible": self.impossible,
        }


@dataclass(frozen=True, eq=False)
class CgmSet:
    name: str
    file: DataFile
    subjects: tuple[Subject, ...]
    cleaning: Cleaning

    @property
    def days(self) -> float:
        return float(sum(s.t_s.max() - s.t_s.min() for s in self.subjects if s.t_s.size) / 86400.0)


def cgm_file(root: Path, name: str) -> Path:
    """``<root>/cgm/<name>/<name>_cgm.csv.gz`` (or ``.csv``); :class:`DataError` naming what is missing."""
    folder = Path(root) / "cgm" / name
    for suffix in (".csv.gz", ".csv"):
        path = folder / f"{name}_cgm{suffix}"
        if path.is_file():
            return path
    if not (Path(root) / "cgm").is_dir():
        raise DataError(str(Path(root) / "cgm"), "no such folder: --data (or $VIGIL_DATA) must hold cgm/<set>/")
    if not folder.is_dir():
        found = ", ".join(available_sets(root)) or "none"
        raise DataError(str(folder), f"no such set folder (sets found: {found})")
    raise DataError(str(folder / f"{name}_cgm.csv.gz"), "missing (neither .csv.gz nor .csv)")


def available_sets(root: Path) -> list[str]:
    """Every folder under ``<root>/cgm`` holding its ``<name>_cgm.csv[.gz]``, sorted."""
    base = Path(root) / "cgm"
    if not base.is_dir():
        return []
    return sorted(
        p.name
        for p in base.iterdir()
        if p.is_dir() and any((p / f"{p.name}_cgm{s}").is_file() for s in (".csv.gz", ".csv"))
    )


def check_split(names: Iterable[str], *, allowed: Sequence[str], role: str) -> None:
    """Refuse a set that is not in ``allowed`` for ``role`` (training and tuning take TRAIN sets only)."""
    for name in names:
        if name not in allowed:
            raise SplitError(name, f"not a {role} set (those are: {', '.join(allowed)})")


def load_set(root: Path, name: str) -> CgmSet:
    """Read and clean one set; raise :class:`DataError` naming the file (and line) of any problem."""
    path = cgm_file(Path(root), name)
    shown = str(path)
    raw = _read_bytes(path)
    if path.suffix == ".gz":
        try:
            raw_text = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(shown, f"not a readable gzip file: {exc}") from exc
    else:
        raw_text = raw
    try:
        text = raw_text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(shown, f"not UTF-8 text: {exc}") from exc
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DataError(shown, "empty file", line=1)
    header = tuple(c.strip() for c in rows[0])
    if header != HEADER:
        raise DataError(shown, f"header is {','.join(header)!r}, expected {','.join(HEADER)!r}", line=1)
    body = rows[1:]
    for i, row in enumerate(body):
        if len(row) != 3:
            if not row:
                raise DataError(shown, "blank line", line=i + 2)
            raise DataError(shown, f"{len(row)} columns, expected 3", line=i + 2)
    if not body:
        raise DataError(shown, "no readings", line=2)
    subjects_col, times_col, values_col = (list(c) for c in zip(*body, strict=True))
    t_s = _parse_times(times_col, shown)
    mg_dl, below, above, blank = _parse_values(values_col, shown)
    impossible = np.isfinite(mg_dl) & ((mg_dl < MIN_MG_DL) | (mg_dl > MAX_MG_DL))
    mg_dl[impossible] = np.nan
    ids = np.asarray(subjects_col, dtype=object)
    subjects = []
    for sid in dict.fromkeys(subjects_col):
        if not sid.strip():
            raise DataError(shown, "empty subject_id", line=subjects_col.index(sid) + 2)
        rows_of = np.flatnonzero(ids == sid)
        subjects.append(
            Subject(
                set_name=name,
                subject_id=sid,
                t_s=t_s[rows_of],
                mg_dl=mg_dl[rows_of],
                below_range=below[rows_of],
                above_range=above[rows_of],
            )
        )
    cleaning = Cleaning(
        rows=len(body),
        blank=int(blank.sum()),
        below_range=int(below.sum()),
        above_range=int(above.sum()),
        impossible=int(impossible.sum()),
    )
    relative = f"cgm/{name}/{path.name}"
    return CgmSet(
        name=name,
        file=DataFile(relative, hashlib.sha256(raw).hexdigest(), len(raw)),
        subjects=tuple(subjects),
        cleaning=cleaning,
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc.strerror or exc}") from exc


def _parse_times(column: list[str], shown: str) -> FloatArray:
    for i, value in enumerate(column):
        if not _TIMESTAMP.fullmatch(value):
            raise DataError(shown, f"timestamp {value!r} is not YYYY-MM-DD HH:MM[:SS]", line=i + 2)
    try:
        stamps = np.asarray(column).astype("datetime64[ms]")
    except ValueError:
        for i, value in enumerate(column):  # find the line to name
            try:
                np.datetime64(value, "ms")
            except ValueError as exc:
                raise DataError(shown, f"timestamp {value!r}: {exc}", line=i + 2) from exc
        raise
    return stamps.astype(np.int64).astype(np.float64) / 1000.0


def _parse_values(column: list[str], shown: str) -> tuple[FloatArray, BoolArray, BoolArray, BoolArray]:
    n = len(column)
    values = np.full(n, np.nan)
    below = np.zeros(n, dtype=bool)
    above = np.zeros(n, dtype=bool)
    blank = np.zeros(n, dtype=bool)
    for i, raw in enumerate(column):
        try:
            v = float(raw)
        except ValueError:
            word = raw.strip().lower()
            if not word:
                blank[i] = True
            elif word in LOW_STRINGS:
                below[i] = True
            elif word in HIGH_STRINGS:
                above[i] = True
            else:
                raise DataError(shown, f"glucose value {raw!r} is neither a number nor Low/High", line=i + 2) from None
            continue
        if not math.isfinite(v):
            raise DataError(shown, f"glucose value {raw!r} is not finite", line=i + 2)
        values[i] = v
    return values, below, above, blank


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
