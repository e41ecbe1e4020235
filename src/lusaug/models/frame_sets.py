"""Frames in memory for training and evaluation: the splits manifest, PNGs, synthetic sets.

Frames are small (64 px grey), so a whole split is read once into a uint8 tensor; batches are
converted to float, augmented and normalised in the training loop, which keeps every random draw
in one process and makes CPU runs repeatable whatever ``num_workers`` is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from lusaug.core.errors import LusaugError
from lusaug.data.manifest import SPLITS, frame_path, read_manifest

logger = logging.getLogger(__name__)

SYNTHETIC_PATIENT = "synthetic"  # patient/video id of synthetic frames (never in val/test)


class DataError(LusaugError, ValueError):
    """Raised when the frames or a strategy's extra input are missing or unusable."""


@dataclass
class FrameSet:
    """One split in memory: images (N, 1, H, W) uint8, labels (N,) int64 and row metadata."""

    images: torch.Tensor
    labels: torch.Tensor
    frames: pd.DataFrame  # path, label, video_id, patient_id (one row per image, same order)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self, n_classes: int) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=n_classes)


def read_png(path: Path, size: int) -> np.ndarray:
    """A grey uint8 square of side ``size`` (converted and resized when the file differs)."""
    try:
        with Image.open(path) as img:
            img = img.convert("L")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read frame {path}: {exc}") from exc


def _stack(paths: list[Path], size: int) -> torch.Tensor:
    arr = np.zeros((len(paths), 1, size, size), dtype=np.uint8)
    for i, p in enumerate(paths):
        arr[i, 0] = read_png(p, size)
    return torch.from_numpy(arr)


def load_split(splits_csv: Path | str, split: str, classes: list[str], size: int) -> FrameSet:
    """Read the frames of one split (``train``/``val``/``test``) named by ``data/splits.csv``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    df = read_manifest(splits_csv)
    if "split" not in df.columns:
        raise DataError(f"{splits_csv} has no 'split' column: run `dvc repro split`")
    df = df[df["split"] == split].reset_index(drop=True)
    if df.empty:
        raise DataError(f"{splits_csv} has no {split!r} frames: run `dvc repro split`")
    unknown = sorted(set(df["label"]) - set(classes))
    if unknown:
        raise DataError(f"{splits_csv}: labels {unknown} are not in base.classes {classes}")
    index = {c: i for i, c in enumerate(classes)}
    paths = [frame_path(splits_csv, rel) for rel in df["path"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DataError(
            f"{len(missing)} frame(s) listed in {splits_csv} are missing, e.g. {missing[0]}: "
            "run `dvc repro frames` (or `dvc pull`)"
        )
    images = _stack(paths, size)
    labels = torch.tensor([index[c] for c in df["label"]], dtype=torch.int64)
    meta = df[["path", "label", "video_id", "patient_id"]].copy()
    return FrameSet(images=images, labels=labels, frames=meta)


def synthetic_subset(files: list[Path], count: int, seed: int, source: str) -> list[Path]:
    """The synthetic files a run uses: up to ``count`` of ``files`` (0 = all), fixed for ``seed``."""
    if 0 < count < len(files):
        rng = np.random.default_rng(seed)
        return [files[i] for i in sorted(rng.choice(len(files), size=count, replace=False))]
    if count > len(files):
        logger.warning(
            "train.synthetic_per_class=%d but %s has only %d images: using all of them",
            count,
            source,
            len(files),
        )
    return list(files)


def load_synthetic(
    files: list[Path], label: int, label_name: str, size: int, count: int, seed: int, source: str
) -> FrameSet:
    """Up to ``count`` of the synthetic PNGs ``files`` (0 = all), a fixed subset for ``seed``
    (:func:`synthetic_subset`).

    Their patient and video id is ``synthetic-<source>``: never a real patient, never in val/test.
    """
    files = synthetic_subset(files, count, seed, source)
    images = _stack(list(files), size)
    labels = torch.full((len(files),), label, dtype=torch.int64)
    meta = pd.DataFrame(
        {
            "path": [str(p) for p in files],
            "label": label_name,
            "video_id": f"{SYNTHETIC_PATIENT}-{source}",
            "patient_id": f"{SYNTHETIC_PATIENT}-{source}",
        }
    )
    return FrameSet(images=images, labels=labels, frames=meta)


def without_label(frames: FrameSet, label: int) -> FrameSet:
    """The frames of every class but ``label`` (synthetic_replace drops the real rare class)."""
    keep = (frames.labels != label).numpy()
    return FrameSet(
        images=frames.images[keep],
        labels=frames.labels[keep],
        frames=frames.frames[keep].reset_index(drop=True),
    )


def take(frames: FrameSet, index: np.ndarray) -> FrameSet:
    """The frames at ``index`` (in that order; an index may repeat)."""
    idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
    return FrameSet(
        images=frames.images[idx],
        labels=frames.labels[idx],
        frames=frames.frames.iloc[np.asarray(index)].reset_index(drop=True),
    )


def concat(a: FrameSet, b: FrameSet) -> FrameSet:
    return FrameSet(
        images=torch.cat([a.images, b.images]),
        labels=torch.cat([a.labels, b.labels]),
        frames=pd.concat([a.frames, b.frames], ignore_index=True),
    )


class IndexedFrames(torch.utils.data.Dataset):
    """(uint8 image, label) pairs of a :class:`FrameSet` for a DataLoader."""

    def __init__(self, frames: FrameSet) -> None:
        self.images = frames.images
        self.labels = frames.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


def to_input(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (or [0, 1] float) frames -> the network's normalised float input."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    return (x - mean) / std


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module, images: torch.Tensor, mean: float, std: float, batch_size: int
) -> np.ndarray:
    """Softmax probabilities (N, K) for uint8 frames, in batches, on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_input(images[start : start + batch_size], mean, std).to(device)
        out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)
