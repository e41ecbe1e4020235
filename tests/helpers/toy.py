"""A tiny, learnable stand-in for ``data/`` (PNG frames + splits.csv) for tests and benchmarks.

Each class draws a different simple pattern (horizontal A-line bands, vertical B-line streaks, a
bright blob, or streaks plus a blob) under patient-specific gain and speckle, so a small network
learns something in one epoch while patients still differ. Not a substitute for the phantom.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from lusaug.data.manifest import MANIFEST_COLUMNS


def toy_frame(label: int, size: int, rng: np.random.Generator, gain: float) -> np.ndarray:
    """One grey uint8 frame of class ``label`` (0..3)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.25 + 0.05 * rng.standard_normal((size, size))
    if label in (0,):  # regular: horizontal bands
        img += 0.35 * (np.sin(yy * np.pi * 6 + rng.uniform(0, 6)) > 0.6)
    if label in (1, 3):  # covid / viral: vertical streaks
        for x0 in rng.uniform(0.15, 0.85, size=2 if label == 1 else 1):
            img += 0.4 * np.exp(-((xx - x0) ** 2) / 0.002)
    if label in (2, 3):  # pneumonia / viral: a bright blob
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        img += 0.45 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.02)
    img = img * gain * (1.0 + 0.15 * rng.standard_normal((size, size)))
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_toy_dataset(
    root: Path | str,
    classes: list[str],
    size: int = 32,
    patients: dict[str, dict[str, int]] | None = None,
    videos_per_patient: int = 2,
    frames_per_video: int = 4,
    seed: int = 0,
) -> Path:
    """Write ``root/frames/<label>/*.png`` and ``root/splits.csv``; returns the CSV path.

    Args:
        root: folder to write (the CSV's folder; paths in it are relative to it).
        classes: class names (up to 4 patterns; more classes reuse them).
        size: frame side in px.
        patients: split -> class -> number of patients (default 3/2/2 per class, viral 2/1/1).
        videos_per_patient: videos of each patient.
        frames_per_video: frames of each video.
        seed: random seed.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    if patients is None:
        patients = {
            s: {c: (n if i < 3 else max(1, n - 1)) for i, c in enumerate(classes)}
            for s, n in (("train", 3), ("val", 2), ("test", 2))
        }
    rows = []
    for split, per_class in patients.items():
        for k, label in enumerate(classes):
            for p in range(per_class.get(label, 0)):
                patient = f"{split}-{label}-p{p}"
                gain = rng.uniform(0.8, 1.2)
                for v in range(videos_per_patient):
                    video = f"{patient}-v{v}"
                    for f in range(frames_per_video):
                        img = toy_frame(k % 4, size, rng, gain)
                        rel = f"frames/{label}/{video}_{f:05d}.png"
                        (root / rel).parent.mkdir(parents=True, exist_ok=True)
                        Image.fromarray(img).save(root / rel)
                        rows.append(
                            {
                                "path": rel,
                                "label": label,
                                "video_id": video,
                                "patient_id": patient,
                                "probe": "convex",
                                "source": "toy",
                                "license": "CC0",
                                "width": size,
                                "height": size,
                                "sha1": f"{len(rows):040x}",
                                "split": split,
                            }
                        )
    df = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "split"])
    path = root / "splits.csv"
    df.to_csv(path, index=False)
    return path


def write_toy_synthetic(
    folder: Path | str, n: int, size: int, label: int = 3, seed: int = 1
) -> Path:
    """``n`` stand-in synthetic PNGs of pattern ``label`` in ``folder`` (e.g. <G>/kept)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(toy_frame(label, size, rng, 1.0)).save(folder / f"s{i:04d}.png")
    return folder
