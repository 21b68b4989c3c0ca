"""Loading RR-interval sets by record, in any of the three layouts of ``../shared/data/rr``.

A set is a folder ``rr/<name>/`` holding one ``<prefix>_rr.csv.gz`` (or ``.csv``) and its companion files with
the same prefix. The layout is recognised from the RR file's header, not from the set's name, so any set in
one of these layouts loads:

=============  ===========================================================  ======================================
layout         RR file columns                                              companions
=============  ===========================================================  ======================================
beat_labels    ``record,beat_sample,rr_ms,rhythm`` (afdb)                    ``<prefix>_rhythm_episodes.csv``
               (sample rate inferred from ``beat_sample`` and ``rr_ms``)   (``record,sample,time_s,rhythm``),
                                                                            optional
ticks          ``record,rr_ticks_<F>hz`` (nsr2db)                           ``<prefix>_records.csv``
                                                                            (``record,first_beat_tick_<F>hz,...``),
                                                                            optional: without it, the first beat
                                                                            is at 0 s
record_labels  ``record,beat_sample_<F>hz,rr_samples_<F>hz`` (cinc2017)     ``<prefix>_labels.csv``
                                                                            (``record,label``), optional
=============  ===========================================================  ======================================

Every beat comes out as the time its interval ended (``t_s``, seconds from the record's start) and the
interval (``rr_s``, seconds), in file order. Per-beat rhythm labels (``beat_labels``) become :class:`Rhythm`
codes; a record-level label (``record_labels``) is kept as the string the set uses (cinc2017: ``N``, ``A``,
``O``, ``~``). A record listed in a labels file with no RR rows is kept with no beats, so an evaluation can
count it as one it could not classify rather than lose it.

Each file read is identified by its path relative to the data root and its sha256 (:class:`DataFile`); the
model card lists them. Anything malformed raises :class:`~model_build.rhythm.errors.DataError` naming the
file and, where there is one, the line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model_build.rhythm.errors import DataError

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.uint8]

LAYOUT_BEAT_LABELS = "beat_labels"
LAYOUT_TICKS = "ticks"
LAYOUT_RECORD_LABELS = "record_labels"


class Rhythm(IntEnum):
    """A beat's rhythm label, as afdb's reference annotations give it (``N`` covers every other rhythm)."""

    N = 0
    AFIB = 1
    AFL = 2
    J = 3


RHYTHM_BY_NAME: dict[str, Rhythm] = {r.name: r for r in Rhythm}


@dataclass(frozen=True)
class DataFile:
    """One file read: its path relative to the data root (POSIX), sha256 and size in bytes."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Episode:
    """A stretch of one rhythm in a record's reference annotations, ``start_s`` to ``end_s``."""

    rhythm: Rhythm
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True, eq=False)
class RRRecord:
    """One record's beats. ``rhythm`` (per beat) or ``label`` (whole record) is ``None`` where the set has none."""

    set: str
    record: str
    t_s: FloatArray
    rr_s: FloatArray
    rhythm: CodeArray | None = None
    label: str | None = None
    episodes: tuple[Episode, ...] = ()

    def __len__(self) -> int:
        return int(self.rr_s.shape[0])

    @property
    def hours(self) -> float:
        """Hours covered by the record's intervals (their sum)."""
        return float(np.sum(self.rr_s)) / 3600.0


@dataclass(frozen=True)
class RRSet:
    """A loaded set: its records in file order, the layout, the files read."""

    name: str
    layout: str
    records: tuple[RRRecord, ...]
    files: tuple[DataFile, ...]

    def select(self, names: Iterable[str]) -> RRSet:
        """The same set restricted to ``names`` (in this set's order); every name must exist."""
        wanted = set(names)
        missing = sorted(wanted - {r.record for r in self.records})
        if missing:
            raise DataError(self.name, f"no record(s) {', '.join(missing)} in this set")
        return replace(self, records=tuple(r for r in self.records if r.record in wanted))

    def record_names(self) -> list[str]:
        return [r.record for r in self.records]


def data_root_set_dir(data_root: str | Path, name: str) -> Path:
    """``<data_root>/rr/<name>``."""
    return Path(data_root) / "rr" / name


