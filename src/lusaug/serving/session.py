"""The served model's life: resolve, open, smoke-test, and a download cache kept to what is used.

A model is only ever swapped in after :func:`load_model` has opened it and run one frame
through it, so a broken version never replaces a working one. :func:`prune_cache` deletes the
downloaded versions that no longer serve (the session of a swapped-out version is in memory:
requests still running on it do not need its file).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lusaug.export.model_source import ModelSource, resolve_model, version_dir
from lusaug.export.onnx_runtime import ModelSourceError, OnnxClassifier

logger = logging.getLogger(__name__)


class ModelLoadError(ModelSourceError):
    """A model was found but cannot serve (not loadable, or it fails the smoke test)."""


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: where it came from, its session, when it was loaded."""

    source: ModelSource
    clf: OnnxClassifier
    loaded_at: str

    @property
    def name(self) -> str:
        """Registered name, or the file name for a plain .onnx."""
        return self.source.name or self.source.path.name

    @property
    def version(self) -> str:
        """Registered version ("" for a plain file)."""
        return self.source.version

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (the micro-batcher groups requests by this object)."""
        return self.clf.proba(x)


def load_model(uri: str, cache_dir: Path, threads: int) -> LoadedModel:
    """Resolve, open and smoke-test a model (all before it can be swapped in).

    Raises:
        ModelSourceError: the URI names nothing loadable, or the model fails the smoke test.
    """
    source = resolve_model(uri, cache_dir)
    clf = OnnxClassifier(source.path, threads=threads)
    size = clf.info.image_size
    try:
        probs = clf.proba(np.zeros((1, 1, size, size), np.float32))
    except Exception as exc:  # fail here, not on the first request
        raise ModelLoadError(f"{uri}: the smoke test (one blank frame) failed: {exc}") from exc
    if probs.shape != (1, len(clf.info.classes)) or not np.all(np.isfinite(probs)):
        raise ModelLoadError(
            f"{uri}: the smoke test gave {probs.shape} outputs for {len(clf.info.classes)} "
            "classes, or non-finite probabilities"
        )
    return LoadedModel(source, clf, datetime.now(UTC).isoformat(timespec="seconds"))


def prune_cache(cache_dir: Path, keep: list[ModelSource]) -> list[str]:
    """Delete every downloaded version under ``cache_dir`` but ``keep``; returns what went."""
    kept = {version_dir(cache_dir, s.name, s.version) for s in keep if s.version}
    removed = []
    for entry in sorted(Path(cache_dir).glob("*-v*")):
        if entry.is_dir() and entry not in kept:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    if removed:
        logger.info("model cache: removed %s", removed)
    return removed
