"""The exact sign-flip test: hand-computed values, zeros, scipy, and its Monte Carlo path."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import permutation_test

from lusaug.inference import (
    InferenceError,
    min_attainable_p,
    patients_needed,
    sign_flip_test,
)
from lusaug.inference.signflip import null_sums

# issue 21: per-patient viral-recall differences (patients 114, 115, 5, 99) of the two "helps"
OVERSAMPLE_VIT = [28.9, 68.4, 19.4, 0.0]
DDPM_ALL_VIT = [18.4, 15.8, 25.0, 0.0]


@pytest.mark.parametrize("diffs", [OVERSAMPLE_VIT, DDPM_ALL_VIT])
def test_the_two_helps_of_the_pocus_report_have_p_one_quarter(diffs):
    # by hand: 3 non-zero differences, 8 sign patterns; only all-plus and all-minus reach
    # |sum| >= 116.7 (or 59.2), so p = 2/8 = 0.25
    r = sign_flip_test(diffs)
    assert r.p_value == pytest.approx(0.25)
    assert (r.n_patients, r.n_nonzero) == (4, 3)
    assert r.min_p == pytest.approx(2 / 2**3)
    assert r.estimate == pytest.approx(np.mean(diffs))
    assert r.method.startswith("exact")


def test_a_zero_difference_changes_neither_the_p_value_nor_the_patterns_that_count():
    with_zero = sign_flip_test([28.9, 68.4, 19.4, 0.0])
    without = sign_flip_test([28.9, 68.4, 19.4])
    assert with_zero.p_value == without.p_value
    assert with_zero.n_nonzero == without.n_nonzero == 3
    assert with_zero.estimate == pytest.approx(116.7 / 4)  # the estimate keeps the patient
    everyone_zero = sign_flip_test([0.0, 0.0, 0.0])
    assert (everyone_zero.p_value, everyone_zero.n_nonzero, everyone_zero.min_p) == (1.0, 0, 1.0)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6, 10])
def test_the_smallest_p_is_two_over_two_to_the_n_and_all_same_way_reaches_it(n):
    assert min_attainable_p(n) == pytest.approx(2 / 2**n)
    assert min_attainable_p(n, "greater") == pytest.approx(1 / 2**n)
    same_way = sign_flip_test(np.arange(1.0, n + 1))
    assert same_way.p_value == pytest.approx(min(1.0, 2 / 2**n))
    assert sign_flip_test(np.arange(1.0, n + 1), alternative="greater").p_value == pytest.approx(
        1 / 2**n
    )


def test_patients_needed_if_all_move_the_same_way():
    # two-sided: 2/2^5 = 0.0625 > 0.05 >= 2/2^6 = 0.031; one-sided 1/2^5 = 0.031
    assert patients_needed(0.05) == 6
    assert patients_needed(0.05, "greater") == 5
    assert patients_needed(0.05 / 17) == 10  # Holm's first step in a family of 17
    assert min_attainable_p(4) == 0.125  # "with 4 patients no test can go below 0.125"


def test_null_sums_enumerate_every_sign_pattern():
    d = np.array([1.0, 2.5, -4.0])
    by_hand = sorted(
        sum(s * x for s, x in zip(signs, d, strict=True))
        for signs in itertools.product([1, -1], repeat=3)
    )
    assert sorted(null_sums(d)) == pytest.approx(by_hand)


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_exact_path_equals_scipy_permutation_test(alternative):
    rng = np.random.default_rng(7)
    for n in (3, 5, 8, 11):
        for _ in range(5):
            d = np.round(rng.normal(0.3, 1.0, n), 2)  # rounding makes ties in |d|
            ours = sign_flip_test(d, alternative=alternative)
            ref = permutation_test(
                (d,),
                lambda x, axis: np.mean(x, axis=axis),
                permutation_type="samples",
                vectorized=True,
                n_resamples=np.inf,
                alternative=alternative,
            )
            assert ours.p_value == pytest.approx(ref.pvalue, abs=1e-12), (d, alternative)


def test_monte_carlo_path_agrees_with_exact_within_its_error():
    rng = np.random.default_rng(11)
    draws = 20_000
    for _ in range(4):
        d = rng.normal(0.5, 1.0, 10)  # 1024 patterns: both paths can run
        exact = sign_flip_test(d)
        mc = sign_flip_test(d, max_patterns=512, mc_draws=draws, seed=3)
        assert exact.method.startswith("exact") and mc.method.startswith("monte carlo")
        assert "20000 draws, seed 3" in mc.method and mc.patterns == draws
        # Monte Carlo SE of a share estimated from 20,000 draws; 4 SE + the +1 correction
        se = math.sqrt(exact.p_value * (1 - exact.p_value) / draws)
        assert abs(mc.p_value - exact.p_value) <= 4 * se + 1 / draws
        again = sign_flip_test(d, max_patterns=512, mc_draws=draws, seed=3)
        assert again.p_value == mc.p_value  # the stated seed reproduces it


def test_monte_carlo_p_is_never_zero_and_beyond_the_limit_is_used():
    r = sign_flip_test(np.ones(30), max_patterns=2**16, mc_draws=999, seed=0)
    assert r.method.startswith("monte carlo") and r.p_value == pytest.approx(1 / 1000)
    assert r.min_p == pytest.approx(2 / 2**30)


@pytest.mark.parametrize(
    "bad, kwargs",
    [([], {}), ([1.0, np.nan], {}), ([1.0], {"alternative": "bigger"}), ([1.0], {"mc_draws": 0})],
)
def test_bad_input_is_a_clear_error(bad, kwargs):
    with pytest.raises(InferenceError):
        sign_flip_test(bad, **kwargs)
