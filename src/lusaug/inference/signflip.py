"""The exact patient-level sign-flip (randomisation) test of paired differences.

Under H0 (the strategy changes nothing, so each patient's difference strategy - control is as
likely to be +d as -d) every one of the 2^n sign patterns of the n per-patient differences is
equally likely. The p-value is the share of patterns whose statistic is at least as extreme as
the observed one (Fisher 1935; Canay, Romano & Shaikh, Econometrica 2017 for few clusters). The
statistic is the sum of the differences (the same ordering of patterns as their mean).

* **Exact** when 2^n <= ``max_patterns``: the null distribution of the sum is enumerated by
  doubling (every pattern's sum, 2^n numbers, no n x 2^n sign matrix).
* **Monte Carlo** beyond that: ``mc_draws`` random sign patterns from ``numpy``'s generator with
  the given ``seed``; p = (1 + #{at least as extreme}) / (1 + draws), which is a valid p-value
  (Phipson & Smyth 2010). The method string states the draws and the seed.
* **Zeros.** A patient whose difference is exactly 0 has no sign to flip: with the sum statistic
  it leaves every pattern's sum unchanged, so the p-value is the same with or without it. It is
  left out of n: ``n_nonzero`` is what the test rests on, and the smallest attainable p is
  2 / 2^n_nonzero (two-sided) or 1 / 2^n_nonzero (one-sided). ``n_patients`` counts everyone;
  the estimate is the mean over all patients, zeros included.
* **Two-sided** by default: patterns with |sum| >= |observed sum|. For this symmetric null that
  equals scipy's 2 x min(one-sided p) (``scipy.stats.permutation_test(...,
  permutation_type='samples')``, which the tests check against).

If every patient moved the same way, p would be its smallest attainable value;
:func:`patients_needed` gives the n at which that value reaches alpha: 6 patients two-sided at
alpha = 0.05 (2/64 = 0.031), 5 one-sided (1/32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lusaug.inference.types import InferenceError, JsonResult

ALTERNATIVES = ("two-sided", "greater", "less")
MC_CHUNK = 8192  # random sign patterns drawn at a time (bounded memory)


@dataclass(frozen=True)
class SignFlipResult(JsonResult):
    """The test of one set of per-patient differences."""

    p_value: float
    estimate: float  # mean difference over all patients (zeros included)
    n_patients: int  # every patient
    n_nonzero: int  # patients whose difference is not 0: what the test rests on
    min_p: float  # smallest p attainable with n_nonzero patients (all moving the same way)
    alternative: str
    method: str  # "exact (2^n patterns)" or "monte carlo, B draws, seed s"
    patterns: int  # sign patterns evaluated (2^n, or the Monte Carlo draws)


def min_attainable_p(n: int, alternative: str = "two-sided") -> float:
    """Smallest p-value the sign-flip test can give with ``n`` non-zero differences."""
    _check_alternative(alternative)
    tails = 2 if alternative == "two-sided" else 1
    return min(1.0, tails * 2.0 ** (-min(n, 1074)))  # 2^-1074: the smallest float


def patients_needed(alpha: float, alternative: str = "two-sided") -> int:
    """Patients (all moving the same way) the sign-flip test needs to reach p <= ``alpha``."""
    if not 0.0 < alpha < 1.0:
        raise InferenceError(f"alpha must be in (0, 1), got {alpha}")
    tails = 2 if _check_alternative(alternative) == "two-sided" else 1
    n = max(0, math.ceil(math.log2(tails / alpha)))
    while min_attainable_p(n, alternative) > alpha:  # guard against log2 rounding
        n += 1
    return n


def _check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise InferenceError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return alternative


def _extreme(null: np.ndarray, observed: float, alternative: str, tol: float) -> int:
    """Number of null statistics at least as extreme as ``observed`` (tolerance for rounding)."""
    if alternative == "two-sided":
        return int((np.abs(null) >= abs(observed) - tol).sum())
    if alternative == "greater":
        return int((null >= observed - tol).sum())
    return int((null <= observed + tol).sum())


def null_sums(d: np.ndarray) -> np.ndarray:
    """The sum under every one of the 2^n sign patterns of ``d`` (exact null distribution)."""
    sums = np.zeros(1)
    for x in d:
        sums = np.concatenate([sums + x, sums - x])
    return sums


def sign_flip_test(
    differences: np.ndarray,
    *,
    alternative: str = "two-sided",
    max_patterns: int = 2**16,
    mc_draws: int = 100_000,
    seed: int = 0,
) -> SignFlipResult:
    """Sign-flip test of per-patient paired differences (strategy - control, seed-averaged).

    Args:
        differences: one difference per patient.
        alternative: "two-sided" (default), "greater" (strategy better) or "less".
        max_patterns: enumerate all 2^n patterns up to this many; Monte Carlo beyond.
        mc_draws: random sign patterns of the Monte Carlo path.
        seed: seed of the Monte Carlo path.
    """
    _check_alternative(alternative)
    d = np.asarray(differences, dtype=np.float64).ravel()
    if d.size == 0 or not np.isfinite(d).all():
        raise InferenceError(f"sign-flip test needs finite differences, got {d.tolist()}")
    if max_patterns < 1 or mc_draws < 1:
        raise InferenceError("max_patterns and mc_draws must be >= 1")
    nz = d[d != 0.0]
    n = int(nz.size)
    estimate = float(d.mean())
    min_p = min_attainable_p(n, alternative)
    if n == 0:
        return SignFlipResult(1.0, estimate, d.size, 0, 1.0, alternative, "exact (no non-zero)", 1)
    observed = float(nz.sum())
    tol = 1e-9 * float(np.abs(nz).max())
    if n < 63 and 2**n <= max_patterns:
        null = null_sums(nz)
        p = _extreme(null, observed, alternative, tol) / null.size
        method = f"exact ({null.size} = 2^{n} sign patterns)"
        patterns = null.size
    else:
        rng = np.random.default_rng(seed)
        hits, done = 0, 0
        while done < mc_draws:
            b = min(MC_CHUNK, mc_draws - done)
            signs = rng.integers(0, 2, size=(b, n), dtype=np.int8) * 2 - 1
            hits += _extreme(signs @ nz, observed, alternative, tol)
            done += b
        p = (1 + hits) / (1 + mc_draws)
        method = (
            f"monte carlo, {mc_draws} draws, seed {seed} (2^{n} patterns exceed {max_patterns})"
        )
        patterns = mc_draws
    return SignFlipResult(float(p), estimate, d.size, n, min_p, alternative, method, patterns)
