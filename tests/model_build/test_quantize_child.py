"""The converter's child process: a crash, a failure or a hang becomes a QuantizeError, never kills the build.

No TensorFlow needed: these drive :func:`model_build.quantize.run_child` with stand-in children.
"""

from __future__ import annotations

import signal
import sys

import numpy as np
import numpy.typing as npt
import pytest

from model_build.quantize import QuantizeError, quantize_int8, run_child


def test_a_segfaulting_child_is_reported_with_its_signal() -> None:
    crash = "import os, signal, sys; sys.stderr.write('about to crash\\n'); os.kill(os.getpid(), signal.SIGSEGV)"
    with pytest.raises(QuantizeError) as info:
        run_child([sys.executable, "-c", crash], timeout_s=60)
    assert info.value.returncode == -signal.SIGSEGV
    assert "SIGSEGV" in info.value.reason
    assert "about to crash" in info.value.stderr_tail


def test_a_failing_child_is_reported_with_its_exit_code_and_stderr() -> None:
    with pytest.raises(QuantizeError) as info:
        run_child([sys.executable, "-c", "raise SystemExit('converter says no')"], timeout_s=60)
    assert info.value.returncode == 1
    assert "converter says no" in info.value.stderr_tail


def test_a_hanging_child_is_stopped() -> None:
    with pytest.raises(QuantizeError) as info:
        run_child([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)
    assert info.value.returncode is None


def test_a_clean_child_passes() -> None:
    run_child([sys.executable, "-c", "pass"], timeout_s=60)


@pytest.mark.parametrize(
    "data", [np.zeros((0, 32, 1)), np.zeros(32), np.full((4, 32, 1), np.nan)], ids=["empty", "1d", "nan"]
)
def test_bad_representative_data_is_refused_before_converting(data: npt.NDArray[np.float64]) -> None:
    with pytest.raises(QuantizeError):
        quantize_int8(object(), data)  # never reaches the model
