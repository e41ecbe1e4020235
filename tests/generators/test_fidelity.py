"""KID/FID/PRDC behave; the recognition interval is sane."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.generators.fidelity import fid, kid, prdc, recognition, wilson


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


def test_prdc_of_a_set_against_itself_is_one_and_drops_for_a_shifted_set():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(80, 12))
    same = prdc(real, real, k=5, bootstrap=100, seed=0)
    for name in ("precision", "recall", "coverage"):
        assert same[name]["value"] == 1.0
    assert same["density"]["value"] == pytest.approx(1.0, abs=0.05)
    other = prdc(real, rng.normal(size=(80, 12)), k=5)  # a fresh draw of the same law
    shifted = prdc(real, real + 2.0, k=5, bootstrap=100, seed=0)
    for name in ("precision", "recall", "density", "coverage"):
        assert shifted[name]["value"] < 0.5 * other[name]["value"], name
        assert shifted[name]["low"] <= shifted[name]["value"] <= shifted[name]["high"]


def test_prdc_needs_more_samples_than_neighbours():
    with pytest.raises(ValueError, match="k=5"):
        prdc(np.zeros((5, 3)), np.zeros((10, 3)), k=5)


def test_recognition_rate_and_its_wilson_interval():
    r = recognition(np.array([3, 3, 1, 3]), target=3, ci=0.95)
    assert r["rate"] == 0.75 and r["n"] == 4 and 0.0 < r["low"] < 0.75 < r["high"] <= 1.0
    lo, hi = wilson(0, 10, 0.95)
    assert lo == 0.0 and 0.0 < hi < 0.35
