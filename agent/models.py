"""Model bundles: the card format, the manifest, verification on load, and int8 inference.

A models directory holds::

    manifest.json   {"format": 1, "bundles": [{"name", "version", "card", "tflite", "sha256"}, ...]}
    NAME.json       the model card (:class:`ModelCard`, format 1, below)
    NAME.tflite     the int8 model

A card (every key required unless marked optional; unknown keys are refused so a typo cannot pass)::

    format          1
    name, version   the bundle's name (also its file stem) and version
    created         ISO 8601 time with a zone, e.g. "2025-01-01T00:00:00Z"
    tflite          {"file": "NAME.tflite", "sha256": 64 hex digits, "size": bytes}
    inputs, outputs [{"name", "shape": [int, ...], "dtype": "int8", "scale": > 0, "zero_point": int}]
    params          the window and feature parameters the agent's signal code must use (a JSON object)
    training_data   [{"name": a path or "dataset@version", "sha256": 64 hex digits}, ...] (at least one)
    metrics         {"float": {metric: number}, "int8": {metric: number}}
    build           optional: how it was built (quantization settings, seed, TensorFlow version)

Loading a bundle (:func:`load_bundle`) checks, in order: the manifest entry; the card's fields; that card and
manifest agree on name, version and file; the ``.tflite`` file's sha256 against the manifest and against the
card, and its size; that a runtime loads it; that its real tensors match the card's specs. The bytes that
were hashed are the bytes the interpreter loads. Any failure raises :class:`~agent.errors.ModelError` (a
subclass says which kind); :func:`load_models` collects the failures as :class:`ModelProblem` so the agent can
run its rules instead and say so on its status topic.

A :class:`LoadedModel` has one input and one output tensor, both int8. ``predict`` takes floats, quantizes
them with the input tensor's own scale and zero-point, invokes, and dequantizes the output.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.errors import ModelError
from agent.runtime import Interpreter, load_interpreter

FORMAT = 1
MANIFEST_FILE = "manifest.json"
PACKAGED_MODELS_DIR = Path(__file__).resolve().parent / "models"
SUPPORTED_DTYPES = frozenset({"int8"})
METRIC_KINDS = ("float", "int8")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_INT8_MIN, _INT8_MAX = -128, 127
# Card and model file may carry the same float32 scale through float64 and JSON; anything further apart is a
# different quantization.
_SCALE_REL_TOL = 1e-6


class FieldError(ModelError):
    """A manifest or card field is missing or wrong; ``file`` and ``field`` (``inputs[0].scale``) name it."""

    def __init__(self, model: str, file: str, field: str, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        super().__init__(model, f"{file}: {field}: {problem}")


class HashMismatchError(ModelError):
    """The model file's sha256 is not the one the manifest or the card (``against``) records."""

    def __init__(self, model: str, file: str, against: str, expected: str, actual: str) -> None:
        self.file = file
        self.against = against
        self.expected = expected
        self.actual = actual
        super().__init__(model, f"{file}: sha256 {actual} does not match the {against}'s {expected}")


