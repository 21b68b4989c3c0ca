"""The test fixture: short excerpts of two CC BY 4.0 TRAIN sets, rows copied verbatim, in the shared layout.

    python -m model_build.glucose.excerpt [--data DIR] [--out tests/fixtures]

writes ``OUT/cgm/azt1d/azt1d_cgm.csv.gz`` and ``OUT/cgm/t1d-uom/t1d-uom_cgm.csv.gz`` (the same header and
rows as the source files, for the subjects and local-time spans in :data:`EXCERPTS`), so the fixture loads
with the same code and splits the same way as the real sets. Attribution: ``DATA_LICENSES.md``. The spans
hold low glucose, so the hypoglycaemia path runs too. The files are written with gzip's mtime 0 so a rerun
gives the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from model_build.glucose.data import HEADER, cgm_file, default_data_root

# set -> [(subject_id, first timestamp, last timestamp)] (inclusive, compared as strings: same format)
EXCERPTS: dict[str, list[tuple[str, str, str]]] = {
    "azt1d": [
        ("Subject 1", "2023-12-16 00:00:00", "2023-12-18 23:59:59"),
        ("Subject 4", "2023-12-10 00:00:00", "2023-12-11 23:59:59"),
        ("Subject 2", "2023-12-21 00:00:00", "2023-12-23 23:59:59"),
    ],
    "t1d-uom": [
        ("UoMGlucose2301", "2023-11-01 00:00:00", "2023-11-03 23:59:59"),
        ("UoMGlucose2303", "2023-11-06 00:00:00", "2023-11-08 23:59:59"),
    ],
}


def excerpt_rows(path: Path, spans: Sequence[tuple[str, str, str]]) -> list[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    out: list[list[str]] = []
    for subject, first, last in spans:
        out.extend(r for r in rows[1:] if r[0] == subject and first <= r[1] <= last)
    return out


def write(out_root: Path, name: str, rows: list[list[str]]) -> Path:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    path = out_root / "cgm" / name / f"{name}_cgm.csv.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.getvalue().encode("utf-8"), mtime=0))
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_build.glucose.excerpt", description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="data root (default: $VIGIL_DATA or ../shared/data)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures")
    args = parser.parse_args(argv)
    root = args.data or default_data_root()
    for name, spans in EXCERPTS.items():
        rows = excerpt_rows(cgm_file(root, name), spans)
        print(f"{write(args.out, name, rows)}: {len(rows)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