def load_set(data_root: str | Path, name: str, *, keep: Callable[[str], bool] | None = None) -> RRSet:
    """Load the set ``<data_root>/rr/<name>`` (see the module docstring for the layouts).

    ``keep(record)`` picks records: the rows of the others are dropped as soon as the file is parsed, so a
    build that keeps TRAIN records never holds a TEST record's beats. The files' identities cover whole files.
    """
    root = Path(data_root)
    folder = data_root_set_dir(root, name)
    if not folder.is_dir():
        raise DataError(str(folder), "no such set folder (is --data / VIGIL_DATA the data root holding rr/?)")
    rr_files = sorted(p for p in folder.iterdir() if p.name.endswith(("_rr.csv.gz", "_rr.csv")))
    if len(rr_files) != 1:
        found = ", ".join(p.name for p in rr_files) or "none"
        raise DataError(str(folder), f"expected exactly one <prefix>_rr.csv[.gz] file, found {found}")
    rr_path = rr_files[0]
    prefix = rr_path.name[: rr_path.name.rindex("_rr.csv")]
    header, rows, raw = _read_table(rr_path)
    files = [_identity(root, rr_path, raw)]
    if keep is not None:
        names = np.unique(rows[:, 0])
        rows = rows[np.isin(rows[:, 0], [n for n in names.tolist() if keep(n)])]
    if header == ["record", "beat_sample", "rr_ms", "rhythm"]:
        records = _beat_labels(name, rr_path, rows, folder / f"{prefix}_rhythm_episodes.csv", root, files)
        layout = LAYOUT_BEAT_LABELS
    elif len(header) == 2 and header[0] == "record" and (fs := _rate(header[1], "rr_ticks")) is not None:
        records = _ticks(name, rr_path, rows, fs, folder / f"{prefix}_records.csv", root, files)
        layout = LAYOUT_TICKS
    elif (
        len(header) == 3
        and header[0] == "record"
        and (fs := _rate(header[1], "beat_sample")) is not None
        and _rate(header[2], "rr_samples") == fs
    ):
        records = _record_labels(name, rr_path, rows, fs, folder / f"{prefix}_labels.csv", root, files, keep)
        layout = LAYOUT_RECORD_LABELS
    else:
        raise DataError(str(rr_path), f"unknown layout, header {','.join(header)} (see model_build.rhythm.data)")
    return RRSet(name=name, layout=layout, records=tuple(records), files=tuple(files))


# --- the three layouts ---------------------------------------------------------------------------------------


def _beat_labels(
    name: str, path: Path, rows: npt.NDArray[np.str_], episodes_path: Path, root: Path, files: list[DataFile]
) -> list[RRRecord]:
    sample = _ints(path, rows[:, 1], "beat_sample")
    rr_ms = _floats(path, rows[:, 2], "rr_ms")
    codes = _rhythm_codes(path, rows[:, 3])
    fs = _infer_rate(path, rows[:, 0], sample, rr_ms)
    table = _episode_table(episodes_path, root, files) if episodes_path.is_file() else {}
    out = []
    for record, idx in _groups(rows[:, 0]):
        t = sample[idx] / fs
        rr = rr_ms[idx] / 1000.0
        rhythm = codes[idx]
        if record in table:
            episodes = _episodes_from_table(table[record], fs, float(t[-1]))
        else:
            episodes = _episodes_from_beats(t, rr, rhythm)
        out.append(RRRecord(name, record, t, rr, rhythm=rhythm, episodes=episodes))
    return out


def _ticks(
    name: str,
    path: Path,
    rows: npt.NDArray[np.str_],
    fs: int,
    records_path: Path,
    root: Path,
    files: list[DataFile],
) -> list[RRRecord]:
    ticks = _ints(path, rows[:, 1], f"rr_ticks_{fs}hz")
    first: dict[str, int] = {}
    if records_path.is_file():
        header, meta, raw = _read_table(records_path)
        files.append(_identity(root, records_path, raw))
        column = f"first_beat_tick_{fs}hz"
        if len(header) < 2 or header[0] != "record" or header[1] != column:
            raise DataError(str(records_path), f"expected columns record,{column},..., got {','.join(header)}")
        first = dict(zip(meta[:, 0].tolist(), _ints(records_path, meta[:, 1], column).tolist(), strict=True))
    out = []
    for record, idx in _groups(rows[:, 0]):
        rr_ticks = ticks[idx]
        t = (first.get(record, 0) + np.cumsum(rr_ticks)) / fs
        out.append(RRRecord(name, record, t.astype(np.float64), rr_ticks / fs))
    return out


