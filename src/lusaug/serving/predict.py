"""Offline batch prediction (``lusaug predict FILES...``) with the server's preprocessing code."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.serving.batching import proba_chunked
from lusaug.serving.preprocess import (
    BadInput,
    ImageLimits,
    VideoSampling,
    decode_image,
    decode_video,
)
from lusaug.serving.session import OnnxClassifier


def predict_files(
    clf: OnnxClassifier,
    files: Iterable[Path],
    limits: ImageLimits,
    sampling: VideoSampling,
    video_types: list[str],
    batch_size: int,
) -> list[dict[str, Any]]:
    """One record per file: label, prob, per-class probs (videos: mean over sampled frames).

    A file that cannot be read becomes ``{"file", "error"}`` instead of stopping the batch.
    """
    classes = clf.info.classes
    results: list[dict[str, Any]] = []
    images: list[tuple[Path, np.ndarray]] = []
    for path in files:
        try:
            data = path.read_bytes()
            if path.suffix.lower() in video_types:
                frames = decode_video(data, path.suffix.lower(), sampling, limits, str(path))
                x = clf.frames_to_input(list(frames), joint=True)
                probs = proba_chunked(clf, x, batch_size)
                results.append(_record(path, classes, probs.mean(axis=0), frames=len(frames)))
            else:
                images.append((path, decode_image(data, limits, str(path))))
        except (BadInput, OSError) as exc:
            results.append({"file": str(path), "error": str(exc)})
    if images:
        probs = proba_chunked(clf, clf.frames_to_input([im for _, im in images]), batch_size)
        results.extend(_record(p, classes, pr) for (p, _), pr in zip(images, probs))
    order = {str(p): i for i, p in enumerate(files)} if isinstance(files, list) else {}
    return sorted(results, key=lambda r: order.get(r["file"], 0))


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
