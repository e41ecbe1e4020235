"""The shared perceptual-hash helpers that `split` (linking) and `validate` (checking) both use."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from lusaug.data.hashing import hex_to_words, pairs_within, phash_file, phash_hex


def _bits(words: np.ndarray, i: int, j: int) -> int:
    return sum((int(a) ^ int(b)).bit_count() for a, b in zip(words[i], words[j], strict=True))


def test_pairs_within_matches_brute_force():
    rng = np.random.default_rng(4)
    n = 700  # more than one block of rows
    words = rng.integers(0, 2**63, (n, 4), dtype=np.uint64)  # 256-bit hashes
    groups = rng.integers(0, 40, n)
    # planted pairs: a near copy in another group, one in the same group (must not count)
    words[650] = words[3]
    words[650, 2] ^= np.uint64(0b1011)
    groups[3], groups[650] = 1, 2
    words[651] = words[4]
    words[651, 0] ^= np.uint64(0b1)
    groups[4], groups[651] = 5, 5
    found = pairs_within(words, groups, max_distance=20)
    assert found.dtype == np.int64 and found.shape[1] == 3
    expected = [
        (i, j, _bits(words, i, j))
        for i in range(n)
        for j in range(i + 1, n)
        if groups[i] != groups[j] and _bits(words, i, j) <= 20
    ]
    assert [tuple(map(int, r)) for r in found] == expected
    assert (3, 650, 3) in expected and not any(r[:2] == (4, 651) for r in expected)
    assert pairs_within(words[:1], groups[:1], 20).shape == (0, 3)


def test_phash_of_file_and_array_agree_and_size_sets_bits(tmp_path):
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.normal(128, 40, (16, 16)).clip(0, 255).astype(np.uint8), (64, 64))
    assert cv2.imwrite(str(tmp_path / "f.png"), img)
    h16 = phash_file(tmp_path / "f.png", 16)
    assert h16 == phash_hex(img, 16) == phash_hex(Image.fromarray(img), 16)
    assert len(h16) * 4 == 256 and len(phash_hex(img, 8)) * 4 == 64
    assert hex_to_words([h16]).shape == (1, 4)
