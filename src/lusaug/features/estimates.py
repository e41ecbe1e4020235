"""Small statistics shared by the probe and the protocol: distances, KID, PRDC, patient resampling.

- :func:`kid`: Binkowski et al.'s KID, the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, on ALL rows (no subsets: the sets here hold at most a few
  thousand frames, and subsets that all share the same few reference frames only fake an
  interval). Intervals come from resampling patients (:func:`patient_draws`), never frames.
- :func:`prdc_scores`: precision / recall / density / coverage from the ``prdc`` package.
- :func:`pixel_distances`: normalised L2 between z-scored images (0 = same picture up to gain and
  offset, about 1.4 = unrelated), as the filter's memorisation check measures it;
  :func:`cosine_distances`: 1 - cosine similarity of feature rows.
- :func:`patient_draws`: row indices of a bootstrap that resamples patients (within each
  stratum when given), so every frame of a drawn patient comes along.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# prdc calls sklearn's pairwise_distances(n_jobs=8) from joblib threads, which warn about
# sklearn's `delayed` on every call; a filter in the caller does not reach those threads.
warnings.filterwarnings(
    "ignore", message=r"`sklearn.utils.parallel.delayed` should be used", category=UserWarning
)


@dataclass(frozen=True)
class Estimate:
    """A value with a percentile interval over patient resamples (None = not assessable)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    draws: int = 0  # resamples that gave a value

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "draws": self.draws}


def percentile_interval(values: list[float], ci: float) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return None, None
    q = (1.0 - ci) / 2.0 * 100.0
    lo, hi = np.percentile(v, [q, 100.0 - q])
    return float(lo), float(hi)


def patient_draws(
    patients: np.ndarray, strata: np.ndarray | None, resamples: int, seed: int
) -> Iterator[np.ndarray]:
    """Yield ``resamples`` arrays of row indices: patients drawn with replacement (per stratum)."""
    patients = np.asarray(patients, str)
    strata = np.zeros(len(patients), str) if strata is None else np.asarray(strata, str)
    rows_of = {p: np.flatnonzero(patients == p) for p in sorted(set(patients))}
    groups = [sorted(set(patients[strata == s])) for s in sorted(set(strata))]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        drawn = [g[i] for g in groups for i in rng.integers(0, len(g), len(g))]
        yield np.concatenate([rows_of[p] for p in drawn])


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``labels`` (sklearn's definition, without its
    per-call validation: the bootstraps call this thousands of times)."""
    labels, pred = np.asarray(labels), np.asarray(pred)
    return float(np.mean([(pred[labels == c] == c).mean() for c in np.unique(labels)]))


def auroc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve from ranks (Mann-Whitney U; ties count half); None without
    both outcomes."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def standardise_images(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) -> float64 (N, D), zero mean and unit std per image (flat -> zeros)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    x = x - x.mean(axis=1, keepdims=True)
    sd = x.std(axis=1, keepdims=True)
    return np.divide(x, sd, out=np.zeros_like(x), where=sd > 0)


def _euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None))


def pixel_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) normalised pixel L2 between z-scored images of equal size."""
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"image sizes differ: {a.shape[1:]} and {b.shape[1:]}")
    za, zb = standardise_images(a), standardise_images(b)
    return _euclidean(za, zb) / np.sqrt(za.shape[1])


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) 1 - cosine similarity of feature rows."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return 1.0 - a @ b.T


def same_clip_nn(distances: np.ndarray, clips: np.ndarray) -> np.ndarray:
    """Each frame's distance to its nearest OTHER frame of its clip (frames alone in a clip
    are left out) from a square distance matrix."""
    d = np.array(distances, float, copy=True)
    np.fill_diagonal(d, np.inf)
    clips = np.asarray(clips, str)
    same = np.where(clips[:, None] == clips[None, :], d, np.inf).min(axis=1)
    return same[np.isfinite(same)]


def kid(x: np.ndarray, y: np.ndarray) -> float | None:
    """Unbiased MMD^2 with the cubic polynomial kernel on all rows (None below 2 rows a side)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return None
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def prdc_scores(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float] | None:
    """Naeem et al.'s PRDC of ``fake`` against ``real`` (None unless both have k + 2 rows: the
    package takes the k-th neighbour among the other rows with a partition at k + 1)."""
    from prdc import compute_prdc

    if len(real) < k + 2 or len(fake) < k + 2:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        out = compute_prdc(np.asarray(real, np.float32), np.asarray(fake, np.float32), k)
    return {name: float(v) for name, v in out.items()}


@dataclass(frozen=True)
class Scaler:
    """Feature standardisation fitted on the fold's training frames."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, feats: np.ndarray) -> Scaler:
        feats = np.asarray(feats, np.float64)
        std = feats.std(axis=0)
        return cls(feats.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return (np.asarray(feats, np.float64) - self.mean) / self.std
