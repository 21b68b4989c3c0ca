"""The one place the agent gets a TFLite interpreter from.

Three Python packages can run a ``.tflite`` file. :func:`load_interpreter` tries them in this order and says
which one it used:

1. ``ai-edge-litert`` (``ai_edge_litert.interpreter``): the maintained runtime and a project dependency;
   wheels for CPython 3.10-3.13 on x86_64 and aarch64, works with numpy 1 and 2 and beside TensorFlow.
2. ``tflite-runtime`` (``tflite_runtime.interpreter``): the runtime the design names. Its last release
   (2.14.0) needs numpy < 2 and has no wheels past CPython 3.11.
3. ``tensorflow`` (``tensorflow.lite.Interpreter``): the host-side fallback, imported here only, and only
   when both others failed. A device never has it.

The environment variable ``VIGIL_TFLITE_RUNTIME`` (``ai-edge-litert``, ``tflite-runtime`` or ``tensorflow``)
forces one runtime; the ``runtime=`` argument overrides the variable.

Known trap (measured with tflite-runtime 2.14.0 and TensorFlow 2.21): tflite-runtime cannot load a model in a
process that imported TensorFlow first; it raises ``ValueError: vector::reserve``. The reverse order works.
So while ``tensorflow`` is in ``sys.modules`` the search skips tflite-runtime, and forcing it raises
:class:`RuntimeLoadError` saying why, not the obscure ``ValueError``. ai-edge-litert has no such problem.

Interpreters are not thread-safe: one caller at a time per interpreter (``agent.models.LoadedModel`` locks).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy.typing as npt

from agent.errors import ModelError

RUNTIME_ENV = "VIGIL_TFLITE_RUNTIME"
log = logging.getLogger("vigil.runtime")


class Interpreter(Protocol):
    """The part of the TFLite ``Interpreter`` API the agent uses (same in all three packages)."""

    def allocate_tensors(self) -> None: ...

    def get_input_details(self) -> list[dict[str, Any]]: ...

    def get_output_details(self) -> list[dict[str, Any]]: ...

    def set_tensor(self, tensor_index: int, value: npt.NDArray[Any]) -> None: ...

    def invoke(self) -> None: ...

    def get_tensor(self, tensor_index: int) -> npt.NDArray[Any]: ...

    def tensor(self, tensor_index: int) -> Callable[[], npt.NDArray[Any]]: ...


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    """One interpreter package: its name in Vigil, the module to import, the attribute path to the class."""

    name: str
    module: str
    attribute: str


RUNTIMES: tuple[RuntimeInfo, ...] = (
    RuntimeInfo("ai-edge-litert", "ai_edge_litert.interpreter", "Interpreter"),
    RuntimeInfo("tflite-runtime", "tflite_runtime.interpreter", "Interpreter"),
    RuntimeInfo("tensorflow", "tensorflow", "lite.Interpreter"),
)
RUNTIME_NAMES: tuple[str, ...] = tuple(r.name for r in RUNTIMES)
_BY_NAME: Mapping[str, RuntimeInfo] = {r.name: r for r in RUNTIMES}

# tf.lite.Interpreter warns on every construction that it is deprecated in favour of ai-edge-litert. We know:
# it is the last fallback. Only that warning is silenced.
_TF_DEPRECATION = r"\s*Warning: tf\.lite\.Interpreter is deprecated"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened when one runtime was tried: ``stage`` is ``import``, ``skipped`` or ``load``."""

    runtime: str
    stage: str
    reason: str


class RuntimeLoadError(ModelError):
    """No runtime could load the model; ``attempts`` says what each one tried and why it failed."""

    def __init__(self, model: str, attempts: tuple[Attempt, ...]) -> None:
        self.attempts = attempts
        detail = "; ".join(f"{a.runtime} ({a.stage}): {a.reason}" for a in attempts) or "no runtime tried"
        super().__init__(model, f"no TFLite runtime could load it: {detail}")


