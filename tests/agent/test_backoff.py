"""agent.backoff: the reconnect delay formula."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backoff import backoff

rands = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def test_attempt_zero_is_base_without_jitter() -> None:
    assert backoff(0, base=1.5, jitter=0.0) == 1.5
    assert backoff(0, base=1.5, jitter=0.1, rand=lambda: 0.0) == 1.5


def test_exact_values_with_fixed_rand() -> None:
    delays = [backoff(n, base=1.0, factor=2.0, cap=60.0, jitter=0.1, rand=lambda: 0.5) for n in range(8)]
    assert delays == pytest.approx([0.95, 1.9, 3.8, 7.6, 15.2, 30.4, 57.0, 57.0])


@given(rands)
def test_monotone_before_the_cap(r: float) -> None:
    delays = [backoff(n, base=0.5, factor=2.0, cap=1e9, jitter=0.1, rand=lambda: r) for n in range(30)]
    assert all(a < b for a, b in itertools.pairwise(delays))


@given(st.integers(min_value=0, max_value=100_000), rands)
def test_never_above_the_cap(attempt: int, r: float) -> None:
    assert backoff(attempt, cap=60.0, rand=lambda: r) <= 60.0


def test_huge_attempts_do_not_overflow() -> None:
    assert backoff(10_000, cap=60.0, jitter=0.0) == 60.0
    assert backoff(10_000, base=0.0, cap=60.0, jitter=0.0) == 0.0


@given(st.integers(min_value=0, max_value=40), rands, st.floats(min_value=0.0, max_value=1.0))
def test_jitter_only_shortens_within_bounds(attempt: int, r: float, jitter: float) -> None:
    ceiling = min(60.0, 2.0**attempt)
    delay = backoff(attempt, jitter=jitter, rand=lambda: r)
    assert ceiling * (1 - jitter) <= delay <= ceiling


def test_default_rand_stays_in_bounds() -> None:
    for _ in range(200):
        assert 0.9 * 4.0 <= backoff(2) <= 4.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempt": -1},
        {"attempt": 0, "base": -1.0},
        {"attempt": 0, "factor": 0.5},
        {"attempt": 0, "cap": float("inf")},
        {"attempt": 0, "jitter": 1.5},
        {"attempt": 0, "rand": lambda: 1.0},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        backoff(**kwargs)  # type: ignore[arg-type]
