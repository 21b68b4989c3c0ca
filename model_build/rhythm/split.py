"""The AF task's data split (``../shared/data/README.md``), and what each set's labels mean.

TRAIN, for training and every choice (architecture, window, thresholds, the alert policy, early stopping),
validated by record inside it: ``rr/afdb`` without the six TEST records, ``rr/nsr2db`` nsr001-nsr044.

TEST, read only by ``vigil models evaluate rhythm`` to report figures:

- ``afdb-test``: afdb records 04043, 04936, 05121, 07910, 08215, 08434;
- ``nsr2db-test``: nsr2db nsr045-nsr054;
- ``cinc2017``: all of cinc2017, A (AF) against N (normal); O (other rhythm) and ~ (noisy) are left out of the
  sensitivity and specificity and reported as counts.

nsr2db has no per-beat labels: its subjects are in normal sinus rhythm throughout (its documentation), so every
beat is taken as ``N`` (:data:`ASSUME_RHYTHM`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from model_build.rhythm.data import Rhythm

AFDB_TEST = frozenset({"04043", "04936", "05121", "07910", "08215", "08434"})
NSR2DB_TEST = frozenset(f"nsr{i:03d}" for i in range(45, 55))
NSR2DB_TRAIN = frozenset(f"nsr{i:03d}" for i in range(1, 45))

# Sets without per-beat labels whose documentation says what rhythm every beat is in.
ASSUME_RHYTHM: dict[str, Rhythm] = {"nsr2db": Rhythm.N}


@dataclass(frozen=True)
class SetPart:
    """Records of one set folder, picked by ``keep``; ``name`` is how reports call the part."""

    name: str
    folder: str
    keep: Callable[[str], bool]


TRAIN_PARTS: tuple[SetPart, ...] = (
    SetPart("afdb-train", "afdb", lambda r: r not in AFDB_TEST),
    SetPart("nsr2db-train", "nsr2db", lambda r: r in NSR2DB_TRAIN),
)

TEST_PARTS: dict[str, SetPart] = {
    "afdb-test": SetPart("afdb-test", "afdb", lambda r: r in AFDB_TEST),
    "nsr2db-test": SetPart("nsr2db-test", "nsr2db", lambda r: r in NSR2DB_TEST),
    "cinc2017": SetPart("cinc2017", "cinc2017", lambda r: True),
}
DEFAULT_TEST_SETS: tuple[str, ...] = tuple(TEST_PARTS)


def evaluation_part(name: str) -> SetPart:
    """A named TEST part, or any other set folder under ``rr/`` evaluated whole (the layouts load any set).

    The TRAIN folders cannot be evaluated whole: that would report TRAIN records as if they were unseen.
    """
    if name in TEST_PARTS:
        return TEST_PARTS[name]
    if name in {p.folder for p in TRAIN_PARTS}:
        raise ValueError(f"{name} holds TRAIN records; evaluate its TEST part ({name}-test) instead")
    return SetPart(name, name, lambda r: True)
