"""The self-supervised encoder: a timm backbone (in_chans=1, from scratch) and its checkpoint.

:class:`SslNet` is the backbone plus a lightly projection head (used only by the loss).
:class:`SslEncoder` is what everything downstream uses: the frozen backbone as a feature
extractor, ``features(uint8 (N, H, W)) -> float32 (N, F)`` (global-pooled backbone output, the
space of the probe and of every fidelity measure). ``encoder.pt`` holds the backbone's weights
and :class:`EncoderMeta` (timm name and kwargs, resolution, normalisation, method, the training
patients), loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lusaug.core.config.features_sections import SslParams
from lusaug.core.utils import atomic_path

# Grey-level normalisation of frames in [0, 1]: the classifiers' fixed values (models/classifier),
# so an encoder-initialised classifier sees the inputs it was trained on.
INPUT_MEAN = 0.5
INPUT_STD = 0.25
FEATURE_BATCH = 256  # frames per forward pass when extracting features


@dataclass
class EncoderMeta:
    model: str  # timm model name
    kwargs: dict[str, Any]  # its extra kwargs
    resolution: int  # px the backbone sees
    num_features: int  # feature dimension
    method: str  # simclr | dcl | vicreg
    mean: float = INPUT_MEAN
    std: float = INPUT_STD
    extra: dict[str, Any] = field(default_factory=dict)  # epochs, seed, training patients, ...


def build_backbone(model: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """A timm model from scratch with one input channel and no classifier (never downloads)."""
    import timm

    return timm.create_model(model, pretrained=False, in_chans=1, num_classes=0, **kwargs)


def build_head(method: str, num_features: int, cfg: SslParams) -> torch.nn.Module:
    from lightly.models.modules.heads import SimCLRProjectionHead, VICRegProjectionHead

    if method == "vicreg":
        return VICRegProjectionHead(num_features, cfg.hidden_dim, cfg.projection_dim)
    return SimCLRProjectionHead(num_features, cfg.hidden_dim, cfg.projection_dim)


class SslNet(torch.nn.Module):
    """Backbone + projection head; ``forward`` returns the projection the loss compares."""

    def __init__(self, cfg: SslParams) -> None:
        super().__init__()
        self.backbone = build_backbone(cfg.model, cfg.kwargs)
        self.head = build_head(cfg.method, self.backbone.num_features, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def to_input(images: torch.Tensor, resolution: int, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, H, W) or float [0, 1] (B, 1, H, W) -> normalised float (B, 1, r, r)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="area")
    return (x - mean) / std


class SslEncoder:
    """The frozen backbone as a feature extractor (eval mode, CPU)."""

    def __init__(self, backbone: torch.nn.Module, meta: EncoderMeta) -> None:
        self.backbone = backbone.eval()
        self.meta = meta

    @torch.no_grad()
    def features(self, images: np.ndarray) -> np.ndarray:
        """Features (N, F) of uint8 frames (N, H, W)."""
        out = [np.zeros((0, self.meta.num_features), np.float32)]
        for i in range(0, len(images), FEATURE_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(images[i : i + FEATURE_BATCH]))
            x = to_input(batch, self.meta.resolution, self.meta.mean, self.meta.std)
            out.append(self.backbone(x).float().numpy())
        return np.concatenate(out)

    __call__ = features

    def save(self, path: Path | str) -> None:
        payload = {"state_dict": self.backbone.state_dict(), "meta": asdict(self.meta)}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(cls, path: Path | str) -> SslEncoder:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        meta = EncoderMeta(**ckpt["meta"])
        backbone = build_backbone(meta.model, meta.kwargs)
        backbone.load_state_dict(ckpt["state_dict"])
        return cls(backbone, meta)
