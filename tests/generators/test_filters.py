"""The quality filter on constructed arrays with known std and entropy."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.generators.filters import (
    REASON_ENTROPY,
    REASON_MEMORISED,
    REASON_STD,
    apply_filter,
    grey_entropy,
    image_stats,
    quality_mask,
)


def levels_image(levels: np.ndarray, side: int = 32) -> np.ndarray:
    """Each level equally often: entropy = log2(len(levels)) exactly."""
    reps = side * side // len(levels)
    return np.repeat(levels.astype(np.uint8), reps).reshape(side, side)


def test_entropy_and_std_of_known_images():
    flat = np.full((32, 32), 128, np.uint8)
    two = levels_image(np.array([0, 255]))
    wide32 = levels_image(np.arange(32) * 8)  # 5 bits, std 8*sqrt((32^2-1)/12)
    narrow32 = levels_image(np.arange(32))  # 5 bits, std sqrt((32^2-1)/12)
    std, ent = image_stats(np.stack([flat, two, wide32, narrow32]))
    np.testing.assert_allclose(ent, [0.0, 1.0, 5.0, 5.0], atol=1e-12)
    expected32 = np.sqrt((32**2 - 1) / 12)
    np.testing.assert_allclose(std, [0.0, 127.5, 8 * expected32, expected32], atol=1e-9)
    assert grey_entropy(np.arange(256, dtype=np.uint8).reshape(16, 16)) == pytest.approx(8.0)


def test_filter_keeps_and_rejects_by_the_right_reason():
    imgs = np.stack(
        [
            np.full((32, 32), 128, np.uint8),  # flat: both reasons
            levels_image(np.array([0, 255])),  # contrast but 1 bit: entropy only
            levels_image(np.arange(32) * 8),  # 5 bits, std 73.9: kept
            levels_image(np.arange(32)),  # 5 bits, std 9.2: std only
            np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8),  # noise: kept
        ]
    )
    std, ent = image_stats(imgs)
    out = apply_filter(std, ent, 30.0, 4.7)
    assert out.kept.tolist() == [False, False, True, False, True]
    assert out.reasons == [[REASON_STD, REASON_ENTROPY], [REASON_ENTROPY], [], [REASON_STD], []]
    assert out.rejected_by_reason() == {REASON_STD: 2, REASON_ENTROPY: 2, REASON_MEMORISED: 0}


def test_thresholds_are_strict_and_tunable():
    std = np.array([30.0, 30.01, 50.0])
    ent = np.array([5.0, 5.0, 4.7])
    assert quality_mask(std, ent, 30.0, 4.7).tolist() == [False, True, False]
    # a tuner re-running the pure function with other thresholds gets another answer
    assert quality_mask(std, ent, 10.0, 4.0).tolist() == [True, True, True]


def test_memorised_candidates_are_dropped_even_when_sharp():
    std, ent = np.array([60.0, 60.0]), np.array([6.0, 6.0])
    out = apply_filter(std, ent, 30, 4.7, memorised=np.array([True, False]))
    assert out.kept.tolist() == [False, True]
    assert out.reasons[0] == [REASON_MEMORISED]


def test_image_stats_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        image_stats(np.zeros((1, 4, 4), np.float32))


def test_kept_files_refilters_a_table_with_new_thresholds():
    import pandas as pd

    from lusaug.generators.filters import kept_files

    table = pd.DataFrame(
        {
            "file": ["a.png", "b.png", "c.png"],
            "std": [20.0, 40.0, 60.0],
            "entropy": [6.0, 6.0, 6.0],
            "memorised": [False, False, True],
        }
    )
    assert kept_files(table, 30.0, 4.7) == ["b.png"]
    assert kept_files(table, 10.0, 4.7) == ["a.png", "b.png"]  # c stays out: memorised
