"""The window hash that model-driven alerts carry (DESIGN.md: "the input window's time span and hash").

``window_sha256(values)`` is the hex sha256 of the window's values as little-endian IEEE-754 float64
(``'<f8'``), C order, nothing else: no header, no times (the span travels beside the hash). Anyone holding the
readings can recompute it: clean or resample them with this package, take the window, and hash
``np.asarray(window, dtype='<f8').tobytes()``.

Two normalisations make the hash a function of the values, not of their representation: ``-0.0`` hashes as
``0.0``, and every NaN as the one quiet NaN numpy produces for ``float('nan')``. Inputs of another dtype or
byte order are converted first, so ``float32`` 100.5 and ``>f8`` 100.5 hash alike (``float32`` 100.1 does not
equal ``float64`` 100.1 and does not hash like it).

``readonly_copy`` is how windows hand out their arrays: a shared, cached window whose values could be changed
in place would no longer match its hash.
"""

from __future__ import annotations

import hashlib
from typing import TypeVar

import numpy as np
import numpy.typing as npt

HASH_DTYPE = np.dtype("<f8")

_T = TypeVar("_T", bound=np.generic)


def window_sha256(values: npt.ArrayLike) -> str:
    """Hex sha256 of ``values`` as C-ordered little-endian float64, with -0.0 and NaN normalised."""
    array = np.array(values, dtype=HASH_DTYPE, order="C", copy=True)
    array += 0.0  # -0.0 + 0.0 == +0.0; every other value is unchanged
    array[np.isnan(array)] = np.nan
    return hashlib.sha256(array.tobytes()).hexdigest()


def readonly_copy(values: npt.NDArray[_T]) -> npt.NDArray[_T]:
    """A copy that cannot be written to: what windows hand out, so their hash stays the hash of their values."""
    copy = values.copy()
    copy.setflags(write=False)
    return copy
