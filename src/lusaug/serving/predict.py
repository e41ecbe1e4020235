"""Offline batch prediction (``lusaug predict FILES...``) with the server's own input path."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.export.model_input import BadInput, ImageLimits
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.serving.batching import proba_chunked
from lusaug.serving.inputs import decode, inspect
from lusaug.serving.preprocess import VideoSampling


def model_frames(
    clf: OnnxClassifier, path: Path, limits: ImageLimits, sampling: VideoSampling
) -> tuple[np.ndarray, bool]:
    """(model frames uint8 (N, S, S), is a video) of one file, as the server makes them.

    Raises:
        BadInput: the file breaks a limit or cannot be decoded.
        OSError: the file cannot be read.
    """
    spec = clf.info.frame_spec
    with path.open("rb") as fh:
        plan = inspect([(str(path), "", fh)], limits, sampling, spec, 0)
        try:
            return decode(plan, spec, sampling, 0), plan.video is not None
        finally:
            plan.close()


def predict_files(
    clf: OnnxClassifier,
    files: Iterable[Path],
    limits: ImageLimits,
    sampling: VideoSampling,
    batch_size: int,
) -> list[dict[str, Any]]:
    """One record per file: label, prob, per-class probs (videos: mean over sampled frames).

    Every type the ``frames`` stage reads is accepted (suffix, any case). A file that cannot
    be read becomes ``{"file", "error"}`` instead of stopping the batch.
    """
    classes = clf.info.classes
    files = list(files)
    results: dict[int, dict[str, Any]] = {}
    images: list[tuple[int, np.ndarray]] = []
    for i, path in enumerate(files):
        try:
            frames, is_video = model_frames(clf, path, limits, sampling)
        except (BadInput, OSError) as exc:
            results[i] = {"file": str(path), "error": str(exc)}
            continue
        if is_video:
            probs = proba_chunked(clf, clf.normalise(frames), batch_size)
            results[i] = _record(path, classes, probs.mean(axis=0), frames=len(frames))
        else:
            images.append((i, frames[0]))
    if images:
        x = clf.normalise(np.stack([f for _, f in images]))
        for (i, _), p in zip(images, proba_chunked(clf, x, batch_size)):
            results[i] = _record(files[i], classes, p)
    return [results[i] for i in range(len(files))]


def _record(
    path: Path, classes: list[str], p: np.ndarray, frames: int | None = None
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "file": str(path),
        "label": classes[int(p.argmax())],
        "prob": float(p.max()),
        "probs": {c: float(v) for c, v in zip(classes, p)},
    }
    if frames is not None:
        rec["frames"] = frames
    return rec
