"""Offline prediction (``lusaug predict FILES...``): the server's input path and its answer.

Each file goes through the server's two steps (:func:`lusaug.serving.inputs.inspect`, then
:func:`~lusaug.serving.inputs.decode`) on its own, so a file that cannot be read gets its own
error and the batch goes on; all files' frames then run through the model in batches, and the
answer is the server's :class:`~lusaug.serving.schemas.PredictResponse`, field for field.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lusaug.export.model_input import ImageLimits
from lusaug.export.model_source import ModelSource
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.serving.batching import proba_chunked
from lusaug.serving.faults import Reason, Refused
from lusaug.serving.inputs import Entry, decode, inspect
from lusaug.serving.preprocess import VideoSampling
from lusaug.serving.schemas import PredictResponse, file_results, model_ref


def read_file(
    clf: OnnxClassifier, path: Path, limits: ImageLimits, sampling: VideoSampling
) -> Entry:
    """One file's model frames (uint8 (N, S, S) in ``frames``), or its error, as the server."""
    spec = clf.info.frame_spec
    try:
        with path.open("rb") as fh:
            plan = inspect([(str(path), "", fh)], limits, sampling, spec, 0)
            try:
                decode(plan, spec, sampling, 0)
            finally:
                plan.close()
    except OSError as exc:
        entry = Entry(str(path))
        entry.error = Refused(Reason.UNREADABLE_PATH, f"{path}: {exc.strerror or exc}")
        return entry
    return plan.entries[0]


def predict_files(
    clf: OnnxClassifier,
    source: ModelSource,
    files: Iterable[Path],
    limits: ImageLimits,
    sampling: VideoSampling,
    batch_size: int,
) -> PredictResponse:
    """One result per file, in order, as ``POST /predict`` answers them.

    Every type the ``frames`` stage reads is accepted (suffix, any case). Files are named as
    given; a file that cannot be read or classified gets its own error.
    """
    t0 = time.perf_counter()
    entries = [read_file(clf, Path(p), limits, sampling) for p in files]
    passed = [e for e in entries if e.error is None]
    probs = None
    if passed:
        x = clf.normalise(np.concatenate([e.frames for e in passed]))
        probs = proba_chunked(clf, x, batch_size)
    return PredictResponse(
        results=file_results(entries, probs, clf.info.classes),
        predicted=len(passed),
        failed=len(entries) - len(passed),
        model=model_ref(source, clf),
        classes=clf.info.classes,
        elapsed_ms=round(1000 * (time.perf_counter() - t0), 2),
    )