def available_runtimes() -> list[str]:
    """The runtimes usable in this process, in the order :func:`load_interpreter` tries them.

    ai-edge-litert and tflite-runtime are really imported (an install that cannot import, e.g. tflite-runtime
    under numpy 2, is not listed). TensorFlow is only looked up, never imported: importing it costs seconds
    and hundreds of MB and would break a later tflite-runtime load. tflite-runtime is left out once
    TensorFlow has been imported, since it can no longer load models in this process.
    """
    found: list[str] = []
    for info in RUNTIMES:
        if info.name == "tensorflow":
            if _tensorflow_imported() or importlib.util.find_spec("tensorflow") is not None:
                found.append(info.name)
            continue
        if info.name == "tflite-runtime" and _tensorflow_imported():
            continue
        try:
            _interpreter_class(info)
        except Exception:  # any failure to import means "not available"
            continue
        found.append(info.name)
    return found


def selected_runtime(runtime: str | None = None, *, model: str = "*") -> str | None:
    """The runtime forced by ``runtime`` or, failing that, by ``VIGIL_TFLITE_RUNTIME``; ``None`` means search.

    An unknown name raises :class:`ModelError` for ``model`` (so the agent falls back to its rules and
    reports it, rather than failing to start over a typo).
    """
    choice = runtime if runtime is not None else os.environ.get(RUNTIME_ENV, "").strip() or None
    if choice is not None and choice not in _BY_NAME:
        source = "runtime argument" if runtime is not None else RUNTIME_ENV
        raise ModelError(model, f"{source}={choice!r} is not one of {', '.join(RUNTIME_NAMES)}")
    return choice


def load_interpreter(
    model: str | os.PathLike[str] | bytes,
    *,
    runtime: str | None = None,
    num_threads: int = 1,
    name: str | None = None,
) -> tuple[Interpreter, str]:
    """Load ``model`` (a path or the file's bytes), allocate its tensors, return (interpreter, runtime name).

    Pass bytes when the caller has already verified them (hash check and load then see the same content).
    ``name`` labels errors (default: the file's stem). With no runtime forced, each runtime is tried in order
    and a failure to import or to load moves on to the next; :class:`RuntimeLoadError` lists every attempt.
    """
    if isinstance(model, bytes):
        label = name or "<bytes>"
        kwargs: dict[str, Any] = {"model_content": model}
    else:
        path = Path(model)
        label = name or path.stem
        if not path.is_file():
            raise ModelError(label, f"no model file at {path}")
        kwargs = {"model_path": str(path)}
    kwargs["num_threads"] = num_threads

    forced = selected_runtime(runtime, model=label)
    candidates = (_BY_NAME[forced],) if forced else RUNTIMES
    attempts: list[Attempt] = []
    last_exc: Exception | None = None
    for info in candidates:
        if info.name == "tflite-runtime" and _tensorflow_imported():
            reason = "tensorflow was imported first in this process (it would fail with vector::reserve)"
            attempts.append(Attempt(info.name, "skipped", reason))
            continue
        try:
            cls = _interpreter_class(info)
        except Exception as exc:  # recorded, reported in RuntimeLoadError
            attempts.append(Attempt(info.name, "import", f"{type(exc).__name__}: {exc}"))
            last_exc = exc
            continue
        try:
            with warnings.catch_warnings(), _native_stderr_logged(label, info.name):
                warnings.filterwarnings("ignore", message=_TF_DEPRECATION)
                interpreter: Interpreter = cls(**kwargs)
                interpreter.allocate_tensors()
        except Exception as exc:  # recorded, reported in RuntimeLoadError
            attempts.append(Attempt(info.name, "load", f"{type(exc).__name__}: {exc}"))
            last_exc = exc
            continue
        return interpreter, info.name
    raise RuntimeLoadError(label, tuple(attempts)) from last_exc


@contextlib.contextmanager
def _native_stderr_logged(label: str, runtime: str) -> Iterator[None]:
    """Run a model load with file descriptor 2 caught, then log what the runtime's C++ code wrote there (its
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") through ``logging``: a daemon's stderr then holds
    only its own log lines, one JSON object each with ``log_format = "json"``. Where fd 2 cannot be caught
    (no such descriptor), the load runs as it is."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.info("model %s, %s: %s", label, runtime, line.strip())


def _tensorflow_imported() -> bool:
    return sys.modules.get("tensorflow") is not None


def _interpreter_class(info: RuntimeInfo) -> Any:
    obj: Any = importlib.import_module(info.module)
    for part in info.attribute.split("."):
        obj = getattr(obj, part)
    return obj