# --- the card ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output tensor: the int8 value ``q`` stands for ``scale * (q - zero_point)``."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclass(frozen=True, slots=True)
class DataSource:
    """One piece of training data: a path relative to the data root or a ``dataset@version``, and its hash."""

    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class FileIdentity:
    file: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ModelCard:
    """A model card as :mod:`agent.models` documents it; build with :meth:`from_json` to get it validated."""

    name: str
    version: str
    created: str
    tflite: FileIdentity
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    params: Mapping[str, Any]
    training_data: tuple[DataSource, ...]
    metrics: Mapping[str, Mapping[str, float]]
    build: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    format: int = FORMAT

    @classmethod
    def from_json(cls, obj: object, *, file: str = "card", model: str = "?") -> ModelCard:
        """Validate a parsed card; :class:`FieldError` names the first bad field."""
        r = _Reader(model, file)
        card = r.obj(obj, "", required=_CARD_KEYS, optional=("build",))
        fmt = r.int_(card, "format")
        if fmt != FORMAT:
            raise r.error("format", f"is {fmt}, this agent reads format {FORMAT}")
        name = r.name(card, "name")
        r.model = name
        tflite = r.obj(card["tflite"], "tflite", required=("file", "sha256", "size"))
        metrics = r.obj(card["metrics"], "metrics", required=METRIC_KINDS, allow_extra=True)
        sources = r.list_(card, "training_data", min_len=1)
        return cls(
            format=fmt,
            name=name,
            version=r.version(card, "version"),
            created=r.time(card, "created"),
            tflite=FileIdentity(
                file=r.filename(tflite, "tflite.file", ".tflite"),
                sha256=r.sha256(tflite, "tflite.sha256"),
                size=r.int_(tflite, "tflite.size", minimum=1),
            ),
            inputs=r.tensors(card, "inputs"),
            outputs=r.tensors(card, "outputs"),
            params=_frozen(r.obj(card["params"], "params", allow_extra=True)),
            training_data=tuple(r.source(s, f"training_data[{i}]") for i, s in enumerate(sources)),
            metrics=MappingProxyType(
                {kind: MappingProxyType(r.numbers(metrics[kind], f"metrics.{kind}")) for kind in metrics}
            ),
            build=_frozen(r.obj(card["build"], "build", allow_extra=True) if "build" in card else {}),
        )

    def to_json(self) -> dict[str, Any]:
        """The card as JSON-ready data, keys in the documented order."""
        out: dict[str, Any] = {
            "format": self.format,
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "tflite": {"file": self.tflite.file, "sha256": self.tflite.sha256, "size": self.tflite.size},
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "params": _thawed(self.params),
            "training_data": [{"name": s.name, "sha256": s.sha256} for s in self.training_data],
            "metrics": {kind: dict(values) for kind, values in self.metrics.items()},
        }
        if self.build:
            out["build"] = _thawed(self.build)
        return out


_CARD_KEYS = (
    "format",
    "name",
    "version",
    "created",
    "tflite",
    "inputs",
    "outputs",
    "params",
    "training_data",
    "metrics",
)


# --- the manifest -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    name: str
    version: str
    card: str
    tflite: str
    sha256: str

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "card": self.card,
            "tflite": self.tflite,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class Manifest:
    bundles: tuple[ManifestEntry, ...]
    format: int = FORMAT

    @classmethod
    def from_json(cls, obj: object) -> Manifest:
        """Validate a parsed manifest; ``format`` may be left out (``{"bundles": []}`` is valid)."""
        r = _Reader("manifest", MANIFEST_FILE)
        top = r.obj(obj, "", required=("bundles",), optional=("format",))
        fmt = r.int_(top, "format") if "format" in top else FORMAT
        if fmt != FORMAT:
            raise r.error("format", f"is {fmt}, this agent reads format {FORMAT}")
        entries: list[ManifestEntry] = []
        seen: set[str] = set()
        for i, raw in enumerate(r.list_(top, "bundles")):
            at = f"bundles[{i}]"
            e = r.obj(raw, at, required=("name", "version", "card", "tflite", "sha256"))
            name = r.name(e, f"{at}.name")
            if name in seen:
                raise r.error(f"{at}.name", f"{name!r} is listed twice")
            seen.add(name)
            entries.append(
                ManifestEntry(
                    name=name,
                    version=r.version(e, f"{at}.version"),
                    card=r.filename(e, f"{at}.card", ".json"),
                    tflite=r.filename(e, f"{at}.tflite", ".tflite"),
                    sha256=r.sha256(e, f"{at}.sha256"),
                )
            )
        return cls(bundles=tuple(entries), format=fmt)

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "bundles": [e.to_json() for e in self.bundles]}


def read_manifest(models_dir: str | Path) -> Manifest:
    """Read and validate ``models_dir/manifest.json``."""
    return Manifest.from_json(_read_json(Path(models_dir) / MANIFEST_FILE, "manifest"))


# --- loaded models ----------------------------------------------------------------------------------------


