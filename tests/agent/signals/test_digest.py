"""The window hash: its byte format is fixed, and it depends on the values only."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.signals.digest import readonly_copy, window_sha256

# Golden: sha256 over the 16 bytes of 1.0 and 2.0 as little-endian IEEE-754 doubles. Changing the format would
# break every hash that alerts already carry.
GOLDEN_1_2 = "dc91ce9a50ddc828740aa26743716897fdb2bb64f1db662fe263a59be56145ae"


def test_format_is_little_endian_float64() -> None:
    assert hashlib.sha256(struct.pack("<2d", 1.0, 2.0)).hexdigest() == GOLDEN_1_2
    assert window_sha256([1.0, 2.0]) == GOLDEN_1_2
    assert window_sha256(np.array([[1.0, 2.0]])) == GOLDEN_1_2  # shape is not part of it


def test_negative_zero_and_nan_payloads_are_normalised() -> None:
    assert window_sha256([-0.0, 1.0]) == window_sha256([0.0, 1.0])
    odd_nan = np.array([1.0, 0.0]).view(np.uint64)
    odd_nan[1] = 0x7FF8_0000_0000_0001  # a NaN with a payload
    assert window_sha256(odd_nan.view(np.float64)) == window_sha256([1.0, float("nan")])


finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=200)
@given(st.lists(finite, min_size=0, max_size=64))
def test_hash_is_stable_across_calls_and_dtype_equal_inputs(values: list[float]) -> None:
    native = np.array(values, dtype=np.float64)
    first = window_sha256(native)
    assert window_sha256(native) == first
    assert window_sha256(values) == first
    assert window_sha256(native.astype(">f8")) == first
    assert window_sha256(native.astype(np.float32)) == first  # the values fit float32 exactly
    assert window_sha256(native[::-1].copy()[::-1]) == first  # a non-contiguous view of the same values
    assert (
        window_sha256(native) == hashlib.sha256(struct.pack(f"<{len(values)}d", *(v + 0.0 for v in values))).hexdigest()
    )


@settings(max_examples=200)
@given(st.lists(finite, min_size=1, max_size=32), st.data())
def test_different_values_hash_differently(values: list[float], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(values) - 1))
    changed = list(values)
    changed[i] = float(np.nextafter(values[i] + 0.0, np.inf))
    assert window_sha256(changed) != window_sha256(values)


def test_windows_hand_out_read_only_arrays() -> None:
    source = np.array([1.0, 2.0])
    frozen = readonly_copy(source)
    source[0] = 5.0
    assert frozen[0] == 1.0
    assert not frozen.flags.writeable
