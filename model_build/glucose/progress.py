"""Progress bars on stderr: tqdm when installed (the build extra), otherwise nothing."""

from __future__ import annotations

import sys
from typing import Any


class _Silent:
    def update(self, n: int = 1) -> None:
        del n

    def set_postfix(self, **kwargs: Any) -> None:
        del kwargs

    def close(self) -> None:
        pass


def bar(total: int, desc: str, *, enabled: bool = True) -> Any:
    """A bar with ``update``, ``set_postfix`` and ``close``."""
    if not enabled:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
