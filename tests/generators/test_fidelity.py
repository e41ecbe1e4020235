"""KID/FID behave; the domain encoder trains, saves and loads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lusaug.generators.fidelity import (
    extract_features,
    fid,
    kid,
    load_encoder,
    save_encoder,
    train_encoder,
)


def test_kid_near_zero_for_the_same_distribution_and_larger_for_different_sets():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(size=(200, 16))
    shifted = rng.normal(loc=0.7, size=(200, 16))
    same = kid(a, b, subsets=30, subset_size=100, seed=1)
    diff = kid(a, shifted, subsets=30, subset_size=100, seed=1)
    assert abs(same.mean) < 3 * same.std + 1e-3
    assert diff.mean > 10 * max(abs(same.mean), same.std)
    assert diff.low <= diff.mean <= diff.high
    assert kid(a, a, 10, 50).mean == pytest.approx(kid(a, a, 10, 50).mean)  # seeded


def test_kid_caps_subset_size_and_needs_two_samples():
    rng = np.random.default_rng(0)
    r = kid(rng.normal(size=(5, 4)), rng.normal(size=(50, 4)), subsets=5, subset_size=100)
    assert r.subset_size == 5
    with pytest.raises(ValueError, match="at least 2"):
        kid(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)), 5, 5)


def test_fid_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 8))
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)  # |mu shift|^2 = 8


def test_encoder_trains_and_round_trips(splits_csv, micro_params, tmp_path):
    from lusaug.generators.data import load_frames, read_splits

    splits = read_splits(splits_csv)
    train = splits[splits.split == "train"]
    classes = micro_params.base.classes
    imgs = load_frames(train, splits_csv, 32)
    labels = np.array([classes.index(c) for c in train.label])
    cfg = dataclasses.replace(
        micro_params.filter.encoder,
        width=8,
        blocks=3,
        epochs=15,
        batch_size=16,
        learning_rate=0.01,
    )
    model, meta = train_encoder(imgs, labels, classes, cfg, seed=0, progress=False)
    assert meta.train_accuracy > 0.5  # 4 classes: chance is 0.25
    save_encoder(tmp_path, model, meta)
    loaded, meta2 = load_encoder(tmp_path)
    assert meta2 == meta
    np.testing.assert_array_equal(extract_features(model, imgs), extract_features(loaded, imgs))
    assert extract_features(loaded, imgs).shape == (len(imgs), 8 * 4)