class LoadedModel:
    """A verified model ready to run. ``predict`` is safe to call from several threads (it takes a lock)."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        sha256: str,
        runtime: str,
        interpreter: Interpreter,
        content: bytes,
        card: ModelCard | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.runtime = runtime
        self.card = card
        self._interpreter = interpreter
        self._content = content  # the interpreter may read from these bytes: keep them alive with it
        self._lock = threading.Lock()
        inputs, outputs = tensor_specs(interpreter)
        for kind, specs in (("input", inputs), ("output", outputs)):
            if len(specs) != 1:
                reason = f"has {len(specs)} {kind} tensors; the agent runs single-input, single-output models"
                raise ModelError(name, reason)
            spec = specs[0]
            if spec.dtype not in SUPPORTED_DTYPES:
                raise ModelError(name, f"{kind} tensor {spec.name!r} is {spec.dtype}, not int8")
            if not (spec.scale > 0 and math.isfinite(spec.scale)):
                raise ModelError(name, f"{kind} tensor {spec.name!r} has no usable int8 scale ({spec.scale})")
        self.input: TensorSpec = inputs[0]
        self.output: TensorSpec = outputs[0]
        self._input_index = int(interpreter.get_input_details()[0]["index"])
        self._output_index = int(interpreter.get_output_details()[0]["index"])
        # One sample at a time (the agent's every call): see _predict_one.
        self._thresholds = quantize_thresholds(self.input)
        self._dequantized = dequantize_table(self.output)
        self._zeros = np.zeros(math.prod(self.input.shape), dtype=np.float32)
        self._input_tensor = interpreter.tensor(self._input_index)
        self._output_tensor = interpreter.tensor(self._output_index)

    def describe(self) -> dict[str, str]:
        """What an alert or a status message says about the model."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256, "runtime": self.runtime}

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Run the model on float input; return float output.

        ``x`` is shaped like the input tensor (``(1, 32, 1)``), like one sample without the batch axis
        (``(32, 1)``, the result then has no batch axis either), or as a stack of samples (``(n, 32, 1)``,
        run one at a time when the tensor's batch is 1). Values outside the int8 range saturate. A wrong
        shape or a NaN/infinite value raises ``ValueError``: the quality gate should have stopped it.
        """
        arr = np.asarray(x, dtype=np.float32)
        shape = self.input.shape
        if arr.shape == shape:
            return self._predict_one(arr)
        if arr.shape == shape[1:]:
            one: npt.NDArray[np.float32] = self._predict_one(arr.reshape(shape))[0]
            return one
        if not (arr.ndim == len(shape) and arr.shape[1:] == shape[1:] and shape[0] == 1 and arr.shape[0] > 0):
            raise ValueError(f"model {self.name}: input shape {arr.shape} does not fit tensor shape {shape}")
        if not np.all(np.isfinite(arr)):  # refused before any sample runs
            raise ValueError(f"model {self.name}: input has NaN or infinite values")
        stacked: npt.NDArray[np.float32] = np.concatenate(
            [self._predict_one(arr[i : i + 1]) for i in range(arr.shape[0])], axis=0
        )
        return stacked

    def _predict_one(self, arr: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``predict`` for one sample shaped like the input tensor, bit for bit what :func:`quantize`, invoke
        and :func:`dequantize` give, in a few numpy calls.

        Quantizing is a step function of the float32 input that never decreases, so it is a search among the
        255 float32 values where it steps up (:func:`quantize_thresholds`, found with :func:`quantize` itself
        when the model is loaded); the int8 values go straight into the interpreter's input buffer (a view
        fetched for this call and let go before ``invoke``, as the runtimes require). Dequantizing is a lookup
        in :func:`dequantize_table`. The finiteness check is a dot product with zeros: NaN exactly when an
        input is NaN or infinite.
        """
        with self._lock:
            if not math.isfinite(arr.reshape(-1).dot(self._zeros)):
                raise ValueError(f"model {self.name}: input has NaN or infinite values")
            q = self._thresholds.searchsorted(arr, side="right")
            q -= 128
            view = self._input_tensor()
            view[...] = q
            del view
            self._interpreter.invoke()
            out: npt.NDArray[np.float32] = self._dequantized[self._output_tensor()]
        return out

    def __repr__(self) -> str:
        return f"LoadedModel({self.name} {self.version}, sha256={self.sha256[:12]}…, runtime={self.runtime})"


def quantize(x: npt.NDArray[np.floating[Any]], spec: TensorSpec) -> npt.NDArray[np.int8]:
    """Float to int8 through ``spec``'s scale and zero-point, rounding half away from zero as TFLite does."""
    scaled = np.asarray(x, dtype=np.float64) / spec.scale
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    q: npt.NDArray[np.int8] = np.clip(rounded + spec.zero_point, _INT8_MIN, _INT8_MAX).astype(np.int8)
    return q


def quantize_thresholds(spec: TensorSpec) -> npt.NDArray[np.float32]:
    """Where :func:`quantize` steps up: element j is the smallest float32 that quantizes to ``j - 127`` or more
    (-inf when every float32 does, +inf when none does), so that for any finite float32 ``x``,
    ``quantize(x) == searchsorted(thresholds, x, side="right") - 128``. Found by bisection over the float32
    values in order, with :func:`quantize` deciding each step."""
    top = int(np.array(np.finfo(np.float32).max, dtype=np.float32).view(np.int32))  # its bits, as a key

    def at(key: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """The float32 of each key: non-negative keys are a float's bits, negative ones its negation's."""
        bits = np.where(key >= 0, key, -key + 0x80000000).astype(np.uint32)
        return bits.view(np.float32)

    target = np.arange(_INT8_MIN + 1, _INT8_MAX + 1, dtype=np.int64)
    lo = np.full(target.shape, -top, dtype=np.int64)  # the answer's key lies in [lo, hi]; top + 1: none
    hi = np.full(target.shape, top + 1, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        with np.errstate(over="ignore"):  # x / scale beyond float64 saturates like any large value
            reached = quantize(at(mid), spec).astype(np.int64) >= target
        hi = np.where(reached, mid, hi)
        lo = np.where(reached, lo, mid + 1)
    thresholds = at(np.minimum(lo, top)).copy()
    thresholds[lo > top] = np.inf
    thresholds[lo == -top] = -np.inf
    return thresholds


def dequantize(q: npt.NDArray[Any], spec: TensorSpec) -> npt.NDArray[np.float32]:
    """Int8 to float: ``scale * (q - zero_point)``."""
    out: npt.NDArray[np.float32] = (q.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
    return out.astype(np.float32)


def dequantize_table(spec: TensorSpec) -> npt.NDArray[np.float32]:
    """:func:`dequantize` of every int8 value, indexed by the int8 value itself (negative values index from
    the end, where they are): ``dequantize_table(spec)[q] == dequantize(q, spec)``."""
    return dequantize(np.arange(256, dtype=np.uint8).view(np.int8), spec)


def tensor_specs(interpreter: Interpreter) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The input and output tensor specs as the interpreter reports them (the builder's cards use this)."""
    return (
        tuple(_spec(d) for d in interpreter.get_input_details()),
        tuple(_spec(d) for d in interpreter.get_output_details()),
    )


def _spec(detail: Mapping[str, Any]) -> TensorSpec:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64).ravel()
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int64).ravel()
    # Inputs and outputs are quantized per tensor: one scale, one zero-point (0.0 and 0 when not quantized).
    scale = float(scales[0]) if scales.size == 1 else float(detail["quantization"][0])
    zero_point = int(zero_points[0]) if zero_points.size == 1 else int(detail["quantization"][1])
    return TensorSpec(
        name=str(detail["name"]),
        shape=tuple(int(n) for n in detail["shape"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=scale,
        zero_point=zero_point,
    )


def open_model(
    content: bytes,
    *,
    name: str,
    version: str = "unversioned",
    runtime: str | None = None,
    card: ModelCard | None = None,
) -> LoadedModel:
    """Load ``.tflite`` bytes that need no bundle (the builder's int8 evaluation); no hash is checked here."""
    interpreter, used = load_interpreter(content, runtime=runtime, name=name)
    return LoadedModel(
        name=name,
        version=version,
        sha256=sha256_hex(content),
        runtime=used,
        interpreter=interpreter,
        content=content,
        card=card,
    )


# --- loading bundles --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelProblem:
    """A bundle the agent refused, and why."""

    name: str
    version: str | None
    error: ModelError

    @property
    def reason(self) -> str:
        return self.error.reason

    def describe(self) -> dict[str, str | None]:
        """What the agent's status topic says about it."""
        return {"name": self.name, "version": self.version, "reason": self.reason}


def load_bundle(models_dir: str | Path, entry: ManifestEntry, *, runtime: str | None = None) -> LoadedModel:
    """Verify and load one manifest entry; raise :class:`ModelError` (or a subclass) if it is unusable."""
    root = Path(models_dir)
    name = entry.name
    card = ModelCard.from_json(_read_json(root / entry.card, name), file=entry.card, model=name)
    for fld, in_card, in_manifest in (
        ("name", card.name, entry.name),
        ("version", card.version, entry.version),
        ("tflite.file", card.tflite.file, entry.tflite),
    ):
        if in_card != in_manifest:
            raise FieldError(name, entry.card, fld, f"card says {in_card!r}, manifest says {in_manifest!r}")
    content = _read_bytes(root / entry.tflite, name)
    actual = sha256_hex(content)
    if actual != entry.sha256:
        raise HashMismatchError(name, entry.tflite, "manifest", entry.sha256, actual)
    if actual != card.tflite.sha256:
        raise HashMismatchError(name, entry.tflite, "card", card.tflite.sha256, actual)
    if len(content) != card.tflite.size:
        raise FieldError(name, entry.card, "tflite.size", f"card says {card.tflite.size}, file has {len(content)}")
    model = open_model(content, name=name, version=card.version, runtime=runtime, card=card)
    _check_specs(name, entry.card, "inputs", card.inputs, (model.input,))
    _check_specs(name, entry.card, "outputs", card.outputs, (model.output,))
    return model


def load_model(models_dir: str | Path, name: str, *, runtime: str | None = None) -> LoadedModel:
    """Load the bundle called ``name`` from ``models_dir``'s manifest."""
    for entry in read_manifest(models_dir).bundles:
        if entry.name == name:
            return load_bundle(models_dir, entry, runtime=runtime)
    raise ModelError(name, f"not listed in {Path(models_dir) / MANIFEST_FILE}")


def load_models(
    models_dir: str | Path = PACKAGED_MODELS_DIR, *, runtime: str | None = None
) -> tuple[list[LoadedModel], list[ModelProblem]]:
    """Load every bundle the manifest lists; return the ones that loaded and the refused ones with reasons.

    Never raises :class:`ModelError`: an unreadable manifest is reported as a problem named ``manifest``.
    """
    try:
        manifest = read_manifest(models_dir)
    except ModelError as exc:
        return [], [ModelProblem("manifest", None, exc)]
    loaded: list[LoadedModel] = []
    problems: list[ModelProblem] = []
    for entry in manifest.bundles:
        try:
            loaded.append(load_bundle(models_dir, entry, runtime=runtime))
        except ModelError as exc:
            problems.append(ModelProblem(entry.name, entry.version, exc))
    return loaded, problems


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _check_specs(
    model: str, file: str, kind: str, declared: Sequence[TensorSpec], actual: Sequence[TensorSpec]
) -> None:
    if len(declared) != len(actual):
        raise FieldError(model, file, kind, f"card lists {len(declared)} tensors, the model has {len(actual)}")
    for i, (want, got) in enumerate(zip(declared, actual, strict=True)):
        at = f"{kind}[{i}]"
        for fld in ("name", "shape", "dtype", "zero_point"):
            if getattr(want, fld) != getattr(got, fld):
                raise FieldError(
                    model,
                    file,
                    f"{at}.{fld}",
                    f"card says {getattr(want, fld)!r}, model has {getattr(got, fld)!r}",
                )
        if not math.isclose(want.scale, got.scale, rel_tol=_SCALE_REL_TOL):
            raise FieldError(model, file, f"{at}.scale", f"card says {want.scale!r}, model has {got.scale!r}")


def _read_bytes(path: Path, model: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelError(model, f"missing file {path}") from exc
    except OSError as exc:
        raise ModelError(model, f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_json(path: Path, model: str) -> object:
    raw = _read_bytes(path, model)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FieldError(model, path.name, "<document>", f"not valid JSON: {exc}") from exc


def _frozen(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(json.loads(json.dumps(obj)))


def _thawed(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(json.loads(json.dumps(dict(obj))))


class _Reader:
    """Field readers that raise :class:`FieldError` with the field's path."""

    def __init__(self, model: str, file: str) -> None:
        self.model = model
        self.file = file

    def error(self, fld: str, problem: str) -> FieldError:
        return FieldError(self.model, self.file, fld or "<document>", problem)

    def obj(
        self,
        value: object,
        at: str,
        *,
        required: Sequence[str] = (),
        optional: Sequence[str] = (),
        allow_extra: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(at, f"must be a JSON object, got {type(value).__name__}")
        prefix = f"{at}." if at else ""
        for key in required:
            if key not in value:
                raise self.error(f"{prefix}{key}", "missing")
        if not allow_extra:
            extra = sorted(set(value) - set(required) - set(optional))
            if extra:
                raise self.error(f"{prefix}{extra[0]}", "unknown field")
        return value

    def _get(self, obj: Mapping[str, Any], at: str) -> Any:
        key = at.rsplit(".", 1)[-1]
        if key not in obj:
            raise self.error(at, "missing")
        return obj[key]

    def str_(self, obj: Mapping[str, Any], at: str) -> str:
        value = self._get(obj, at)
        if not isinstance(value, str) or not value.strip():
            raise self.error(at, f"must be a non-empty string, got {value!r}")
        return value

    def name(self, obj: Mapping[str, Any], at: str) -> str:
        value = self.str_(obj, at)
        if not _NAME.fullmatch(value):
            raise self.error(at, f"{value!r} is not a name (letters, digits, '_', '.', '-'; at most 64)")
        return value

    def version(self, obj: Mapping[str, Any], at: str) -> str:
        value = self.str_(obj, at)
        if any(c.isspace() for c in value):
            raise self.error(at, f"{value!r} has white space")
        return value

    def filename(self, obj: Mapping[str, Any], at: str, suffix: str) -> str:
        value = self.str_(obj, at)
        if Path(value).name != value or value in (".", "..") or not value.endswith(suffix):
            raise self.error(at, f"{value!r} must be a plain file name ending in {suffix}")
        return value

    def sha256(self, obj: Mapping[str, Any], at: str) -> str:
        value = self._get(obj, at)
        if not isinstance(value, str) or not _SHA256.fullmatch(value):
            raise self.error(at, f"must be 64 lower-case hex digits, got {value!r}")
        return value

    def time(self, obj: Mapping[str, Any], at: str) -> str:
        value = self.str_(obj, at)
        try:
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError as exc:
            raise self.error(at, f"{value!r} is not an ISO 8601 time") from exc
        if parsed.tzinfo is None:
            raise self.error(at, f"{value!r} has no time zone")
        return value

    def int_(self, obj: Mapping[str, Any], at: str, *, minimum: int | None = None) -> int:
        value = self._get(obj, at)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(at, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(at, f"must be at least {minimum}, got {value}")
        return value

    def number(self, value: object, at: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.error(at, f"must be a finite number, got {value!r}")
        return float(value)

    def numbers(self, value: object, at: str) -> dict[str, float]:
        obj = self.obj(value, at, allow_extra=True)
        return {str(k): self.number(v, f"{at}.{k}") for k, v in obj.items()}

    def list_(self, obj: Mapping[str, Any], at: str, *, min_len: int = 0) -> list[Any]:
        value = self._get(obj, at)
        if not isinstance(value, list):
            raise self.error(at, f"must be a JSON list, got {type(value).__name__}")
        if len(value) < min_len:
            raise self.error(at, f"must list at least {min_len}")
        return value

    def source(self, value: object, at: str) -> DataSource:
        s = self.obj(value, at, required=("name", "sha256"))
        return DataSource(name=self.str_(s, f"{at}.name"), sha256=self.sha256(s, f"{at}.sha256"))

    def tensors(self, obj: Mapping[str, Any], at: str) -> tuple[TensorSpec, ...]:
        specs: list[TensorSpec] = []
        for i, raw in enumerate(self.list_(obj, at, min_len=1)):
            here = f"{at}[{i}]"
            t = self.obj(raw, here, required=("name", "shape", "dtype", "scale", "zero_point"))
            shape = self.list_(t, f"{here}.shape", min_len=1)
            for j, dim in enumerate(shape):
                if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                    raise self.error(f"{here}.shape[{j}]", f"must be a positive integer, got {dim!r}")
            dtype = self.str_(t, f"{here}.dtype")
            if dtype not in SUPPORTED_DTYPES:
                raise self.error(f"{here}.dtype", f"{dtype!r} is not one of {sorted(SUPPORTED_DTYPES)}")
            scale = self.number(t["scale"], f"{here}.scale")
            if scale <= 0:
                raise self.error(f"{here}.scale", f"must be > 0, got {scale}")
            zero_point = self.int_(t, f"{here}.zero_point")
            if not _INT8_MIN <= zero_point <= _INT8_MAX:
                raise self.error(f"{here}.zero_point", f"must be in [{_INT8_MIN}, {_INT8_MAX}], got {zero_point}")
            specs.append(
                TensorSpec(
                    name=self.str_(t, f"{here}.name"),
                    shape=tuple(shape),
                    dtype=dtype,
                    scale=scale,
                    zero_point=zero_point,
                )
            )
        return tuple(specs)
