"""Augmentation: in range, repeatable from its generator, a no-op when switched off."""

from __future__ import annotations

import dataclasses

import torch

from lusaug.core.config import AugmentParams
from lusaug.models.augment import augment_batch

OFF = AugmentParams(hflip=0, degrees=0, translate=0, scale=0, gain=0, contrast=0, speckle=0)


def _batch() -> torch.Tensor:
    return torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def test_switched_off_is_identity():
    x = _batch()
    assert torch.equal(augment_batch(x, OFF, torch.Generator().manual_seed(1)), x)


def test_each_transform_changes_the_batch_and_stays_in_range(params):
    x = _batch()
    for name in ("hflip", "degrees", "translate", "scale", "gain", "contrast", "speckle"):
        value = getattr(params.train.augment, name) or 0.5
        cfg = dataclasses.replace(OFF, **{name: 1.0 if name == "hflip" else value})
        y = augment_batch(x, cfg, torch.Generator().manual_seed(1))
        assert y.shape == x.shape and not torch.equal(y, x), name
        assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0, name


def test_flip_is_exact_and_seeded(params):
    x = _batch()
    flipped = augment_batch(x, dataclasses.replace(OFF, hflip=1.0), torch.Generator())
    assert torch.equal(flipped, x.flip(-1))
    cfg = params.train.augment
    a = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    c = augment_batch(x, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
