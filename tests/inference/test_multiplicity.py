"""Holm against a hand computation, and what chance alone gives in a family."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.inference import InferenceError, chance_in_family, holm
from lusaug.inference.multiplicity import attainable_size


def holm_reference(p: list[float]) -> list[float]:
    """Holm step-down written out as in statsmodels' multipletests(method="holm")."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for step, i in enumerate(order):
        running = max(running, min(1.0, (m - step) * p[i]))
        out[i] = running
    return out


def test_holm_on_hand_computed_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone:
    # 0.02, 0.03, 0.06, 0.06; back in input order:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1 and kept monotone
    assert holm([0.5, 0.2, 0.9]) == pytest.approx([1.0, 0.6, 1.0])
    assert holm([0.25]) == pytest.approx([0.25])  # a family of one is not adjusted


def test_holm_equals_the_written_out_reference_with_ties():
    rng = np.random.default_rng(1)
    for m in (2, 5, 17):
        p = np.round(rng.uniform(0, 0.2, m), 3).tolist()  # rounding makes ties
        assert holm(p) == pytest.approx(holm_reference(p))


def test_holm_leaves_missing_p_values_out_of_m():
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1])
    assert out[[0, 2]] == pytest.approx([0.02, 0.02])
    with pytest.raises(InferenceError):
        holm([1.5])


def test_chance_in_a_family_of_17_secondaries():
    c = chance_in_family(17, 0.05)
    assert c.expected_significant_unadjusted == pytest.approx(0.85)
    assert c.expected_helps_unadjusted == pytest.approx(0.425)
    assert c.holm_fwer_bound == 0.05
    assert "0.85 of 17" in c.note


def test_with_four_patients_the_exact_test_gives_chance_nothing_to_find():
    assert attainable_size(4, 0.05) == 0.0  # p-values 0.125, 0.25, ...: none <= 0.05
    assert attainable_size(6, 0.05) == pytest.approx(2 / 64)
    assert attainable_size(10, 0.05) == pytest.approx(50 / 1024)  # 25 steps of 2/1024
    c = chance_in_family(17, 0.05, n_nonzero=4)
    assert c.expected_significant_attainable == 0.0
    assert "needs 6 patients" in c.note
