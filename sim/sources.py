"""Real recordings as scenario signals: RR intervals from ``rr/<set>`` and CGM traces from ``cgm/<set>``.

The data folder has the layout of ``../shared/data`` (see its README); a scenario reads it from ``--data``
(default: ``$VIGIL_DATA``, else ``../shared/data`` beside the checkout), or from the small excerpts committed
in ``sim/data`` in the same layout (``data = "bundled"``; see DATA_LICENSES.md).

RR sets, recognised by the RR file's header (the layouts ``model_build`` reads too):

* ``record,beat_sample,rr_ms,rhythm`` (afdb): beat times at ``beat_sample / fs`` with ``fs`` inferred from the
  rows (250 Hz for afdb); the per-beat rhythm label becomes the ground truth: ``AFIB`` is AF, ``AFL`` and
  ``J`` are neither AF nor sinus (an AF alert there is not false), anything else is sinus.
* ``record,rr_ticks_<F>hz`` (nsr2db): beat times from ``<prefix>_records.csv``'s ``first_beat_tick_<F>hz``
  plus the cumulative ticks; every beat is sinus (the set has no labels).

CGM sets: ``<set>_cgm.csv.gz`` with ``subject_id,timestamp,glucose_value_mg_dl`` (local time without a zone,
``YYYY-MM-DD HH:MM[:SS]``). ``Low``/``High`` become the sensor's below/above range (``-inf``/``+inf``). Reading
times are kept as they are, to the whole minute (a CGM record carries whole minutes), so the trace keeps its
real gaps; the sensor's value is the only truth a recording has.

A source is cut to ``[from_s, from_s + duration_s)`` and shifted to start at 0. Files are parsed once per
process per (file, record).
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import math
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sim.peripheral import SimError
from sim.signals import BeatLabel, Beats, Glucose

BUNDLED_DATA = Path(__file__).resolve().parent / "data"
_RHYTHM = {"AFIB": BeatLabel.AF, "AFL": BeatLabel.OTHER, "J": BeatLabel.OTHER}
_TICKS = re.compile(r"rr_ticks_(\d+)hz")


class DataError(SimError):
    """A recording could not be read: ``path`` names the file (or folder), ``problem`` says what is wrong."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def default_data_root() -> Path:
    """``$VIGIL_DATA``, else ``../shared/data`` beside the checkout this package runs from."""
    env = os.environ.get("VIGIL_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _open_text(path: Path) -> io.TextIOBase:
    if not path.exists():
        raise DataError(path, "no such file (is --data the folder with rr/ and cgm/?)")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8", newline="")


def _rows(path: Path, prefix: str) -> Iterator[list[str]]:
    """The CSV rows whose first field is ``prefix`` (cheaply skipping the others), after the header."""
    with _open_text(path) as f:
        next(f, None)
        started = False
        for line in f:
            if line.startswith(prefix + ","):
                started = True
                yield next(csv.reader([line]))
            elif started:
                return  # records are contiguous in these files


def _header(path: Path) -> list[str]:
    with _open_text(path) as f:
        return next(csv.reader([next(f, "")]))


def rr_file(root: Path, set_name: str) -> Path:
    folder = root / "rr" / set_name
    for candidate in (folder / f"{set_name}_rr.csv.gz", folder / f"{set_name}_rr.csv"):
        if candidate.exists():
            return candidate
    raise DataError(folder, f"no {set_name}_rr.csv.gz here (data root {root})")


@functools.lru_cache(maxsize=16)
def _record_beats(path: Path, record: str) -> Beats:
    header = _header(path)
    if header[:4] == ["record", "beat_sample", "rr_ms", "rhythm"]:
        samples, rr_ms, labels = [], [], []
        for row in _rows(path, record):
            samples.append(float(row[1]))
            rr_ms.append(float(row[2]))
            labels.append(_RHYTHM.get(row[3], BeatLabel.SINUS))
        if not samples:
            raise DataError(path, f"no record {record}")
        s = np.array(samples)
        rr = np.array(rr_ms) / 1000.0
        # The sample rate: the one that makes consecutive sample differences equal the RR intervals.
        ds = np.diff(s)
        fs = float(np.median(ds / rr[1:])) if len(ds) else 250.0
        return Beats(s / round(fs), rr, np.array(labels, dtype=np.uint8))
    m = _TICKS.fullmatch(header[1]) if len(header) >= 2 and header[0] == "record" else None
    if m:
        fs = float(m.group(1))
        ticks = np.array([float(row[1]) for row in _rows(path, record)])
        if not len(ticks):
            raise DataError(path, f"no record {record}")
        first = _first_beat_tick(path, record, m.group(1))
        t = (first + np.cumsum(ticks)) / fs
        return Beats(t, ticks / fs, np.zeros(len(t), dtype=np.uint8))
    raise DataError(path, f"unknown RR layout (header {header})")


def _first_beat_tick(path: Path, record: str, hz: str) -> float:
    records = path.parent / path.name.replace("_rr.csv.gz", "_records.csv").replace("_rr.csv", "_records.csv")
    if not records.exists():
        return 0.0
    with _open_text(records) as f:
        for row in csv.DictReader(f):
            if row.get("record") == record:
                return float(row[f"first_beat_tick_{hz}hz"])
    return 0.0


def rr_segment(root: Path, set_name: str, record: str, from_s: float, duration_s: float) -> Beats:
    """The beats of ``record`` ending in [from_s, from_s + duration_s), shifted to start at 0."""
    beats = _record_beats(rr_file(root, set_name), record)
    cut = beats.window(from_s, from_s + duration_s)
    if not len(cut):
        raise DataError(rr_file(root, set_name), f"record {record} has no beats from {from_s:g} s")
    if cut.end - from_s < duration_s - 60.0:
        raise DataError(
            rr_file(root, set_name),
            f"record {record} ends {(from_s + duration_s - cut.end) / 60:.0f} min before the scenario needs",
        )
    return cut.shifted(-from_s)


def cgm_file(root: Path, set_name: str) -> Path:
    folder = root / "cgm" / set_name
    for candidate in (folder / f"{set_name}_cgm.csv.gz", folder / f"{set_name}_cgm.csv"):
        if candidate.exists():
            return candidate
    raise DataError(folder, f"no {set_name}_cgm.csv.gz here (data root {root})")


def _parse_time(text: str) -> float:
    """Local wall time without a zone, read as if it were UTC: only differences matter here."""
    text = text.strip()
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(f"not a timestamp: {text!r}")


def _glucose_value(text: str) -> float:
    v = text.strip()
    if v.lower() == "low":
        return -math.inf
    if v.lower() == "high":
        return math.inf
    return float(v) if v else math.nan


@functools.lru_cache(maxsize=16)
def _subject_trace(path: Path, subject: str) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    times, values = [], []
    for row in _rows(path, subject):
        try:
            times.append(_parse_time(row[1]))
            values.append(_glucose_value(row[2]))
        except (ValueError, IndexError) as exc:
            raise DataError(path, f"subject {subject}: bad row {row}: {exc}") from exc
    if not times:
        raise DataError(path, f"no subject {subject!r}")
    order = np.argsort(times, kind="stable")
    return np.array(times)[order], np.array(values)[order]


def cgm_segment(root: Path, set_name: str, subject: str, start: str, duration_s: float) -> Glucose:
    """The readings of ``subject`` from the local time ``start`` for ``duration_s``, at 0.. on whole minutes
    from the first. Rows with no value are left out (a gap, as the sensor would show it)."""
    path = cgm_file(root, set_name)
    times, values = _subject_trace(path, subject)
    try:
        t0 = _parse_time(start)
    except ValueError as exc:
        raise DataError(path, f"from = {start!r}: {exc}") from exc
    keep = (times >= t0) & (times < t0 + duration_s) & ~np.isnan(values)
    t = np.floor((times[keep] - t0) / 60.0) * 60.0
    v = values[keep]
    if not len(t):
        raise DataError(path, f"subject {subject} has no readings from {start}")
    # Two readings in the same minute: keep the first.
    t, first = np.unique(t, return_index=True)
    v = v[first]
    return Glucose(t, v, v.copy())
