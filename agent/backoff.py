"""Reconnect delays: a pure, capped exponential backoff with downward jitter.

The formula, for ``attempt`` = 0, 1, 2, ...::

    ceiling = min(cap, base * factor ** attempt)
    delay   = ceiling * (1 - jitter * rand())          rand() in [0, 1)

so ``delay`` lies in ``(ceiling * (1 - jitter), ceiling]``. The jitter only ever shortens a delay: the cap
is a promise (a lost sensor is tried again at least every ``cap`` seconds), and links that failed together,
say when the adapter was reset, spread out instead of retrying in lock-step. Before the cap the sequence of
ceilings is strictly increasing (``factor > 1``); with ``factor * (1 - jitter) > 1`` even the jittered delays
are (the defaults give 1.8).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def backoff(
    attempt: int,
    *,
    base: float = 1.0,
    factor: float = 2.0,
    cap: float = 60.0,
    jitter: float = 0.1,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry). See the module docstring."""
    if attempt < 0:
        raise ValueError(f"backoff: attempt must be >= 0, got {attempt}")
    if not (math.isfinite(base) and base >= 0):
        raise ValueError(f"backoff: base must be a finite number >= 0, got {base}")
    if not (math.isfinite(factor) and factor >= 1):
        raise ValueError(f"backoff: factor must be a finite number >= 1, got {factor}")
    if not (math.isfinite(cap) and cap >= 0):
        raise ValueError(f"backoff: cap must be a finite number >= 0, got {cap}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"backoff: jitter must be between 0 and 1, got {jitter}")
    try:
        ceiling = min(cap, base * factor**attempt)
    except OverflowError:  # a sensor that has been gone for a long time: attempt in the thousands
        ceiling = min(cap, math.inf if base > 0 else 0.0)
    r = rand()
    if not 0 <= r < 1:
        raise ValueError(f"backoff: rand() must return a number in [0, 1), got {r}")
    return ceiling * (1 - jitter * r)
