"""The filter: the study's std/entropy test, a sharpness test, the memorisation verdict.

The study kept a candidate when its pixel std and grey-level entropy are high. At 64 px that does
not measure quality (it passes 44 % of real viral training frames and 94 % of blurred blobs), so
the filter also asks for real-like detail: the **high-frequency energy ratio** (share of the
spectral energy of the mean-free frame above ``sharpness.cutoff`` of Nyquist) must lie between a
low and a high quantile of the real training frames' ratios. Blurring removes exactly that
energy, so real frames rank above blurred copies of themselves; an under-trained sampler's
pixel noise has more of it than any real frame.

Pure functions over arrays and a small :class:`FilterThresholds`, so the tuning stage re-runs the
filter per trial from ``filter.csv`` alone: :func:`kept_files` is exactly what ``filter@G`` keeps.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lusaug.core.config import FilterParams

REASON_STD = "low_std"
REASON_ENTROPY = "low_entropy"
REASON_MEMORISED = "memorised"
REASON_BLUR = "blurred"
REASON_NOISE = "noisy"
REASON_BLOCKED = "generator_blocked"


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


def high_frequency_ratio(images: np.ndarray, cutoff: float) -> np.ndarray:
    """Per image: spectral energy above ``cutoff`` x Nyquist / all energy of the mean-free frame.

    Args:
        images: uint8 or float (N, H, W).
        cutoff: radial frequency threshold as a share of Nyquist (0..1).
    """
    x = np.asarray(images, np.float64)
    if len(x) == 0:
        return np.zeros(0)
    x = x - x.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[1])[:, None]
    fx = np.fft.fftfreq(x.shape[2])[None, :]
    radius = np.sqrt(fx**2 + fy**2) / 0.5  # 1.0 = Nyquist along an axis
    high = power[:, radius > cutoff].sum(axis=1)
    total = power.reshape(len(x), -1).sum(axis=1)
    return np.divide(high, total, out=np.zeros_like(high), where=total > 0)


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-blurred uint8 copies (the sharpness criterion's negative control)."""
    import cv2

    return (
        np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in images]) if len(images) else images
    )


@dataclass(frozen=True)
class FilterThresholds:
    """Everything :func:`kept_files` needs; Optuna tunes ``min_std`` and ``min_entropy``."""

    min_std: float  # pixel std must be above this
    min_entropy: float  # grey entropy (bits) must be above this
    min_sharpness: float | None  # high-frequency ratio must be >= this (None = not used)
    blocked: bool = False  # the generator memorises: nothing of it is kept
    max_sharpness: float | None = None  # and <= this: more detail than real frames is noise

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_thresholds(metrics_json: Path | str, **override: float) -> FilterThresholds:
    """The thresholds ``filter@G`` used (``metrics/.../synthetic_<G>.json``), some replaced."""
    saved = json.loads(Path(metrics_json).read_text())["thresholds"]
    return FilterThresholds(**{**saved, **override})


def pass_mask(table: Any, thresholds: FilterThresholds) -> np.ndarray:
    """std/entropy (and sharpness when used) pass, from a filter.csv table or dict of arrays."""
    ok = quality_mask(table["std"], table["entropy"], thresholds.min_std, thresholds.min_entropy)
    if thresholds.min_sharpness is not None:
        ok &= np.asarray(table["sharpness"], float) >= thresholds.min_sharpness
    if thresholds.max_sharpness is not None:
        ok &= np.asarray(table["sharpness"], float) <= thresholds.max_sharpness
    return ok


@dataclass
class FilterOutcome:
    """The filter's verdict on a batch of candidates."""

    quality_ok: np.ndarray  # passes std + entropy (+ sharpness when used)
    memorised: np.ndarray  # flagged near-copy of a training frame
    kept: np.ndarray  # quality_ok & ~memorised & not blocked
    reasons: list[list[str]]  # every reason each candidate is rejected ([] = kept)

    def rejected_by_reason(self) -> dict[str, int]:
        """Candidates per reason (one candidate can count under several reasons)."""
        counts = dict.fromkeys(
            (
                REASON_STD,
                REASON_ENTROPY,
                REASON_BLUR,
                REASON_NOISE,
                REASON_MEMORISED,
                REASON_BLOCKED,
            ),
            0,
        )
        for rs in self.reasons:
            for r in rs:
                counts[r] += 1
        return counts


def sharpness_band(
    sharp_real: np.ndarray, cfg: FilterParams
) -> tuple[float | None, float | None, str | None]:
    """(low, high, why skipped) of the sharpness criterion from real training frames' ratios:
    None where the criterion is off or there are too few real frames for a quantile band."""
    if not cfg.use_sharpness:
        return None, None, None
    if len(sharp_real) < cfg.sharpness.min_real_frames:
        return (
            None,
            None,
            (
                f"{len(sharp_real)} real training frames < filter.sharpness.min_real_frames "
                f"{cfg.sharpness.min_real_frames}: too few for a quantile band"
            ),
        )
    high = cfg.sharpness.real_quantile_high
    return (
        float(np.quantile(sharp_real, cfg.sharpness.real_quantile)),
        float(np.quantile(sharp_real, high)) if high < 1.0 else None,
        None,
    )


def apply_filter(
    table: Any, thresholds: FilterThresholds, memorised: np.ndarray | None = None
) -> FilterOutcome:
    """Quality thresholds plus the memorisation flags -> which candidates are kept and why not.

    Args:
        table: per-candidate ``std``, ``entropy`` (and ``sharpness``) arrays or columns.
        thresholds: what must pass; ``blocked`` rejects everything.
        memorised: near-copy flags (None = none).
    """
    std = np.asarray(table["std"], float)
    n = len(std)
    memorised = np.zeros(n, bool) if memorised is None else np.asarray(memorised, bool)
    low_std = ~(std > thresholds.min_std)
    low_ent = ~(np.asarray(table["entropy"], float) > thresholds.min_entropy)
    blur, noise = np.zeros(n, bool), np.zeros(n, bool)
    if thresholds.min_sharpness is not None:
        blur = ~(np.asarray(table["sharpness"], float) >= thresholds.min_sharpness)
    if thresholds.max_sharpness is not None:
        noise = ~(np.asarray(table["sharpness"], float) <= thresholds.max_sharpness)
    flags = [
        (low_std, REASON_STD),
        (low_ent, REASON_ENTROPY),
        (blur, REASON_BLUR),
        (noise, REASON_NOISE),
        (memorised, REASON_MEMORISED),
        (np.full(n, thresholds.blocked), REASON_BLOCKED),
    ]
    reasons = [[name for mask, name in flags if mask[i]] for i in range(n)]
    ok = ~(low_std | low_ent | blur | noise)
    return FilterOutcome(
        quality_ok=ok,
        memorised=memorised,
        kept=ok & ~memorised & (not thresholds.blocked),
        reasons=reasons,
    )


def kept_files(table: Any, thresholds: FilterThresholds) -> list[str]:
    """Re-apply the filter to a ``data/synthetic/.../filter.csv`` table with other thresholds.

    Exactly what ``filter@G`` keeps under ``thresholds``: the quality tests, minus memorised
    candidates (that verdict does not depend on the thresholds), and nothing when the generator
    is blocked. Returns candidate file names (in the ``candidates/`` folder).
    """
    if thresholds.blocked:
        return []
    keep = pass_mask(table, thresholds) & ~np.asarray(table["memorised"], bool)
    return [str(f) for f, k in zip(table["file"], keep, strict=True) if k]
