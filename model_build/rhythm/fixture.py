"""The committed test fixture ``tests/fixtures/rr``: small TRAIN excerpts in the three layouts.

    python -m model_build.rhythm.fixture --data ../shared/data      # rewrites tests/fixtures/rr/

Only TRAIN records are read (``split``). ``tests/fixtures`` is then a data root (``rr/<set>/``) with:

- ``rr/afdb/``: afdb layout, rows unchanged from ``afdb_rr.csv.gz`` for three TRAIN records, each one
  contiguous stretch (:data:`AFDB_STRETCHES`: sinus into a 408 s AF episode in 04908, sinus into AF in 04746,
  AF with atrial flutter in 06426), with their rows of ``afdb_rhythm_episodes.csv``;
- ``rr/nsr2db/``: nsr2db layout, 1,200 intervals of nsr001 and nsr002 unchanged, first beat tick adjusted;
- ``rr/shortrec/``: the cinc2017 layout (300 Hz samples, record labels), made from afdb TRAIN beats, not
  from cinc2017 (a TEST set): 30 s pieces of 07162 (AF throughout, label A) and 05091 (sinus, label N), a
  beat sample rounded to the 300 Hz clock; plus a labelled recording with no beats.

Attribution and licence: ``DATA_LICENSES.md``.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model_build.rhythm.cli import default_data_root
from model_build.rhythm.data import load_set
from model_build.rhythm.split import AFDB_TEST, NSR2DB_TRAIN

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "rr"
# record -> (start s, end s) of the stretch kept
AFDB_STRETCHES: dict[str, tuple[float, float]] = {
    "04908": (4600.0, 5450.0),
    "04746": (10000.0, 10900.0),
    "06426": (4300.0, 4800.0),
}
NSR_RECORDS = ("nsr001", "nsr002")
NSR_FIRST, NSR_COUNT = 20000, 1200
SHORT_AF, SHORT_N = ("07162", 3000.0), ("05091", 3000.0)
SHORT_EACH, SHORT_S, FS_SHORT = 6, 30.0, 300


def write_fixture(data_root: Path, out: Path) -> None:
    for name in AFDB_STRETCHES:
        assert name not in AFDB_TEST
    assert set(NSR_RECORDS) <= NSR2DB_TRAIN
    src = data_root / "rr"
    # afdb: rows verbatim
    with gzip.open(src / "afdb" / "afdb_rr.csv.gz", "rt", encoding="utf-8") as f:
        header, *rows = f.read().splitlines()
    kept = [header]
    for row in rows:
        record, sample = row.split(",")[:2]
        if record in AFDB_STRETCHES:
            lo, hi = AFDB_STRETCHES[record]
            if lo <= int(sample) / 250.0 <= hi:
                kept.append(row)
    (out / "afdb").mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out / "afdb" / "afdb_rr.csv.gz", "wb", mtime=0) as gz:
        gz.write(("\n".join(kept) + "\n").encode("utf-8"))
    episodes = (src / "afdb" / "afdb_rhythm_episodes.csv").read_text(encoding="utf-8").splitlines()
    ep_rows = [episodes[0]] + [
        line
        for line in episodes[1:]
        if line.split(",")[0] in AFDB_STRETCHES
        and AFDB_STRETCHES[line.split(",")[0]][0] - 3600
        <= float(line.split(",")[2])
        <= AFDB_STRETCHES[line.split(",")[0]][1]
    ]
    (out / "afdb" / "afdb_rhythm_episodes.csv").write_text("\n".join(ep_rows) + "\n", encoding="utf-8")

    # nsr2db: ticks verbatim, first beat moved to where the excerpt starts
    nsr = load_set(data_root, "nsr2db", keep=lambda r: r in NSR_RECORDS)
    (out / "nsr2db").mkdir(parents=True, exist_ok=True)
    lines, meta = ["record,rr_ticks_128hz"], ["record,first_beat_tick_128hz,n_rr,rr_hours"]
    for r in nsr.records:
        ticks = np.round(r.rr_s[NSR_FIRST : NSR_FIRST + NSR_COUNT] * 128).astype(int)
        first = round((r.t_s[NSR_FIRST] - r.rr_s[NSR_FIRST]) * 128)
        lines += [f"{r.record},{t}" for t in ticks]
        meta.append(f"{r.record},{first},{len(ticks)},{ticks.sum() / 128 / 3600:.3f}")
    (out / "nsr2db" / "nsr2db_rr.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "nsr2db" / "nsr2db_records.csv").write_text("\n".join(meta) + "\n", encoding="utf-8")

    # shortrec: cinc2017's layout from afdb TRAIN beats
    afdb = load_set(data_root, "afdb", keep=lambda r: r in (SHORT_AF[0], SHORT_N[0]))
    by_name = {r.record: r for r in afdb.records}
    lines, labels = ["record,beat_sample_300hz,rr_samples_300hz"], ["record,label"]
    k = 0
    for (name, start), label in ((SHORT_AF, "A"), (SHORT_N, "N")):
        r = by_name[name]
        for i in range(SHORT_EACH):
            lo = start + i * SHORT_S
            pick = (r.t_s - r.rr_s >= lo) & (r.t_s <= lo + SHORT_S)
            if r.rhythm is not None and label == "N" and np.any(r.rhythm[pick] != 0):
                continue
            k += 1
            rec = f"S{k:04d}"
            ends = np.round((r.t_s[pick] - lo) * FS_SHORT).astype(int)
            rrs = np.round(r.rr_s[pick] * FS_SHORT).astype(int)
            lines += [f"{rec},{e},{d}" for e, d in zip(ends.tolist(), rrs.tolist(), strict=True)]
            labels.append(f"{rec},{label}")
    labels.append(f"S{k + 1:04d},~")  # a recording with no detected beats
    (out / "shortrec").mkdir(parents=True, exist_ok=True)
    (out / "shortrec" / "shortrec_rr.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "shortrec" / "shortrec_labels.csv").write_text("\n".join(labels) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_build.rhythm.fixture", description=__doc__)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    write_fixture(args.data or default_data_root(), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
