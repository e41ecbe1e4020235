"""Small synthetic videos, images and raw folders for the ingest/frames tests (written with cv2/PIL)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lusaug.core.config import Params
from lusaug.data.manifest import RAW_METADATA_COLUMNS

CLASS_PREFIX = {"regular": "Reg", "covid": "Cov", "pneumonia": "Pneu", "viral": "Vir"}


def frame_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A BGR frame whose grey level encodes the frame index (so sampled indices can be read back).

    A bright bar (value 200) marks the content; the background is a mid grey that moves with i.
    """
    frame = np.full((h, w, 3), 40 + (i * 3) % 150, np.uint8)
    frame[h // 4 : h // 4 + 4, :] = 200
    return frame


def write_video(
    path: Path,
    n_frames: int,
    fps: float = 30.0,
    size: tuple[int, int] = (64, 48),
    fourcc: str = "FFV1",
    frame_fn=frame_pattern,
) -> Path:
    """Write a video with OpenCV; FFV1 AVI is lossless, so pixel values can be checked exactly."""
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for i in range(n_frames):
        writer.write(frame_fn(i, h, w))
    writer.release()
    return path


def write_image(path: Path, value: int = 120, size: tuple[int, int] = (48, 40)) -> Path:
    """A grey PNG/JPEG with a bright bar, written by OpenCV."""
    w, h = size
    img = np.full((h, w), value, np.uint8)
    img[h // 3 : h // 3 + 3, :] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_raw(
    root: Path, per_class: int = 1, n_frames: int = 12, with_metadata: bool = True
) -> Path:
    """A small data/raw: ``per_class`` lossless clips per class (+ metadata.csv when asked)."""
    rows = []
    for label, prefix in CLASS_PREFIX.items():
        for k in range(per_class):
            rel = f"pocus_videos/convex/{prefix}_clip{k}.avi"
            write_video(root / rel, n_frames)
            rows.append(
                {
                    "file": rel,
                    "label": label,
                    "patient_id": f"{label}-p{k}",
                    "probe": "convex",
                    "source": "synthetic",
                    "license": "CC0",
                }
            )
    if with_metadata:
        pd.DataFrame(rows, columns=RAW_METADATA_COLUMNS).to_csv(root / "metadata.csv", index=False)
    return root


def small_params(params: Params, **frames_overrides) -> Params:
    """params with 32 px frames, one worker and the given frames.* overrides."""
    return replace(
        params,
        base=replace(params.base, image_size=32, workers=1),
        frames=replace(params.frames, **frames_overrides),
    )
