"""Ultrasound-safe views for self-supervised training: geometry, gain, contrast, gamma, speckle.

Stronger than the classifiers' augmentation (a contrastive view must hide the easy cues: exact
brightness, exact position) but still ultrasound: no colour, no vertical flip (depth runs top to
bottom), small rotations. One affine warp does the random crop (zoom in to keep at least
``crop_scale`` of the area, anywhere in the frame), the rotation, the shift and the flip. Every
draw comes from the ``generator`` passed in, so a seeded run is repeatable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lusaug.core.config.features_sections import SslAugmentParams


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _warp(x: torch.Tensor, cfg: SslAugmentParams, generator: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    area = _uniform(b, min(cfg.crop_scale, 1.0), 1.0, generator)
    zoom = 1.0 / torch.sqrt(area)  # > 1 zooms in: the kept window has that share of the area
    slack = 1.0 - 1.0 / zoom  # how far the window can move and stay inside the frame
    tx = _uniform(b, -1.0, 1.0, generator) * (slack + 2.0 * cfg.translate)
    ty = _uniform(b, -1.0, 1.0, generator) * (slack + 2.0 * cfg.translate)
    angle = _uniform(b, -1.0, 1.0, generator) * math.radians(cfg.degrees)
    flip = torch.where(torch.rand(b, generator=generator) < cfg.hflip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # zeros padding: outside an ultrasound sector is black anyway
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def ssl_view(x: torch.Tensor, cfg: SslAugmentParams, generator: torch.Generator) -> torch.Tensor:
    """One random view of a float batch (B, 1, H, W) in [0, 1]; returns a new tensor in [0, 1]."""
    b = x.shape[0]
    if b == 0:
        return x
    out = _warp(x, cfg, generator)
    shape = (b, 1, 1, 1)
    if cfg.gamma > 0:
        g = _uniform(b, 1.0 - cfg.gamma, 1.0 + cfg.gamma, generator).view(shape)
        out = out.clamp(0.0, 1.0) ** g
    if cfg.gain > 0:
        out = out * _uniform(b, 1.0 - cfg.gain, 1.0 + cfg.gain, generator).view(shape)
    if cfg.contrast > 0:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        c = _uniform(b, 1.0 - cfg.contrast, 1.0 + cfg.contrast, generator).view(shape)
        out = (out - mean) * c + mean
    if cfg.speckle > 0:
        noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        out = out * (1.0 + cfg.speckle * noise)
    return out.clamp(0.0, 1.0)
