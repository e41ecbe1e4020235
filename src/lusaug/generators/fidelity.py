"""KID and FID in a domain feature space, and the small encoder that defines that space.

ImageNet Inception weights cannot be downloaded here, and would be a poor judge of grey
ultrasound anyway, so the pipeline trains its own encoder (stage ``encoder``): a small CNN
classifier on the real TRAINING frames of all classes; its penultimate (pooled) features are the
space where KID, FID and the feature-space memorisation check are computed. One encoder serves
every generator, so their scores are comparable with each other (not with published FIDs).

KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets; reported with its std and the
2.5/97.5 percentiles over subsets. FID is the Frechet distance of Gaussian fits; with fewer
samples than feature dimensions the covariance is rank-deficient and FID is biased upwards
(Chong & Forsyth 2020), which the metrics JSON says next to the number.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from lusaug.config import EncoderParams
from lusaug.utils import atomic_path

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
# Frames in [0, 1] are normalised as (x - mean) / std before the encoder (same as the classifiers).
_MEAN, _STD = 0.5, 0.25


class DomainEncoder(nn.Module):
    """Conv-BN-ReLU blocks (2x down-sampling between them), global average pool, linear head."""

    def __init__(self, num_classes: int, width: int, blocks: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i in range(blocks):
            c_out = width * 2**i
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
            if i < blocks - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.body = nn.Sequential(*layers)
        self.num_features = c_in
        self.head = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, num_features)."""
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class EncoderMeta:
    classes: list[str]
    image_size: int
    width: int
    blocks: int
    num_features: int
    train_accuracy: float
    val_accuracy: float | None
    val_balanced_accuracy: float | None
    epochs: int
    seconds: float


def _to_input(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(images, np.float32) / 255.0).unsqueeze(1)
    return (x - _MEAN) / _STD


def _accuracy(model: DomainEncoder, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    if len(images) == 0:
        return float("nan"), float("nan")
    pred = predict_classes(model, images)
    acc = float((pred == labels).mean())
    recalls = [float((pred[labels == c] == c).mean()) for c in np.unique(labels)]
    return acc, float(np.mean(recalls))


def train_encoder(
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    cfg: EncoderParams,
    seed: int,
    val_images: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[DomainEncoder, EncoderMeta]:
    """Train the domain encoder on uint8 (N, H, W) frames with class indices ``labels``."""
    if len(images) == 0:
        raise ValueError("the encoder needs training frames")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DomainEncoder(len(classes), cfg.width, cfg.blocks)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    y = torch.as_tensor(labels, dtype=torch.long)
    weight = None
    if cfg.balanced:
        counts = torch.bincount(y, minlength=len(classes)).float()
        inv = counts.sum() / counts.clamp(min=1)
        weight = torch.where(counts > 0, inv, torch.zeros_like(counts))
        weight = weight / weight[counts > 0].mean()
    lossf = nn.CrossEntropyLoss(weight=weight)
    x = _to_input(images)
    steps = max(1, -(-len(x) // cfg.batch_size))
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(total=cfg.epochs * steps, desc="encoder", disable=not progress)
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(steps):
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5  # ultrasound is left-right symmetric
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = lossf(model(xb), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    model.eval()
    train_acc, _ = _accuracy(model, images, np.asarray(labels))
    val_acc = val_bal = None
    if val_images is not None and val_labels is not None and len(val_images):
        val_acc, val_bal = _accuracy(model, val_images, np.asarray(val_labels))
    meta = EncoderMeta(
        classes=list(classes),
        image_size=int(images.shape[1]),
        width=cfg.width,
        blocks=cfg.blocks,
        num_features=model.num_features,
        train_accuracy=train_acc,
        val_accuracy=val_acc,
        val_balanced_accuracy=val_bal,
        epochs=cfg.epochs,
        seconds=time.perf_counter() - t0,
    )
    return model, meta


def save_encoder(folder: Path | str, model: DomainEncoder, meta: EncoderMeta) -> Path:
    """Write ``<folder>/encoder.pt`` (tensors + plain meta: loads with weights_only=True)."""
    path = Path(folder) / ENCODER_FILE
    with atomic_path(path) as tmp:
        torch.save({"state_dict": model.state_dict(), "meta": asdict(meta)}, tmp)
    return path


def load_encoder(folder: Path | str) -> tuple[DomainEncoder, EncoderMeta]:
    path = Path(folder) / ENCODER_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro encoder` first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    meta = EncoderMeta(**ckpt["meta"])
    model = DomainEncoder(len(meta.classes), meta.width, meta.blocks)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, meta


@torch.no_grad()
def extract_features(
    model: DomainEncoder, images: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Penultimate features (N, F) of uint8 (N, H, W) frames."""
    model.eval()
    if len(images) == 0:
        return np.zeros((0, model.num_features), np.float32)
    out = [
        model.features(_to_input(images[i : i + batch_size])).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


@torch.no_grad()
def predict_classes(model: DomainEncoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    out = [
        model(_to_input(images[i : i + batch_size])).argmax(1).numpy()
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


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
