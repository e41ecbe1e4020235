"""Fidelity in a feature space that separates the classes: KID, PRDC, recognition, FID.

The space is the penultimate layer of the fold's real-trained classifier (stage ``encoder``;
ImageNet weights cannot be downloaded here and would judge grey ultrasound poorly anyway). Its
own validation balanced accuracy is reported beside every distance, and the same classifier
gives the **recognition rate**: the share of images it calls the rare class.

- KID (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3`` over random subsets, with the 2.5/97.5 percentiles over subsets.
- PRDC (Naeem et al. 2020, k nearest neighbours): precision = share of fakes inside the real
  manifold (the union of real k-NN balls), recall = share of reals inside the fake manifold,
  density = mean count of real balls holding a fake / k, coverage = share of real balls holding
  a fake. Intervals: per-sample indicators bootstrapped (the manifolds held fixed).
- FID: Frechet distance of Gaussian fits; biased upwards at small n (Chong & Forsyth 2020).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lusaug.core.config import FilterParams
from lusaug.models.classifier import ClassifierMeta, load_classifier
from lusaug.models.frame_sets import to_input
from lusaug.models.run_files import FILES

FEATURE_BATCH = 256  # frames per forward pass of the feature extractor
ENCODER_CHECKPOINT = FILES["checkpoint"]  # the classifier's weights inside the encoder folder


class FeatureSpace:
    """The fold's classifier as a feature extractor and a recogniser (eval mode, CPU)."""

    def __init__(self, model: torch.nn.Module, meta: ClassifierMeta):
        self.model = model.eval()
        self.meta = meta

    @classmethod
    def load(cls, checkpoint: Path | str) -> FeatureSpace:
        model, meta = load_classifier(checkpoint)
        return cls(model, meta)

    @classmethod
    def from_encoder(cls, encoder_dir: Path | str) -> FeatureSpace:
        """The space of an ``encoder@k`` stage's folder."""
        return cls.load(Path(encoder_dir) / ENCODER_CHECKPOINT)

    @torch.no_grad()
    def _run(self, images: np.ndarray, pre_logits: bool) -> np.ndarray:
        out = []
        for i in range(0, len(images), FEATURE_BATCH):
            x = to_input(
                torch.from_numpy(np.ascontiguousarray(images[i : i + FEATURE_BATCH])),
                self.meta.mean,
                self.meta.std,
            ).unsqueeze(1)
            feats = self.model.forward_features(x)
            out.append(self.model.forward_head(feats, pre_logits=pre_logits).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def features(self, images: np.ndarray) -> np.ndarray:
        """Penultimate features (N, F) of uint8 (N, H, W) frames."""
        return self._run(images, pre_logits=True)

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted class index per frame."""
        logits = self._run(images, pre_logits=False)
        return logits.argmax(1) if len(logits) else np.zeros(0, int)


def wilson(successes: int, n: int, ci: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (sensible at 0 and 1 and small n)."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + ci / 2))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def recognition(pred: np.ndarray, target: int, ci: float) -> dict[str, Any]:
    """Share of frames classified as ``target``, with its Wilson interval."""
    n = len(pred)
    hits = int((np.asarray(pred) == target).sum())
    lo, hi = wilson(hits, n, ci)
    return {"rate": hits / n if n else None, "low": lo, "high": hi, "n": n}


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(sq, 0.0, None))


def _radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row to its k-th nearest other row."""
    d = _pairwise(x, x)
    return np.sort(d, axis=1)[:, k]  # column 0 is the row itself


def prdc_indicators(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-sample PRDC terms: fakes' precision and density counts, reals' recall and coverage."""
    real = np.asarray(real, np.float64)
    fake = np.asarray(fake, np.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real and fake samples")
    r_real, r_fake = _radii(real, k), _radii(fake, k)
    d = _pairwise(real, fake)  # (R, F)
    inside = d < r_real[:, None]
    return {
        "precision": inside.any(axis=0).astype(float),
        "density": inside.sum(axis=0) / k,
        "recall": (d < r_fake[None, :]).any(axis=1).astype(float),
        "coverage": (d.min(axis=1) < r_real).astype(float),
    }


def prdc(
    real: np.ndarray, fake: np.ndarray, k: int, bootstrap: int = 0, ci: float = 0.95, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Precision, recall, density, coverage of ``fake`` against ``real`` with intervals."""
    terms = prdc_indicators(real, fake, k)
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in terms.items():
        entry = {"value": float(v.mean()), "low": float("nan"), "high": float("nan")}
        if bootstrap > 0:
            means = v[rng.integers(0, len(v), (bootstrap, len(v)))].mean(axis=1)
            q = (1 - ci) / 2 * 100
            entry["low"], entry["high"] = (float(x) for x in np.percentile(means, [q, 100 - q]))
        out[name] = entry
    return out


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


@dataclass
class KidResult:
    mean: float
    std: float
    low: float  # 2.5th percentile over subsets
    high: float  # 97.5th percentile over subsets
    subsets: int
    subset_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def kid(
    feats_a: np.ndarray,
    feats_b: np.ndarray,
    subsets: int,
    subset_size: int,
    seed: int = 0,
) -> KidResult:
    """KID between two feature sets: unbiased polynomial-kernel MMD^2 over random subsets.

    ``subset_size`` is capped by the smaller set; both sets need at least 2 rows.
    """
    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    size = min(subset_size, len(a), len(b))
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    vals = np.array(
        [
            _poly_mmd2_unbiased(
                a[rng.choice(len(a), size, replace=False)],
                b[rng.choice(len(b), size, replace=False)],
            )
            for _ in range(max(1, subsets))
        ]
    )
    return KidResult(
        mean=float(vals.mean()),
        std=float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
        low=float(np.percentile(vals, 2.5)),
        high=float(np.percentile(vals, 97.5)),
        subsets=len(vals),
        subset_size=size,
    )


def fid(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two feature sets (needs >= 2 rows each)."""
    from scipy import linalg

    a = np.asarray(feats_a, np.float64)
    b = np.asarray(feats_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"FID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # singular at small n: expected, see fid_caveat
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean, _ = linalg.sqrtm(ca @ cb, disp=False)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(ca)) * 1e-6
        covmean = linalg.sqrtm((ca + eps) @ (cb + eps))
    covmean = np.real(covmean)
    mean_term = float(((mu_a - mu_b) ** 2).sum())
    return mean_term + float(np.trace(ca) + np.trace(cb) - 2.0 * np.trace(covmean))


def fid_caveat(n_a: int, n_b: int, dims: int) -> str:
    """The small-sample note stored next to every FID."""
    n = min(n_a, n_b)
    rank = "rank-deficient" if n <= dims else "full-rank"
    return (
        f"FID from {n_a} vs {n_b} samples in a {dims}-d domain-encoder space ({rank} covariance): "
        "biased upwards at small n (Chong & Forsyth 2020), comparable only between generators "
        "scored with the same encoder and sample sizes; prefer KID"
    )


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or b is None or b == 0 else float(a / b)


def _kid(a: np.ndarray, b: np.ndarray, cfg: FilterParams, seed: int) -> dict | None:
    if len(a) < 2 or len(b) < 2:
        return None
    return kid(a, b, cfg.kid_subsets, cfg.kid_subset_size, seed).as_dict()


def _prdc(real: np.ndarray, fake: np.ndarray, cfg: FilterParams, seed: int) -> dict | None:
    if len(real) <= cfg.prdc_k or len(fake) <= cfg.prdc_k:
        return None
    return prdc(real, fake, cfg.prdc_k, cfg.bootstrap, cfg.ci, seed)


def fidelity_report(feats: dict[str, np.ndarray], cfg: FilterParams, seed: int) -> dict[str, Any]:
    """KID, PRDC and FID of kept samples vs real val frames, beside real train vs real val.

    Args:
        feats: features of ``kept``, ``cands`` (all candidates), ``train`` and ``val`` (real
            frames of the rare class).
        cfg: the ``filter`` section (KID subsets, PRDC k, bootstrap, interval level).
        seed: seeds the KID subsets and the bootstrap.
    """
    kid_kept = _kid(feats["kept"], feats["val"], cfg, seed)
    kid_ref = _kid(feats["train"], feats["val"], cfg, seed)
    prdc_kept = _prdc(feats["val"], feats["kept"], cfg, seed)
    prdc_ref = _prdc(feats["val"], feats["train"], cfg, seed)
    out: dict[str, Any] = {
        "kid": kid_kept,
        "kid_real_reference": kid_ref,
        "kid_within_reference": None
        if kid_kept is None or kid_ref is None
        else bool(kid_kept["mean"] <= kid_ref["high"]),
        "kid_all_candidates": _kid(feats["cands"], feats["val"], cfg, seed),
        "prdc": prdc_kept,
        "prdc_real_reference": prdc_ref,
        "prdc_note": f"k={cfg.prdc_k}; fakes (or real training frames) against the real "
        "validation frames of the class",
    }
    if prdc_kept and prdc_ref:
        out["precision_ratio"] = ratio(
            prdc_kept["precision"]["value"], prdc_ref["precision"]["value"]
        )
    n_kept, n_val = len(feats["kept"]), len(feats["val"])
    if n_kept >= 2 and n_val >= 2:
        out["fid"] = float(fid(feats["kept"], feats["val"]))
        out["fid_caveat"] = fid_caveat(n_kept, n_val, feats["val"].shape[1])
    return out