def _record_labels(
    name: str,
    path: Path,
    rows: npt.NDArray[np.str_],
    fs: int,
    labels_path: Path,
    root: Path,
    files: list[DataFile],
    keep: Callable[[str], bool] | None,
) -> list[RRRecord]:
    sample = _ints(path, rows[:, 1], f"beat_sample_{fs}hz")
    rr_samples = _ints(path, rows[:, 2], f"rr_samples_{fs}hz")
    labels: dict[str, str] = {}
    order: list[str] = []
    if labels_path.is_file():
        header, table, raw = _read_table(labels_path)
        files.append(_identity(root, labels_path, raw))
        if header != ["record", "label"]:
            raise DataError(str(labels_path), f"expected columns record,label, got {','.join(header)}")
        if keep is not None:
            table = table[np.array([keep(r) for r in table[:, 0].tolist()], dtype=bool)]
        order = table[:, 0].tolist()
        labels = dict(zip(order, table[:, 1].tolist(), strict=True))
    by_record = dict(_groups(rows[:, 0]))
    names = order + [r for r in by_record if r not in labels]
    out = []
    for record in names:
        idx = by_record.get(record, np.zeros(0, dtype=np.int64))
        out.append(RRRecord(name, record, sample[idx] / fs, rr_samples[idx] / fs, label=labels.get(record)))
    return out


# --- helpers -------------------------------------------------------------------------------------------------

_RATE = re.compile(r"(?P<what>[a-z_]+)_(?P<fs>[0-9]+)hz")


def _rate(column: str, what: str) -> int | None:
    m = _RATE.fullmatch(column)
    if m is None or m["what"] != what or int(m["fs"]) <= 0:
        return None
    return int(m["fs"])


def _read_table(path: Path) -> tuple[list[str], npt.NDArray[np.str_], bytes]:
    """(header, rows as strings (n, columns), the file's raw bytes)."""
    try:
        raw = path.read_bytes()
        text = (gzip.decompress(raw) if path.name.endswith(".gz") else raw).decode("utf-8")
    except OSError as exc:
        raise DataError(str(path), f"cannot read: {exc}") from exc
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise DataError(str(path), f"not a readable (gzip) UTF-8 CSV file: {exc}") from exc
    header_line, _, body = text.partition("\n")
    header = [h.strip() for h in header_line.strip().split(",")]
    if not body.strip():
        raise DataError(str(path), "no data rows")
    try:
        rows = np.loadtxt(io.StringIO(body), delimiter=",", dtype=str, ndmin=2, comments=None)
    except ValueError as exc:
        raise DataError(str(path), f"malformed CSV: {exc}") from exc
    if rows.shape[1] != len(header):
        raise DataError(str(path), f"{rows.shape[1]} columns in the rows, {len(header)} in the header")
    return header, rows, raw


def _identity(root: Path, path: Path, raw: bytes) -> DataFile:
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        rel = path.as_posix()
    return DataFile(path=rel, sha256=hashlib.sha256(raw).hexdigest(), size=len(raw))


def _bad_row(path: Path, column: str, values: npt.NDArray[np.str_], ok: npt.NDArray[np.bool_]) -> DataError:
    line = int(np.argmin(ok))
    return DataError(str(path), f"line {line + 2}: {column} = {values[line]!r} is not a valid value")


def _ints(path: Path, values: npt.NDArray[np.str_], column: str) -> npt.NDArray[np.int64]:
    try:
        return values.astype(np.int64)
    except ValueError:
        ok = np.array([v.strip().lstrip("-").isdigit() for v in values])
        raise _bad_row(path, column, values, ok) from None


def _floats(path: Path, values: npt.NDArray[np.str_], column: str) -> FloatArray:
    try:
        out = values.astype(np.float64)
    except ValueError:
        ok = np.array([_is_float(v) for v in values])
        raise _bad_row(path, column, values, ok) from None
    if not np.all(np.isfinite(out)):
        raise _bad_row(path, column, values, np.isfinite(out))
    return out


