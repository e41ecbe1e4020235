"""Single measures on constructed features: C2ST at chance and at ceiling, KID, copies."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.core.config.features_sections import default_features
from lusaug.features.estimates import kid, pixel_distances
from lusaug.features.measures import (
    Candidate,
    RealFrames,
    build_context,
    c2st_auroc,
    memorisation,
)

CFG = default_features()


def _real(rng, n_patients=4, frames=30, dims=6):
    """Two classes of Gaussian features with no patient effect (one distribution per class)."""
    feats, labels, patients, clips = [], [], [], []
    for label, centre in (("a", 0.0), ("b", 3.0)):
        for p in range(n_patients):
            feats.append(rng.normal(centre, 1.0, (frames, dims)))
            labels += [label] * frames
            patients += [f"{label}{p}"] * frames
            clips += [f"{label}{p}-clip"] * frames
    images = rng.integers(0, 255, (len(labels), 8, 8), dtype=np.uint8)
    return RealFrames(
        images, np.concatenate(feats), *(np.array(x) for x in (labels, patients, clips))
    )


@pytest.fixture(scope="module")
def ctx():
    rng = np.random.default_rng(0)
    return build_context(_real(rng), _real(rng), "a", CFG.fidelity, CFG.probe)


def _candidate(feats, label="a"):
    images = np.zeros((len(feats), 8, 8), np.uint8)
    return Candidate("x", images, feats, label, frozenset())


def test_c2st_is_at_chance_on_the_same_distribution(ctx):
    rng = np.random.default_rng(1)
    values = [c2st_auroc(_candidate(rng.normal(0.0, 1.0, (60, 6))), ctx) for _ in range(5)]
    assert abs(np.mean(values) - 0.5) < 0.1, values


def test_c2st_is_near_one_for_noise(ctx):
    noise = np.random.default_rng(2).normal(4.0, 1.0, (60, 6))
    assert c2st_auroc(_candidate(noise), ctx) > 0.95


def test_kid_is_near_zero_for_one_distribution_and_large_between_two():
    rng = np.random.default_rng(3)
    same = kid(rng.normal(0, 1, (200, 6)), rng.normal(0, 1, (200, 6)))
    apart = kid(rng.normal(0, 1, (200, 6)), rng.normal(2, 1, (200, 6)))
    assert abs(same) < 0.05 < apart


def test_exact_copies_are_flagged_and_name_their_patient():
    rng = np.random.default_rng(4)
    real = _real(rng)
    # real images with a clip structure: frames of one clip are small perturbations of it
    base = rng.integers(0, 255, (len(set(real.clips)), 8, 8)).astype(float)
    clip_idx = np.unique(real.clips, return_inverse=True)[1]
    real.images = np.clip(base[clip_idx] + rng.normal(0, 8, (len(real.clips), 8, 8)), 0, 255)
    real.images = real.images.astype(np.uint8)
    ctx = build_context(real, real, "a", CFG.fidelity, CFG.probe)
    rows = np.flatnonzero((real.labels == "a") & (real.patients == "a2"))[:5]
    copies = Candidate("copies", real.images[rows], real.feats[rows], "a", frozenset())
    mem = memorisation(copies, ctx)
    assert mem["pixel"] == 1.0 and mem["ssl"] == 1.0
    assert mem["pixel_detail"]["copied_patients"] == {"a2": 5}
    fresh = rng.integers(0, 255, (5, 8, 8), dtype=np.uint8)
    other = Candidate("new", fresh, rng.normal(0, 1, (5, 6)), "a", frozenset())
    assert memorisation(other, ctx)["pixel"] == 0.0
    assert pixel_distances(fresh, fresh).diagonal().max() < 1e-6
