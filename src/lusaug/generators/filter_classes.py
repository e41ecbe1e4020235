"""The other classes of a class-conditional generator: screened like the rare class's candidates.

``synthetic_only-<G>`` trains on G's images of **every** class and on no real frame. The rare
class's candidates go through the whole filter (``filter.py``); each other class's candidates in
``candidates/<class>/`` get the same quality thresholds (the sharpness band from that class's real
training frames) and the same memorisation check against G's training pool, and the kept ones go
to ``kept/<class>/``. A blocked generator keeps nothing of any class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from lusaug.core.config import BaseParams, FilterParams
from lusaug.core.utils import atomic_path
from lusaug.generators import frame_io
from lusaug.generators.filter_candidates import Filtered, FilterInputs
from lusaug.generators.filters import (
    FilterThresholds,
    apply_filter,
    high_frequency_ratio,
    image_stats,
    sharpness_band,
)
from lusaug.generators.memorisation import check_memorisation


def other_classes(candidates_dir: Path | str, classes: list[str], target: str) -> list[str]:
    """The classes besides ``target`` that have a candidates sub-folder (a conditional G's)."""
    return [c for c in classes if c != target and (Path(candidates_dir) / c).is_dir()]


def filter_other_classes(
    candidates_dir: Path | str,
    kept_dir: Path | str,
    splits_csv: Path | str,
    inp: FilterInputs,
    res: Filtered,
    base: BaseParams,
    cfg: FilterParams,
) -> dict[str, dict[str, Any]]:
    """Screen and keep every other class's candidates against the rare class's training pool
    (``inp``) with its verdict (``res``: blocked, the near-copy distance); per class:
    candidates, kept, memorised and the thresholds used. Call after the rare class's ``kept/``
    was written."""
    splits, pool, size = inp.splits, inp.pool, base.image_size
    blocked, copy_distance = res.blocked, res.copy_d
    summary: dict[str, dict[str, Any]] = {}
    for label in other_classes(candidates_dir, base.classes, base.target_class):
        cands, paths = frame_io.load_folder(Path(candidates_dir) / label, size)
        real = frame_io.load_frames(
            frame_io.class_frames(splits, label, "train"), splits_csv, size
        )
        low, high, _ = sharpness_band(high_frequency_ratio(real, cfg.sharpness.cutoff), cfg)
        std, entropy = image_stats(cands)
        stats = {
            "std": std,
            "entropy": entropy,
            "sharpness": high_frequency_ratio(cands, cfg.sharpness.cutoff),
        }
        mem = check_memorisation(cands, pool, cfg.memorisation, copy_distance=copy_distance)
        thresholds = FilterThresholds(cfg.min_std, cfg.min_entropy, low, blocked, high)
        outcome = apply_filter(stats, thresholds, mem.memorised)
        with atomic_path(Path(kept_dir) / label, is_dir=True) as tmp:
            for img, path, keep in zip(cands, paths, outcome.kept, strict=True):
                if keep and not cv2.imwrite(str(tmp / path.name), img):
                    raise OSError(f"cannot write {tmp / path.name}")
        summary[label] = {
            "candidates": len(cands),
            "kept": int(np.sum(outcome.kept)),
            "memorised": int(np.sum(mem.memorised)),
            "thresholds": thresholds.as_dict(),
        }
    return summary
