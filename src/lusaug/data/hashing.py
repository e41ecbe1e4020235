"""Perceptual hashes of frames and fast Hamming-distance search: one implementation for all.

The ``split`` stage links patients that share a near-identical frame (so they land in one split)
and the ``validate`` stage checks that no near-identical frames sit in two splits. Both must mean
the same thing by "near-identical", so both hash with :func:`phash_hex` at
``validate.phash_size`` and compare Hamming distances against ``validate.phash_max_distance``.

Why ``hash_size`` 16 by default: a 64-bit pHash (8x8 DCT signs) of a 64 px ultrasound frame is
dominated by the fan outline, so frames of different patients scanned with the same probe come
out 2 bits apart. The 16x16 DCT (256 bits) keeps enough of the echo texture to separate them
(real POCUS: a re-filed copy of one image is 8 bits from itself, different patients are >= 22).

Hashes are hex strings (``imagehash`` order); :func:`hex_to_words` packs them into ``uint64``
words so distances are XOR + popcount over blocks of rows (16k frames: seconds, bounded memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

# Rows of the pairwise distance matrix computed at once: 512 x 16k frames x 8 bytes = 64 MB for
# the XOR block, whatever the data set size.
_CHUNK = 512


def phash_hex(image: Image.Image | np.ndarray, hash_size: int) -> str:
    """Perceptual hash (``imagehash.phash``, ``hash_size`` x ``hash_size`` bits) as hex.

    Args:
        image: A Pillow image or a uint8 array (converted to grey).
        hash_size: Side of the DCT block kept; the hash has ``hash_size**2`` bits.
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return str(imagehash.phash(image, hash_size=hash_size))


def phash_file(path: Path | str, hash_size: int) -> str:
    """:func:`phash_hex` of an image file (raises ``OSError``/``ValueError`` when unreadable)."""
    with Image.open(path) as img:
        img.load()
        return phash_hex(img, hash_size)


def hex_to_words(hexes: Any) -> np.ndarray:
    """Hex hashes (all of one length) -> ``(N, W)`` uint64 words, left-padded with zero bits."""
    hexes = [str(h) for h in hexes]
    width = max((len(h) for h in hexes), default=16)
    width += -width % 16  # whole 64-bit words
    raw = b"".join(bytes.fromhex(h.rjust(width, "0")) for h in hexes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hexes), width // 16)


def _as_words(hashes: np.ndarray) -> np.ndarray:
    hashes = np.asarray(hashes, dtype=np.uint64)
    return hashes[:, None] if hashes.ndim == 1 else hashes


def _block(words: np.ndarray, start: int, stop: int, cols: slice = slice(None)) -> np.ndarray:
    """Hamming distances of rows ``start:stop`` to the rows in ``cols`` (int16)."""
    d = np.zeros((stop - start, len(words[cols])), dtype=np.int16)
    for w in range(words.shape[1]):
        d += np.bitwise_count(words[start:stop, None, w] ^ words[None, cols, w])
    return d


def cross_group_nearest(hashes: np.ndarray, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """For each hash, the smallest Hamming distance to a hash of a *different* group.

    Args:
        hashes: uint64 array, ``(N,)`` for 64-bit hashes or ``(N, W)`` for W words each.
        groups: Group label per hash (e.g. the split), same length.

    Returns:
        ``(distance, nearest)`` int arrays; where no other group exists, ``distance`` is the
        number of bits + 1 (``64 * W + 1``) and ``nearest`` is -1.
    """
    words = _as_words(hashes)
    none = 64 * words.shape[1] + 1
    codes = pd.factorize(np.asarray(groups, dtype=object))[0]
    n = len(words)
    dist = np.full(n, none, dtype=np.int64)
    nearest = np.full(n, -1, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        d = _block(words, start, stop)
        d[codes[start:stop, None] == codes[None, :]] = none
        idx = d.argmin(axis=1)
        best = d[np.arange(stop - start), idx]
        found = best < none
        dist[start:stop] = np.where(found, best, none)
        nearest[start:stop] = np.where(found, idx, -1)
    return dist, nearest


def pairs_within(hashes: np.ndarray, groups: Any, max_distance: int) -> np.ndarray:
    """Every pair of hashes from *different* groups at Hamming distance <= ``max_distance``.

    Args:
        hashes: uint64 array, ``(N,)`` or ``(N, W)`` as for :func:`cross_group_nearest`.
        groups: Group label per hash (e.g. the patient).
        max_distance: Largest distance that counts as near-identical (inclusive).

    Returns:
        ``(K, 3)`` int64 array of ``(i, j, distance)`` with ``i < j``, sorted by ``i`` then ``j``.
    """
    words = _as_words(hashes)
    codes = pd.factorize(np.asarray(groups, dtype=object))[0]
    n = len(words)
    found: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        # upper triangle only: columns from `start` on, then keep j > i
        d = _block(words, start, stop, slice(start, n))
        rows, cols = np.nonzero(d <= max_distance)
        i, j = rows + start, cols + start
        keep = (j > i) & (codes[i] != codes[j])
        if keep.any():
            found.append(np.stack([i[keep], j[keep], d[rows[keep], cols[keep]]], axis=1))
    if not found:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)


__all__ = [
    "cross_group_nearest",
    "hex_to_words",
    "pairs_within",
    "phash_file",
    "phash_hex",
]