def _is_float(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _rhythm_codes(path: Path, values: npt.NDArray[np.str_]) -> CodeArray:
    names, inverse = np.unique(values, return_inverse=True)
    unknown = [n for n in names.tolist() if n not in RHYTHM_BY_NAME]
    if unknown:
        ok = ~np.isin(values, unknown)
        raise DataError(
            str(path),
            f"line {int(np.argmin(ok)) + 2}: rhythm {unknown[0]!r} is not one of {', '.join(RHYTHM_BY_NAME)}",
        )
    lookup = np.array([RHYTHM_BY_NAME[n] for n in names.tolist()], dtype=np.uint8)
    codes: CodeArray = lookup[inverse.reshape(-1)]
    return codes


def _groups(records: npt.NDArray[np.str_]) -> list[tuple[str, npt.NDArray[np.int64]]]:
    """(record, row indices in file order) for each record, records in order of first appearance."""
    names, first, inverse = np.unique(records, return_index=True, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    bounds = np.cumsum(np.bincount(inverse.reshape(-1), minlength=names.size))[:-1]
    chunks = np.split(order, bounds)
    by_appearance = np.argsort(first, kind="stable")
    return [(str(names[i]), chunks[i].astype(np.int64)) for i in by_appearance]


def _infer_rate(path: Path, records: npt.NDArray[np.str_], sample: npt.NDArray[np.int64], rr_ms: FloatArray) -> int:
    """The sample rate behind ``beat_sample``: successive beat samples of a record differ by rr_ms * fs / 1000."""
    same = records[1:] == records[:-1]
    step = np.diff(sample)[same].astype(np.float64)
    ms = rr_ms[1:][same]
    usable = ms > 0
    if not np.any(usable):
        raise DataError(str(path), "cannot infer the sample rate: no two successive beats of a record")
    fs = round(float(np.median(1000.0 * step[usable] / ms[usable])))
    if fs <= 0:
        raise DataError(str(path), f"inferred sample rate {fs} Hz is not positive")
    mismatch = np.abs(step[usable] - ms[usable] * fs / 1000.0) > 1.0
    if np.mean(mismatch) > 0.01:
        raise DataError(str(path), f"beat_sample and rr_ms disagree on {np.mean(mismatch):.1%} of beats at {fs} Hz")
    return fs


def _episode_table(path: Path, root: Path, files: list[DataFile]) -> dict[str, list[tuple[int, Rhythm]]]:
    header, rows, raw = _read_table(path)
    files.append(_identity(root, path, raw))
    if header[:2] != ["record", "sample"] or "rhythm" not in header:
        raise DataError(str(path), f"expected columns record,sample,...,rhythm, got {','.join(header)}")
    sample = _ints(path, rows[:, 1], "sample")
    codes = _rhythm_codes(path, rows[:, header.index("rhythm")])
    table: dict[str, list[tuple[int, Rhythm]]] = {}
    for record, idx in _groups(rows[:, 0]):
        changes = sorted(zip(sample[idx].tolist(), codes[idx].tolist(), strict=True))
        table[record] = [(s, Rhythm(c)) for s, c in changes]
    return table


def _episodes_from_table(changes: Sequence[tuple[int, Rhythm]], fs: int, end_s: float) -> tuple[Episode, ...]:
    out = []
    for i, (sample, rhythm) in enumerate(changes):
        start = sample / fs
        stop = changes[i + 1][0] / fs if i + 1 < len(changes) else end_s
        if stop > start:
            out.append(Episode(rhythm, start, stop))
    return tuple(out)


def _episodes_from_beats(t: FloatArray, rr: FloatArray, rhythm: CodeArray) -> tuple[Episode, ...]:
    if rhythm.size == 0:
        return ()
    change = np.flatnonzero(np.diff(rhythm.astype(np.int16)) != 0) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [rhythm.size]])
    return tuple(
        Episode(Rhythm(int(rhythm[s])), float(t[s] - rr[s]), float(t[e - 1])) for s, e in zip(starts, ends, strict=True)
    )
