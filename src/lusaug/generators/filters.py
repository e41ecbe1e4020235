"""The study's quality filter: keep a candidate when pixel std and grey-level entropy are high.

Pure functions over arrays and thresholds so that the tuning stage can re-run the filter with
other thresholds without touching any file: :func:`image_stats` once, then
:func:`quality_mask` (or :func:`reject_reasons`) per trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

REASON_STD = "low_std"
REASON_ENTROPY = "low_entropy"
REASON_MEMORISED = "memorised"


def grey_entropy(image: np.ndarray) -> float:
    """Shannon entropy in bits of the 256-bin grey-level histogram of a uint8 image."""
    hist = np.bincount(np.asarray(image, np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def image_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image pixel std (grey levels, population std) and grey entropy (bits).

    Args:
        images: uint8 (N, H, W).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"image_stats expects uint8 images, got {images.dtype}")
    if len(images) == 0:
        return np.zeros(0), np.zeros(0)
    std = images.reshape(len(images), -1).astype(np.float64).std(axis=1)
    entropy = np.array([grey_entropy(im) for im in images])
    return std, entropy


def quality_mask(
    std: np.ndarray, entropy: np.ndarray, min_std: float, min_entropy: float
) -> np.ndarray:
    """True where a candidate passes: std > min_std and entropy > min_entropy (strict)."""
    return (np.asarray(std) > min_std) & (np.asarray(entropy) > min_entropy)


def reject_reasons(
    std: np.ndarray,
    entropy: np.ndarray,
    min_std: float,
    min_entropy: float,
    memorised: np.ndarray | None = None,
) -> list[list[str]]:
    """Every reason each candidate is rejected (empty list = kept)."""
    n = len(std)
    memorised = np.zeros(n, bool) if memorised is None else np.asarray(memorised, bool)
    out = []
    for s, e, m in zip(std, entropy, memorised, strict=True):
        reasons = []
        if not s > min_std:
            reasons.append(REASON_STD)
        if not e > min_entropy:
            reasons.append(REASON_ENTROPY)
        if m:
            reasons.append(REASON_MEMORISED)
        out.append(reasons)
    return out


@dataclass
class FilterOutcome:
    """The filter's verdict on a batch of candidates."""

    std: np.ndarray
    entropy: np.ndarray
    quality_ok: np.ndarray  # passes std + entropy
    memorised: np.ndarray  # flagged near-copy of a training frame
    kept: np.ndarray  # quality_ok & ~memorised
    reasons: list[list[str]]

    def rejected_by_reason(self) -> dict[str, int]:
        """Candidates per reason (one candidate can count under several reasons)."""
        counts = {REASON_STD: 0, REASON_ENTROPY: 0, REASON_MEMORISED: 0}
        for rs in self.reasons:
            for r in rs:
                counts[r] += 1
        return counts


def apply_filter(
    std: np.ndarray,
    entropy: np.ndarray,
    min_std: float,
    min_entropy: float,
    memorised: np.ndarray | None = None,
) -> FilterOutcome:
    """Quality thresholds plus the memorisation flags -> which candidates are kept and why not."""
    n = len(std)
    memorised = np.zeros(n, bool) if memorised is None else np.asarray(memorised, bool)
    ok = quality_mask(std, entropy, min_std, min_entropy)
    return FilterOutcome(
        std=np.asarray(std, float),
        entropy=np.asarray(entropy, float),
        quality_ok=ok,
        memorised=memorised,
        kept=ok & ~memorised,
        reasons=reject_reasons(std, entropy, min_std, min_entropy, memorised),
    )


def kept_files(table: Any, min_std: float, min_entropy: float) -> list[str]:
    """Re-filter a ``data/synthetic/<G>/filter.csv`` table with other thresholds.

    The memorisation verdict does not depend on the thresholds, so it is reused; returns the
    candidate file names (in ``data/synthetic/<G>/candidates/``) that would be kept.
    """
    keep = quality_mask(table["std"], table["entropy"], min_std, min_entropy)
    keep &= ~np.asarray(table["memorised"], bool)
    return [str(f) for f, k in zip(table["file"], keep, strict=True) if k]
