"""Is a synthetic frame a near-copy of a training frame?

Two distances from each candidate to the generator's training frames:

- **pixel**: normalised L2 between z-scored images, ``||z_a - z_b|| / sqrt(D)`` (= sqrt(2(1 - r))
  with r the Pearson correlation; 0 = same picture up to gain/offset, about 1.4 = unrelated);
- **feature**: cosine similarity of domain-encoder features (fidelity.py).

A candidate is flagged when any of these holds:

1. Carlini et al. (2023, Def. 1 with their CIFAR-10 distance; when ``relative``): ``d_nn <
   alpha * mean(d to the n nearest training frames)``, i.e. much closer to one training frame
   than to the rest. It assumes a diverse pool; a pool of two clips sampled at 3 Hz makes any
   sample that resembles one patient more than the other look like a copy;
2. ``d_nn <= max(max_pixel_distance, copy_distance)``, where ``copy_distance`` is calibrated on
   real data (:func:`video_copy_distance`): the ``video_quantile`` quantile of the distance from
   each real training frame to its nearest neighbour in the SAME clip. A sample that close to a
   training frame is as close as consecutive frames of one real clip are: a copy;
3. ``1 - cos_nn <= max_feature_distance`` when that is > 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lusaug.core.config import MemorisationParams


def standardise(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float64 (N, D) with zero mean and unit std per image (flat -> zeros)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


def pixel_distances(candidates: np.ndarray, train: np.ndarray) -> np.ndarray:
    """(Nc, Nt) normalised pixel L2 between z-scored images of equal size."""
    if candidates.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"candidates {candidates.shape[1:]} and training frames {train.shape[1:]} "
            "differ in size"
        )
    a, b = standardise(candidates), standardise(train)
    d = a.shape[1]
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None) / d)


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) cosine similarity of feature rows."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.maximum(na, 1e-12)) @ (b / np.maximum(nb, 1e-12)).T


def video_copy_distance(
    images: np.ndarray, video_ids: np.ndarray | list[str], quantile: float
) -> float | None:
    """Quantile of each frame's distance to its nearest other frame of the same clip (or None)."""
    if quantile <= 0 or len(images) < 2:
        return None
    d = pixel_distances(images, images)
    np.fill_diagonal(d, np.inf)
    v = np.asarray(video_ids)
    same = np.where(v[:, None] == v[None, :], d, np.inf).min(axis=1)
    same = same[np.isfinite(same)]
    return float(np.quantile(same, quantile)) if len(same) else None


@dataclass
class MemorisationResult:
    """Per-candidate nearest training frames and the near-copy verdict."""

    nn_index: np.ndarray  # nearest training frame by pixel distance
    nn_distance: np.ndarray  # its normalised pixel L2
    ratio: np.ndarray  # d_nn / (alpha * mean d to the n nearest): < 1 = Carlini near-copy
    feature_nn_index: np.ndarray  # nearest training frame by feature cosine (-1 = no features)
    feature_cosine: np.ndarray  # its cosine similarity (nan = no features)
    flag_relative: np.ndarray
    flag_pixel: np.ndarray
    flag_feature: np.ndarray
    memorised: np.ndarray  # any flag

    @property
    def rate(self) -> float:
        """Share of candidates flagged (0 when there are none)."""
        return float(self.memorised.mean()) if len(self.memorised) else 0.0

    def counts(self) -> dict[str, int]:
        return {
            "relative": int(self.flag_relative.sum()),
            "pixel_absolute": int(self.flag_pixel.sum()),
            "feature_absolute": int(self.flag_feature.sum()),
            "any": int(self.memorised.sum()),
        }


def check_memorisation(
    candidates: np.ndarray,
    train: np.ndarray,
    cfg: MemorisationParams,
    candidate_features: np.ndarray | None = None,
    train_features: np.ndarray | None = None,
    copy_distance: float | None = None,
) -> MemorisationResult:
    """Flag candidates that are near-copies of a training frame (see the module docstring).

    Args:
        candidates: uint8 (Nc, H, W).
        train: uint8 (Nt, H, W), the frames the generator was trained on (same size).
        cfg: the ``filter.memorisation`` section.
        candidate_features, train_features: optional encoder features (Nc, F) / (Nt, F).
        copy_distance: the real same-clip neighbour distance (:func:`video_copy_distance`).
    """
    nc = len(candidates)
    if len(train) == 0:
        raise ValueError("memorisation check needs at least one training frame")
    if nc == 0:
        empty_i, empty_f, empty_b = np.zeros(0, int), np.zeros(0), np.zeros(0, bool)
        return MemorisationResult(
            empty_i, empty_f, empty_f, empty_i, empty_f, empty_b, empty_b, empty_b, empty_b
        )
    d = pixel_distances(candidates, train)
    order = np.argsort(d, axis=1, kind="stable")
    nn = order[:, 0]
    d_nn = d[np.arange(nc), nn]
    k = max(1, min(cfg.n_neighbours, d.shape[1]))
    mean_k = np.take_along_axis(d, order[:, :k], axis=1).mean(axis=1)
    ratio = np.divide(d_nn, cfg.alpha * mean_k, out=np.zeros_like(d_nn), where=mean_k > 0)
    flag_rel = (ratio < 1.0) if cfg.relative else np.zeros(nc, bool)
    flag_pix = d_nn <= max(cfg.max_pixel_distance, copy_distance or 0.0)
    if candidate_features is not None and train_features is not None:
        cos = cosine_similarities(candidate_features, train_features)
        f_nn = cos.argmax(axis=1)
        f_cos = cos[np.arange(nc), f_nn]
        flag_feat = (
            (1.0 - f_cos) <= cfg.max_feature_distance
            if cfg.max_feature_distance > 0
            else np.zeros(nc, bool)
        )
    else:
        f_nn, f_cos, flag_feat = np.full(nc, -1), np.full(nc, np.nan), np.zeros(nc, bool)
    return MemorisationResult(
        nn_index=nn,
        nn_distance=d_nn,
        ratio=ratio,
        feature_nn_index=f_nn,
        feature_cosine=f_cos,
        flag_relative=flag_rel,
        flag_pixel=flag_pix,
        flag_feature=flag_feat,
        memorised=flag_rel | flag_pix | flag_feat,
    )
