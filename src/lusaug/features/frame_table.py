"""A fold's frames in memory, and the guard that keeps the encoder on training patients.

:class:`FrameTable` is a uint8 image stack (N, H, W) with its split-file rows (``path``,
``label``, ``video_id``, ``patient_id``, ``split``) in the same order. :func:`load_split_frames`
reads one or more splits of a fold's split CSV; :func:`check_training_only` fails loudly when a
validation or test frame reaches the encoder, and when a clip is filed under two patients (a
pair of its frames would then cross patients).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lusaug.core.errors import LusaugError
from lusaug.data.manifest import frame_path, read_manifest

REQUIRED_COLUMNS = ("path", "label", "video_id", "patient_id", "split")


class FeaturesError(LusaugError, ValueError):
    """The frames or the features cannot serve the feature space or the protocol."""


@dataclass
class FrameTable:
    """Frames of one or more splits: ``images`` uint8 (N, H, W), ``rows`` in the same order."""

    images: np.ndarray
    rows: pd.DataFrame

    def __post_init__(self) -> None:
        if len(self.images) != len(self.rows):
            raise FeaturesError(
                f"{len(self.images)} images but {len(self.rows)} rows: they must pair up"
            )
        missing = [c for c in REQUIRED_COLUMNS if c not in self.rows.columns]
        if missing:
            raise FeaturesError(f"frame rows lack column(s) {missing}")

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        return self.rows[name].astype(str).to_numpy()

    def where(self, mask: np.ndarray) -> FrameTable:
        mask = np.asarray(mask, bool)
        return FrameTable(self.images[mask], self.rows[mask].reset_index(drop=True))

    def split(self, name: str) -> FrameTable:
        return self.where(self.column("split") == name)


def read_grey(path: Path, size: int) -> np.ndarray:
    """A PNG as uint8 (size, size); resized (area when shrinking) if the file differs."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FeaturesError(f"cannot read frame {path}: run `dvc repro frames` (or `dvc pull`)")
    if img.shape != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def load_split_frames(splits_csv: Path | str, size: int, splits: Sequence[str]) -> FrameTable:
    """The frames of ``splits`` (e.g. ``("train",)``) of a fold's split CSV, sorted by path."""
    df = read_manifest(splits_csv)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise FeaturesError(f"{splits_csv} lacks column(s) {missing}: run `dvc repro split`")
    rows = df[df["split"].isin(list(splits))].sort_values("path").reset_index(drop=True)
    if rows.empty:
        raise FeaturesError(f"{splits_csv} has no frames in split(s) {list(splits)}")
    images = np.stack([read_grey(frame_path(splits_csv, p), size) for p in rows["path"]])
    return FrameTable(images, rows[list(REQUIRED_COLUMNS)].astype(str))


def check_training_only(rows: pd.DataFrame) -> None:
    """Refuse any frame outside the training split, and any clip filed under two patients."""
    bad = rows[rows["split"].astype(str) != "train"]
    if not bad.empty:
        patients = sorted(set(bad["patient_id"].astype(str)))
        raise FeaturesError(
            f"the self-supervised encoder trains on training patients only, but its input holds "
            f"{len(bad)} frame(s) of split(s) {sorted(set(bad['split']))} from patient(s) "
            f"{patients[:10]}: pass the fold's training rows only"
        )
    per_clip = rows.groupby("video_id")["patient_id"].nunique()
    shared = sorted(per_clip[per_clip > 1].index.astype(str))
    if shared:
        raise FeaturesError(
            f"clip(s) {shared[:10]} are filed under more than one patient: an intra-clip pair "
            "would cross patients; fix video_id/patient_id in the manifest"
        )
