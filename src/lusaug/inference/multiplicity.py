"""Multiplicity: Holm-adjusted p-values and what chance alone gives in a family of comparisons.

One comparison is pre-registered as primary and judged at alpha. Every other comparison of the
family (the other strategies x architectures on the same endpoint) is a secondary: its p-value
is Holm-adjusted across the secondaries (Holm 1979), which keeps the chance of any false "helps"
among them at most alpha whatever their dependence.

Holm, step down: sort the m p-values, p_(1) <= ... <= p_(m); the adjusted value of p_(j) is
max_{i <= j} min(1, (m - i + 1) p_(i)). A secondary is significant when its adjusted p <= alpha,
so the best it can do is m x its smallest attainable p: with the exact sign-flip test it needs
enough patients for 2/2^n <= alpha/m.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lusaug.inference.signflip import min_attainable_p, patients_needed
from lusaug.inference.types import InferenceError, JsonResult


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values in the input order (NaN stays NaN and does not count in m)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise InferenceError(f"p-values must be in [0, 1], got {p.tolist()}")
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


@dataclass(frozen=True)
class ChanceInFamily(JsonResult):
    """What chance alone gives in a family of m comparisons when nothing helps anywhere."""

    m: int  # comparisons in the family
    alpha: float
    expected_significant_unadjusted: float  # alpha x m: each test at alpha, either direction
    expected_helps_unadjusted: float  # alpha x m / 2: significant in the helping direction
    attainable_size: float  # P(p <= alpha) of one exact test with n patients (<= alpha)
    expected_significant_attainable: float  # m x attainable_size
    holm_fwer_bound: float  # P(any false rejection) with Holm: <= alpha
    note: str


def attainable_size(n_nonzero: int, alpha: float, alternative: str = "two-sided") -> float:
    """P(p <= alpha) under H0 for the exact sign-flip test with n distinct non-zero |d|.

    The p-values of the exact test are multiples of 1/2^n (two-sided: of 2/2^n), so its actual
    size is the largest such multiple <= alpha: 0 with 4 patients at alpha = 0.05.
    """
    if n_nonzero == 0:
        return 0.0
    step = min_attainable_p(n_nonzero, alternative)
    return float(np.floor(alpha / step + 1e-12) * step)


def chance_in_family(
    m: int, alpha: float, n_nonzero: int | None = None, alternative: str = "two-sided"
) -> ChanceInFamily:
    """How many "significant" results chance alone gives in a family of ``m`` comparisons.

    Args:
        m: comparisons in the family.
        alpha: level of each test.
        n_nonzero: patients with a non-zero difference per exact test (None: a continuous
            test, size alpha).
        alternative: of the tests.
    """
    if m < 0 or not 0 < alpha < 1:
        raise InferenceError(f"need m >= 0 and alpha in (0, 1), got m={m}, alpha={alpha}")
    size = alpha if n_nonzero is None else attainable_size(n_nonzero, alpha, alternative)
    note = (
        f"with no effect anywhere, {alpha:g} x {m} = {alpha * m:.2f} of {m} comparisons would be "
        f"'significant' unadjusted (about half of them in the helping direction)"
    )
    if n_nonzero is not None:
        need = patients_needed(alpha, alternative)
        note += (
            f"; the exact test with {n_nonzero} patients that differ reaches p <= {alpha:g} with "
            f"probability {size:.4f} (it needs {need} patients all moving the same way), so "
            f"{m * size:.2f} are expected"
        )
    note += f"; Holm keeps P(any false 'helps' among the secondaries) <= {alpha:g}"
    return ChanceInFamily(m, alpha, alpha * m, alpha * m / 2, size, m * size, alpha, note)
