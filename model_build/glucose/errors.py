"""The glucose builder's errors.

    GlucoseBuildError          root: the build or the evaluation cannot go on
    ├── DataError              a data folder or file is missing or malformed (``file``, ``line``, ``problem``)
    └── SplitError             a set is on the wrong side of the TRAIN/TEST split for what was asked

Third-party errors (``OSError``, gzip, csv) are wrapped at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations


class GlucoseBuildError(Exception):
    """Root of the glucose builder's errors."""


class DataError(GlucoseBuildError):
    """``file`` (a path) cannot be used; ``line`` is the 1-based line of the problem, 0 for the whole file."""

    def __init__(self, file: str, problem: str, *, line: int = 0) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {problem}")


class SplitError(GlucoseBuildError):
    """A TEST set was asked for where only TRAIN sets may be used (training, tuning), or the reverse."""

    def __init__(self, set_name: str, problem: str) -> None:
        self.set_name = set_name
        self.problem = problem
        super().__init__(f"{set_name}: {problem}")
