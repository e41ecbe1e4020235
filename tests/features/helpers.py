"""Constructed folds for the feature-space tests: tiny grey frames with class signs, patient
nuisance and frame noise, filed as a split table (path, label, video_id, patient_id, split)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lusaug.features.frame_table import FrameTable

CLASSES = ["regular", "covid", "pneumonia", "viral"]
RARE = "viral"
# patients per class in (train, val): the rare class has few, like POCUS
PATIENTS = {"regular": (6, 3), "covid": (5, 3), "pneumonia": (5, 3), "viral": (2, 1)}


@dataclass
class ToySpec:
    size: int = 24
    frames_per_clip: int = 8
    seed: int = 0


def _clip(label: str, rng: np.random.Generator, patient: dict, spec: ToySpec) -> np.ndarray:
    """A clip: one anatomy with class signs, then small per-frame motion and speckle."""
    s = spec.size
    base = np.full((s, s), 20.0)
    y = patient["pleura"]
    base[y : y + 2, 2 : s - 2] = 200.0  # the pleural line
    below = slice(y + 2, s)
    shift = int(rng.integers(-2, 3))
    if label == "regular":  # A-lines: horizontal repeats of the pleura
        for k in (2, 3):
            base[min(y + k * 4, s - 1), 2 : s - 2] = 130.0
    elif label == "covid":  # two bright B-lines
        for col in (s // 3 + shift, 2 * s // 3 + shift):
            base[below, col] = 230.0
    elif label == "pneumonia":  # a bright consolidation block
        base[y + 4 : y + 12, s // 4 + shift : 3 * s // 4 + shift] = 150.0
    else:  # viral: many faint B-lines and a broken pleura
        for col in range(3, s - 2, 3):
            base[below, col] = 170.0
        base[y : y + 2, s // 2 - 2 : s // 2 + 2] = 40.0
    texture = rng.gamma(16.0, 1.0 / 16.0, size=(s, s))  # the clip's own speckle pattern
    frames = []
    for _ in range(spec.frames_per_clip):
        moved = np.roll(base * texture, int(rng.integers(-1, 2)), axis=1)
        jitter = rng.gamma(16.0, 1.0 / 16.0, size=(s, s))  # small frame-to-frame speckle change
        frames.append(np.clip(moved * patient["gain"] * jitter, 0, 255).astype(np.uint8))
    return np.stack(frames)


def toy_fold(spec: ToySpec | None = None) -> tuple[FrameTable, FrameTable]:
    """(training frames, validation frames) of a constructed fold."""
    spec = spec or ToySpec()
    rng = np.random.default_rng(spec.seed)
    images, rows = [], []
    for label in CLASSES:
        n_train, n_val = PATIENTS[label]
        for i in range(n_train + n_val):
            pid = f"{label}-p{i}"
            split = "train" if i < n_train else "val"
            patient = {"pleura": 4, "gain": float(rng.uniform(0.9, 1.1))}
            for clip in range(1 + i % 2):
                vid = f"{pid}-c{clip}"
                for f, img in enumerate(_clip(label, rng, patient, spec)):
                    images.append(img)
                    rows.append(
                        {
                            "path": f"{vid}_{f}.png",
                            "label": label,
                            "video_id": vid,
                            "patient_id": pid,
                            "split": split,
                        }
                    )
    table = FrameTable(np.stack(images), pd.DataFrame(rows))
    return table.split("train"), table.split("val")


def block_features(images: np.ndarray) -> np.ndarray:
    """A cheap fixed extractor: 4 x 4 block means and gradient energies, and the frame's std."""
    x = np.asarray(images, np.float64) / 255.0
    n, s, _ = x.shape
    b = s // 4
    blocks = x[:, : 4 * b, : 4 * b].reshape(n, 4, b, 4, b)
    means = blocks.mean(axis=(2, 4)).reshape(n, -1)
    gx = np.abs(np.diff(x, axis=2))[:, : 4 * b, : 4 * b - 1]
    gy = np.abs(np.diff(x, axis=1))[:, : 4 * b - 1, : 4 * b]
    gxb = gx[:, :, : 4 * (gx.shape[2] // 4)].reshape(n, 4, b, 4, -1).mean(axis=(2, 4))
    gyb = gy[:, : 4 * (gy.shape[1] // 4)].reshape(n, 4, -1, 4, b).mean(axis=(2, 4))
    return np.concatenate(
        [means, gxb.reshape(n, -1), gyb.reshape(n, -1), x.std(axis=(1, 2))[:, None]], 1
    )
