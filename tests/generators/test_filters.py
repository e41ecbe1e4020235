"""The filter on constructed arrays: std/entropy, sharpness, memorisation, blocking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lusaug.generators.filters import (
    REASON_BLOCKED,
    REASON_BLUR,
    REASON_ENTROPY,
    REASON_MEMORISED,
    REASON_NOISE,
    REASON_STD,
    FilterThresholds,
    apply_filter,
    blurred,
    grey_entropy,
    high_frequency_ratio,
    image_stats,
    kept_files,
    load_thresholds,
    quality_mask,
)

STUDY = FilterThresholds(30.0, 4.7, None)


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
    out = apply_filter({"std": std, "entropy": ent}, STUDY)
    assert out.kept.tolist() == [False, False, True, False, True]
    assert out.reasons == [[REASON_STD, REASON_ENTROPY], [REASON_ENTROPY], [], [REASON_STD], []]
    counts = out.rejected_by_reason()
    assert counts[REASON_STD] == counts[REASON_ENTROPY] == 2 and counts[REASON_MEMORISED] == 0


def test_thresholds_are_strict_and_tunable():
    std = np.array([30.0, 30.01, 50.0])
    ent = np.array([5.0, 5.0, 4.7])
    assert quality_mask(std, ent, 30.0, 4.7).tolist() == [False, True, False]
    # a tuner re-running the pure function with other thresholds gets another answer
    assert quality_mask(std, ent, 10.0, 4.0).tolist() == [True, True, True]


def test_memorised_candidates_are_dropped_even_when_sharp():
    std, ent = np.array([60.0, 60.0]), np.array([6.0, 6.0])
    out = apply_filter({"std": std, "entropy": ent}, STUDY, np.array([True, False]))
    assert out.kept.tolist() == [False, True]
    assert out.reasons[0] == [REASON_MEMORISED]


def test_image_stats_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        image_stats(np.zeros((1, 4, 4), np.float32))


def test_kept_files_refilters_a_table_with_new_thresholds(tmp_path):
    table = pd.DataFrame(
        {
            "file": ["a.png", "b.png", "c.png", "d.png"],
            "std": [20.0, 40.0, 60.0, 60.0],
            "entropy": [6.0, 6.0, 6.0, 6.0],
            "sharpness": [0.5, 0.5, 0.5, 0.01],
            "memorised": [False, False, True, False],
        }
    )
    assert kept_files(table, FilterThresholds(30.0, 4.7, None)) == ["b.png", "d.png"]
    assert kept_files(table, FilterThresholds(30.0, 4.7, 0.1)) == ["b.png"]  # d is blurred
    assert kept_files(table, FilterThresholds(10.0, 4.7, 0.1)) == ["a.png", "b.png"]  # c: copy
    assert kept_files(table, FilterThresholds(10.0, 4.7, 0.1, blocked=True)) == []
    # the same verdict as the stage's own filter
    out = apply_filter(table, FilterThresholds(10.0, 4.7, 0.1), table["memorised"].to_numpy())
    assert list(table.loc[out.kept, "file"]) == ["a.png", "b.png"]
    assert out.reasons[3] == [REASON_BLUR] and out.reasons[2] == [REASON_MEMORISED]
    blocked = apply_filter(table, FilterThresholds(10.0, 4.7, 0.1, blocked=True))
    assert not blocked.kept.any() and all(REASON_BLOCKED in r for r in blocked.reasons)
    path = tmp_path / "m.json"
    path.write_text(
        '{"thresholds": {"min_std": 30.0, "min_entropy": 4.7, '
        '"min_sharpness": 0.2, "blocked": false}}'
    )
    assert load_thresholds(path, min_std=12.0) == FilterThresholds(12.0, 4.7, 0.2, False)


def test_sharpness_ranks_real_frames_above_blurred_copies(viral_frames):
    real = high_frequency_ratio(viral_frames, cutoff=0.25)
    soft = high_frequency_ratio(blurred(viral_frames, sigma=1.0), cutoff=0.25)
    assert (real > soft).all()
    threshold = np.quantile(real, 0.05)
    assert (soft < threshold).mean() > 0.9  # the filter's threshold drops blurred copies
    noise = np.random.default_rng(0).integers(0, 256, (4, 32, 32), dtype=np.uint8)
    assert (high_frequency_ratio(noise, cutoff=0.25) > real.max()).all()  # noise: above the band
    table = {"std": [60.0] * 3, "entropy": [6.0] * 3, "sharpness": [0.01, 0.1, 0.9]}
    out = apply_filter(table, FilterThresholds(30.0, 4.7, 0.05, max_sharpness=0.5))
    assert out.kept.tolist() == [False, True, False]
    assert out.reasons[0] == [REASON_BLUR] and out.reasons[2] == [REASON_NOISE]
    flat = high_frequency_ratio(np.full((1, 32, 32), 100, np.uint8), cutoff=0.25)
    assert flat[0] == 0.0
