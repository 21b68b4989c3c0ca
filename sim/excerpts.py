"""Cut the small real-data excerpts the bundled scenarios play (``sim/data``), from the shared data folder.

    python -m sim.excerpts [--data ../shared/data]

Each excerpt keeps the layout and the rows of its set unchanged, so the same readers read both (see
:mod:`sim.sources`); only rows inside the stretch a scenario plays (plus a minute either side) are kept. For
nsr2db, whose beat times are a cumulative sum from the record's first beat, the excerpt's
``nsr2db_records.csv`` gives the tick of the beat before the first kept row, so every kept beat keeps its time.
Attribution and licences: DATA_LICENSES.md. Only TRAIN records and subjects (../shared/data/README.md) are used,
and no CC BY-SA set.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sim.sources import BUNDLED_DATA, default_data_root


@dataclass(frozen=True)
class RrCut:
    set: str
    record: str
    from_s: float
    hours: float


@dataclass(frozen=True)
class CgmCut:
    set: str
    subject: str
    start: str
    hours: float


# What the bundled scenarios read (sim/scenarios/demo.toml).
RR_CUTS = (RrCut("afdb", "08378", 1080.0, 8.0), RrCut("nsr2db", "nsr013", 900.0, 8.0))
CGM_CUTS = (
    CgmCut("azt1d", "Subject 5", "2024-01-23 23:04:00", 8.0),
    CgmCut("azt1d", "Subject 23", "2024-02-10 22:01:00", 8.0),
)
MARGIN_S = 60.0


def _write_gz(path: Path, header: str, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0: the same rows give the same bytes.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write((header + "\n" + "".join(r + "\n" for r in rows)).encode())


def _lines(path: Path) -> tuple[str, list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = f.read().splitlines()
    return text[0], text[1:]


def cut_rr(root: Path, out: Path) -> None:
    by_set: dict[str, list[RrCut]] = {}
    for c in RR_CUTS:
        by_set.setdefault(c.set, []).append(c)
    for name, cuts in by_set.items():
        header, lines = _lines(root / "rr" / name / f"{name}_rr.csv.gz")
        kept: list[str] = []
        firsts: list[tuple[str, int]] = []
        for c in cuts:
            rows = [ln for ln in lines if ln.startswith(c.record + ",")]
            lo, hi = c.from_s - MARGIN_S, c.from_s + c.hours * 3600.0 + MARGIN_S
            if header.startswith("record,beat_sample,rr_ms"):
                kept += [r for r in rows if lo <= int(r.split(",")[1]) / 250.0 < hi]
                continue
            first = _first_tick(root / "rr" / name / f"{name}_records.csv", c.record)
            t = first
            start_tick = None
            for r in rows:
                ticks = int(r.split(",")[1])
                if lo * 128 <= t + ticks < hi * 128:
                    if start_tick is None:
                        start_tick = t
                    kept.append(r)
                t += ticks
            assert start_tick is not None
            firsts.append((c.record, start_tick))
        _write_gz(out / "rr" / name / f"{name}_rr.csv.gz", header, kept)
        if firsts:
            path = out / "rr" / name / f"{name}_records.csv"
            path.write_text(
                "record,first_beat_tick_128hz\n" + "".join(f"{r},{t}\n" for r, t in firsts), encoding="utf-8"
            )


def _first_tick(path: Path, record: str) -> int:
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["record"] == record:
                return int(row["first_beat_tick_128hz"])
    raise KeyError(record)


def cut_cgm(root: Path, out: Path) -> None:
    by_set: dict[str, list[CgmCut]] = {}
    for c in CGM_CUTS:
        by_set.setdefault(c.set, []).append(c)
    for name, cuts in by_set.items():
        header, lines = _lines(root / "cgm" / name / f"{name}_cgm.csv.gz")
        kept: list[str] = []
        for c in cuts:
            t0 = datetime.fromisoformat(c.start) - timedelta(seconds=MARGIN_S)
            t1 = datetime.fromisoformat(c.start) + timedelta(hours=c.hours, seconds=MARGIN_S)
            for ln in lines:
                row = next(csv.reader(io.StringIO(ln)))
                if row[0] == c.subject and t0 <= datetime.fromisoformat(row[1]) < t1:
                    kept.append(ln)
        _write_gz(out / "cgm" / name / f"{name}_cgm.csv.gz", header, kept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (default: ../shared/data)")
    parser.add_argument("--out", type=Path, default=BUNDLED_DATA)
    args = parser.parse_args()
    root = args.data or default_data_root()
    cut_rr(root, args.out)
    cut_cgm(root, args.out)
    for p in sorted(args.out.rglob("*.*")):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
