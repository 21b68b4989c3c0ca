"""The rhythm builder's one root error.

    RhythmBuildError      anything the rhythm builder refuses or cannot do, on purpose
    └── DataError         a data set, file, column or value that cannot be used; ``file`` names it

Third-party errors (``OSError``, ``ValueError`` from numpy's parser, the converter's ``QuantizeError``) are
wrapped at the boundary with ``raise ... from exc``. Tests match these by type and attributes.
"""

from __future__ import annotations


class RhythmBuildError(Exception):
    """Root of the rhythm builder's errors; ``problem`` says what is wrong, in words."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


class DataError(RhythmBuildError):
    """``file`` (a path, or a set folder) cannot be used: ``problem`` says why."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        super().__init__(f"{file}: {problem}")
        self.problem = problem
