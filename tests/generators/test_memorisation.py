"""The near-copy check: exact and noised copies are flagged, a different frame passes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lusaug.generators.memorisation import (
    check_memorisation,
    pixel_distances,
    video_copy_distance,
)
from tests.generators.helpers import synth_frame


@pytest.fixture()
def cfg(micro_params):
    return micro_params.filter.memorisation


@pytest.fixture()
def pool_and_candidates(viral_frames):
    rng = np.random.default_rng(5)
    pool = viral_frames[:10]
    exact = pool[3]
    noise = rng.normal(0, 4, pool[6].shape)
    noised = np.clip(pool[6].astype(int) + noise, 0, 255).astype(np.uint8)
    other = synth_frame("viral", patient=99, idx=7, size=32, rng=rng)  # a new patient
    return pool, np.stack([exact, noised, other])


def test_flags_exact_and_noised_copies_and_passes_a_new_frame(pool_and_candidates, cfg):
    pool, cands = pool_and_candidates
    res = check_memorisation(cands, pool, cfg)
    assert res.memorised.tolist() == [True, True, False]
    assert res.nn_index[:2].tolist() == [3, 6]
    assert res.nn_distance[0] == pytest.approx(0.0, abs=1e-9)
    assert res.rate == pytest.approx(2 / 3)


def test_relative_criterion_alone_catches_copies(pool_and_candidates, cfg):
    pool, cands = pool_and_candidates
    relative_only = dataclasses.replace(
        cfg, relative=True, max_pixel_distance=0.0, max_feature_distance=0.0
    )
    res = check_memorisation(cands, pool, relative_only)
    assert res.flag_relative.tolist() == [True, True, False]
    assert (res.ratio[:2] < 1).all() and res.ratio[2] >= 1


def test_single_training_frame_needs_the_absolute_threshold(pool_and_candidates, cfg):
    pool, cands = pool_and_candidates
    one = pool[6:7]
    res = check_memorisation(cands[1:2], one, cfg)  # the noised copy of pool[6]
    assert not res.flag_relative[0]  # d_nn / (alpha * d_nn) = 1/alpha: never < 1
    assert res.flag_pixel[0] and res.memorised[0]


def test_feature_cosine_threshold(pool_and_candidates, cfg):
    pool, cands = pool_and_candidates
    rng = np.random.default_rng(0)
    f_pool = rng.normal(size=(len(pool), 8))
    f_cands = np.stack([f_pool[3], rng.normal(size=8), rng.normal(size=8)])
    feat_only = dataclasses.replace(
        cfg, max_pixel_distance=0.0, alpha=1e-9, max_feature_distance=1e-6
    )
    res = check_memorisation(cands, pool, feat_only, f_cands, f_pool)
    assert res.flag_feature.tolist() == [True, False, False]
    assert res.feature_nn_index[0] == 3 and res.feature_cosine[0] == pytest.approx(1.0)


def test_pixel_distance_ignores_gain_and_offset(viral_frames):
    a = viral_frames[:1]
    brighter = np.clip(a.astype(float) * 0.5 + 40, 0, 255).astype(np.uint8)
    assert pixel_distances(brighter, a)[0, 0] < 0.02


def test_size_mismatch_is_an_error(viral_frames):
    with pytest.raises(ValueError, match="differ in size"):
        pixel_distances(viral_frames[:1, :16, :16], viral_frames[:2])


def test_copy_distance_is_calibrated_on_neighbouring_frames_of_real_clips(cfg):
    rng = np.random.default_rng(0)
    clip = [synth_frame("viral", patient=1, idx=i, size=32, rng=rng) for i in range(6)]
    other = [synth_frame("covid", patient=2, idx=i, size=32, rng=rng) for i in range(6)]
    frames = np.stack(clip + other)
    videos = ["a"] * 6 + ["b"] * 6
    d = video_copy_distance(frames, videos, 0.5)
    assert d is not None and d > 0
    assert video_copy_distance(frames, videos, 0.0) is None  # switched off
    assert video_copy_distance(frames, [str(i) for i in range(12)], 0.5) is None  # no pairs
    strict = dataclasses.replace(cfg, max_pixel_distance=0.0, relative=False)
    near = np.clip(clip[0].astype(int) + rng.normal(0, 2, clip[0].shape), 0, 255).astype(np.uint8)
    res = check_memorisation(np.stack([near, other[0]]), frames[1:6], strict, copy_distance=d)
    assert res.memorised.tolist() == [True, False]
