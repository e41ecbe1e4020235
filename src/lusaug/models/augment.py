"""Ultrasound-appropriate augmentation of grey training batches, as plain tensor ops.

Small geometric changes (rotation, shift, zoom; zooming in acts as a random crop) and a left-right
flip mimic probe placement; gain and contrast mimic the machine's settings; multiplicative
Gaussian noise mimics speckle. No vertical flip or large rotation: depth runs top to bottom in
every frame. All randomness comes from the ``generator`` passed in, so a seeded run is repeatable
and a resumed run draws the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lusaug.core.config import AugmentParams


def _uniform(n: int, amount: float, generator: torch.Generator) -> torch.Tensor:
    """n draws from U(-amount, amount)."""
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * amount


def augment_batch(x: torch.Tensor, cfg: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """Augment a float batch (B, 1, H, W) with values in [0, 1]; returns a new tensor in [0, 1].

    Args:
        x: frames scaled to [0, 1], on the CPU.
        cfg: strengths (0 switches a transform off).
        generator: the source of every random draw.
    """
    b = x.shape[0]
    if b == 0:
        return x
    out = x
    if cfg.hflip > 0:
        flip = torch.rand(b, generator=generator) < cfg.hflip
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    if cfg.degrees > 0 or cfg.translate > 0 or cfg.scale > 0:
        angle = _uniform(b, math.radians(cfg.degrees), generator)
        zoom = 1.0 + _uniform(b, cfg.scale, generator)
        tx = _uniform(b, 2.0 * cfg.translate, generator)  # grid coordinates span [-1, 1]
        ty = _uniform(b, 2.0 * cfg.translate, generator)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1
        ).to(out.dtype)
        grid = F.affine_grid(theta, list(out.shape), align_corners=False)
        # zeros padding: what lies outside an ultrasound sector is black anyway
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.gain > 0:
        out = out * (1.0 + _uniform(b, cfg.gain, generator))[:, None, None, None]
    if cfg.contrast > 0:
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        c = (1.0 + _uniform(b, cfg.contrast, generator))[:, None, None, None]
        out = (out - mean) * c + mean
    if cfg.speckle > 0:
        noise = torch.randn(out.shape, generator=generator, dtype=out.dtype)
        out = out * (1.0 + cfg.speckle * noise)
    return out.clamp_(0.0, 1.0)
