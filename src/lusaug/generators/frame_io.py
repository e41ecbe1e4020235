"""Frames in and out of the generators: training-set builders, PNG I/O, the validation guard.

Generators see the TRAINING split only. The one exception is a generator spec with
``leaky: true`` (the study's 'all viral' DDPM saw test frames); its frames keep their ``split``
column so every report can show what leaked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from lusaug.core.config import GeneratorSpec
from lusaug.core.errors import LusaugError
from lusaug.core.utils import atomic_path
from lusaug.data.manifest import frame_path, read_manifest

logger = logging.getLogger(__name__)


class GeneratorDataError(LusaugError, ValueError):
    """The splits cannot provide the frames a generator needs."""


@dataclass
class TrainingSet:
    """The frames one generator trains on (rows of data/splits.csv) and how they were chosen."""

    frames: pd.DataFrame  # splits rows (path, label, patient_id, split, ...)
    classes: list[str]  # classes the generator is trained on (one unless conditional)
    leaky: bool  # frames from val/test are included
    notes: list[str] = field(default_factory=list)  # e.g. "only 2 patients for 3mixed"

    @property
    def splits_used(self) -> list[str]:
        return sorted(set(self.frames["split"]))


def read_splits(path: Path | str) -> pd.DataFrame:
    """data/splits.csv with a check that the ``split`` column is there."""
    df = read_manifest(path)
    if "split" not in df.columns:
        raise GeneratorDataError(f"{path} has no 'split' column: run `dvc repro split` first")
    return df


def check_validation(path: Path | str | None) -> None:
    """Refuse to run on a split that failed validation (leakage, broken frames)."""
    if path is None:
        return
    path = Path(path)
    if not path.exists():
        raise GeneratorDataError(f"{path} not found: run `dvc repro validate` first")
    report = json.loads(path.read_text())
    if not report.get("success", False):
        raise GeneratorDataError(
            f"{path} says the split failed validation; generators never run on a leaky or broken "
            "split (see reports/validation/)"
        )


def _pool(splits: pd.DataFrame, classes: Sequence[str], leaky: bool) -> pd.DataFrame:
    allowed = ["train", "val", "test"] if leaky else ["train"]
    pool = splits[splits["label"].isin(list(classes)) & splits["split"].isin(allowed)]
    return pool.sort_values("path").reset_index(drop=True)


def build_training_set(
    splits: pd.DataFrame,
    spec: GeneratorSpec,
    target_class: str,
    classes: Sequence[str],
    mixed_patients: int,
    seed: int,
) -> TrainingSet:
    """Choose a generator's training frames from ``splits`` as its spec says.

    ``3mixed``: one frame from each of ``mixed_patients`` distinct patients (all patients, with a
    note, when fewer exist). ``all``: every frame. Conditional generators train on every class.
    Only the train split is used unless ``spec.leaky``.
    """
    train_classes = list(classes) if spec.kind == "ddpm_conditional" else [target_class]
    pool = _pool(splits, train_classes, spec.leaky)
    notes: list[str] = []
    if spec.leaky:
        notes.append("LEAKY: trained on validation/test frames too")
    target_pool = pool[pool["label"] == target_class]
    if target_pool.empty:
        which = "any split" if spec.leaky else "the train split"
        raise GeneratorDataError(f"no frames of class {target_class!r} in {which} of the splits")
    rng = np.random.default_rng(seed)
    if spec.train_set == "all":
        frames = pool
    else:
        parts = []
        for label in train_classes:
            cls_pool = pool[pool["label"] == label]
            patients = sorted(cls_pool["patient_id"].unique())
            if len(patients) < mixed_patients:
                msg = (
                    f"3mixed: class {label!r} has only {len(patients)} patient(s) in "
                    f"{'the pool' if spec.leaky else 'the train split'}; using all of them "
                    f"(wanted {mixed_patients})"
                )
                logger.warning(msg)
                notes.append(msg)
                chosen = patients
            else:
                chosen = sorted(rng.choice(patients, size=mixed_patients, replace=False))
            for pid in chosen:
                rows = cls_pool[cls_pool["patient_id"] == pid]
                parts.append(rows.iloc[[int(rng.integers(len(rows)))]])
        frames = pd.concat(parts).reset_index(drop=True)
    return TrainingSet(frames=frames, classes=train_classes, leaky=spec.leaky, notes=notes)


def class_frames(splits: pd.DataFrame, label: str, split: str = "train") -> pd.DataFrame:
    """Rows of one class in one split (the real reference set of fidelity metrics)."""
    rows = splits[(splits["label"] == label) & (splits["split"] == split)]
    return rows.sort_values("path").reset_index(drop=True)


def read_grey(path: Path | str, size: int | None = None) -> np.ndarray:
    """A PNG as a uint8 (H, W) array, optionally resized to ``size`` x ``size``."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise GeneratorDataError(f"cannot read image {path}")
    if size is not None and img.shape != (size, size):
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img


def load_frames(rows: pd.DataFrame, splits_csv: Path | str, size: int | None = None) -> np.ndarray:
    """Stack the PNGs of manifest rows into a uint8 (N, H, W) array."""
    if rows.empty:
        return np.zeros((0, size or 0, size or 0), np.uint8)
    return np.stack([read_grey(frame_path(splits_csv, p), size) for p in rows["path"]])


def load_folder(folder: Path | str, size: int | None = None) -> tuple[np.ndarray, list[Path]]:
    """Every PNG in ``folder`` (sorted by name) as a uint8 (N, H, W) array plus the paths."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GeneratorDataError(f"{folder} is not a folder of PNGs")
    paths = sorted(folder.glob("*.png"))
    if not paths:
        return np.zeros((0, size or 0, size or 0), np.uint8), []
    return np.stack([read_grey(p, size) for p in paths]), paths


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (N, H, W) batch to ``size`` x ``size``."""
    if images.shape[1:] == (size, size):
        return images
    if len(images) == 0:
        return np.zeros((0, size, size), np.uint8)
    interp = cv2.INTER_AREA if images.shape[1] > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(im, (size, size), interpolation=interp) for im in images])


def write_pngs(images: np.ndarray, folder: Path | str, prefix: str = "img") -> list[Path]:
    """Write a uint8 (N, H, W) batch as ``<prefix>_<i:05d>.png`` into ``folder``, atomically."""
    folder = Path(folder)
    with atomic_path(folder, is_dir=True) as tmp:
        for i, img in enumerate(images):
            if not cv2.imwrite(str(tmp / f"{prefix}_{i:05d}.png"), np.ascontiguousarray(img)):
                raise OSError(f"cannot write PNG into {folder}")
    return sorted(folder.glob("*.png"))


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0


def from_unit(images: np.ndarray) -> np.ndarray:
    """float in [0, 1] (any shape) -> uint8, rounded and clipped."""
    return np.clip(np.rint(np.asarray(images, np.float64) * 255.0), 0, 255).astype(np.uint8)
