"""Writing a model bundle: ``NAME.tflite`` and ``NAME.json`` side by side, and their manifest entry.

The card's tensor specs are read from the ``.tflite`` itself through the agent's own loader
(:func:`agent.models.open_model`), so the builder and the device read them by one code path; the sha256 and
size are computed here. The finished bundle is then loaded back with :func:`agent.models.load_bundle`: a
bundle this module wrote is one the agent accepts, or the build fails.

Every file is written atomically (a temporary file in the same directory, fsync, rename, fsync of the
directory), the model and the card first and the manifest last, under an exclusive ``flock`` on the
directory so two builders cannot lose each other's entries. A running agent that reads the old
manifest and then the new model file while a bundle is replaced sees a hash mismatch and refuses the model,
which is what the check is for.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.models import (
    MANIFEST_FILE,
    DataSource,
    FileIdentity,
    Manifest,
    ManifestEntry,
    ModelCard,
    load_bundle,
    open_model,
    read_manifest,
    sha256_hex,
)


def write_bundle(
    models_dir: str | Path,
    name: str,
    tflite: bytes,
    *,
    version: str,
    params: Mapping[str, Any],
    training_data: Sequence[DataSource],
    metrics: Mapping[str, Mapping[str, float]],
    build: Mapping[str, Any] | None = None,
    created: str | None = None,
    runtime: str | None = None,
) -> ModelCard:
    """Write the bundle ``name`` into ``models_dir`` (created if needed) and list it in the manifest.

    ``created`` defaults to ``SOURCE_DATE_EPOCH`` when set (reproducible builds), else to now, in UTC.
    A bundle of the same name is replaced. Raises :class:`agent.errors.ModelError` (a
    :class:`agent.models.FieldError` naming the field) when the card would not validate or the agent could
    not load the result.
    """
    root = Path(models_dir)
    inspected = open_model(tflite, name=name, version=version, runtime=runtime)
    card_file, tflite_file = f"{name}.json", f"{name}.tflite"
    sha256 = sha256_hex(tflite)
    draft = ModelCard(
        name=name,
        version=version,
        created=created if created is not None else _now_utc(),
        tflite=FileIdentity(file=tflite_file, sha256=sha256, size=len(tflite)),
        inputs=(inspected.input,),
        outputs=(inspected.output,),
        params=params,
        training_data=tuple(training_data),
        metrics=metrics,
        build=build or {},
    )
    # Validate exactly what will be written, as the agent will read it.
    card = ModelCard.from_json(draft.to_json(), file=card_file, model=name)
    entry = ManifestEntry(name=name, version=version, card=card_file, tflite=tflite_file, sha256=sha256)

    root.mkdir(parents=True, exist_ok=True)
    with _manifest_lock(root):
        manifest_path = root / MANIFEST_FILE
        manifest = read_manifest(root) if manifest_path.exists() else Manifest(bundles=())
        _write_atomic(root / tflite_file, tflite)
        _write_atomic(root / card_file, _json_bytes(card.to_json()))
        bundles = [e for e in manifest.bundles if e.name != name]
        replaced = [i for i, e in enumerate(manifest.bundles) if e.name == name]
        bundles.insert(replaced[0] if replaced else len(bundles), entry)
        _write_atomic(manifest_path, _json_bytes(Manifest(bundles=tuple(bundles)).to_json()))
    load_bundle(root, entry, runtime=runtime)
    return card


def _now_utc() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    seconds = int(epoch) if epoch else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _json_bytes(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _write_atomic(path: Path, content: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _manifest_lock(root: Path) -> Iterator[None]:
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
