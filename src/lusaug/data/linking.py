"""Patients that are not independent: linked when they share an identical or near-identical frame.

Public collections re-file the same image under two patient ids (POCUS:
``Pneu_northumbria_0409_set4_img2`` and ``..._set6_img6``). :func:`link_patients` joins patients
that share an identical frame (same ``sha1``) or a near-identical one (perceptual hash within
``validate.phash_max_distance`` at ``validate.phash_size``, the same test ``validate`` applies, via
:mod:`lusaug.data.hashing`) into connected components (union-find). The split assigns a component
as one unit, and ``reports/split.json`` lists each linked group with the frame pair that links it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lusaug.core.errors import LusaugError
from lusaug.data.hashing import hex_to_words, pairs_within, phash_file

logger = logging.getLogger(__name__)

SHOW = 5  # unreadable frames (or links) named in a message


class LinkError(LusaugError, ValueError):
    """The frames needed to look for shared frames cannot be read."""


@dataclass
class PatientLinks:
    """Patients joined because they share an identical or near-identical frame.

    Attributes:
        hash_size: pHash side used (``validate.phash_size``).
        max_distance: Largest Hamming distance that counts as near-identical.
        group_of: Linked patient -> its group key (the group's smallest patient id); patients
            linked to nobody are absent and form a group of their own.
        links: One entry per linked patient pair: ``patients``, ``kind`` (``identical`` =
            same sha1, or ``near-identical``), the closest ``frames`` pair and its ``distance``,
            the number of such ``frame_pairs`` and a one-sentence ``reason``.
    """

    hash_size: int
    max_distance: int
    group_of: dict[str, str] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)

    def unit(self, patient: str) -> str:
        """The key of the group a patient is assigned with."""
        return self.group_of.get(patient, patient)

    def groups(self) -> dict[str, list[str]]:
        """Group key -> sorted patient ids, for groups of two or more patients."""
        out: dict[str, list[str]] = {}
        for pid, key in sorted(self.group_of.items()):
            out.setdefault(key, []).append(pid)
        return out


def _reason(a: str, b: str, fa: str, fb: str, kind: str, d: int, links: PatientLinks) -> str:
    if kind == "identical":
        how = "identical (same sha1)"
    else:
        bits = links.hash_size**2
        how = f"near-identical (pHash distance {d} <= {links.max_distance} of {bits} bits)"
    return f"patients {a} and {b} were kept together because frames {fa} and {fb} are {how}"


def link_patients(
    manifest: pd.DataFrame, root: Path | str, hash_size: int, max_distance: int
) -> PatientLinks:
    """Union-find over patients that share an identical or near-identical frame.

    Args:
        manifest: Frame manifest (``path``, ``patient_id``, ``sha1``).
        root: Folder the ``path`` column is relative to (the manifest CSV's folder).
        hash_size: pHash side (``validate.phash_size``), as the ``validate`` stage uses.
        max_distance: Hamming distance at or below which two frames are near-identical
            (``validate.phash_max_distance``).

    Returns:
        The linked groups and, per linked patient pair, the evidence (closest frame pair).

    Raises:
        LinkError: Columns missing, or PNGs that cannot be read (they are named).
    """
    missing = [c for c in ("path", "patient_id", "sha1") if c not in manifest.columns]
    if missing:
        raise LinkError(f"manifest lacks column(s) {missing} needed to link duplicate frames")
    root = Path(root)
    pids = manifest["patient_id"].astype(str).to_numpy(dtype=object)
    paths = manifest["path"].astype(str).to_numpy(dtype=object)
    shas = manifest["sha1"].astype(str).to_numpy(dtype=object)
    links = PatientLinks(hash_size=hash_size, max_distance=max_distance)

    hexes: list[str] = []
    bad: list[str] = []
    for rel in tqdm(paths, desc="split: hashing frames", unit="frame", leave=False):
        try:
            hexes.append(phash_file(root / rel, hash_size))
        except (OSError, ValueError) as err:
            bad.append(f"{rel} ({type(err).__name__})")
            hexes.append("0")
    if bad:
        more = f" (+{len(bad) - SHOW} more)" if len(bad) > SHOW else ""
        raise LinkError(
            f"{len(bad)} frame(s) cannot be read to look for duplicate frames across patients: "
            f"{', '.join(bad[:SHOW])}{more}; run the frames stage again"
        )

    # Evidence per patient pair: the closest frame pair (identical first, then by distance, then
    # by name, so the choice does not depend on the manifest's row order) and a pair count.
    best: dict[tuple[str, str], dict[str, Any]] = {}

    def offer(i: int, j: int, d: int, count: bool) -> None:
        if pids[i] > pids[j]:
            i, j = j, i
        a, b = pids[i], pids[j]
        kind = "identical" if shas[i] == shas[j] else "near-identical"
        rank = (kind != "identical", d, paths[i], paths[j])
        e = best.setdefault((a, b), {"rank": rank, "frame_pairs": 0, "i": i, "j": j, "d": d})
        if rank < e["rank"]:
            e.update(rank=rank, i=i, j=j, d=d)
        e["frame_pairs"] += int(count)

    # identical frames straight from the manifest's sha1 (no pixels needed) ...
    multi = pd.DataFrame({"sha1": shas, "pid": pids}).groupby("sha1")["pid"].nunique()
    for sha in multi[multi > 1].index:
        idx = np.flatnonzero(shas == sha)
        first: dict[str, int] = {}
        for k in idx:
            first.setdefault(pids[k], int(k))
        anchor, *others = sorted(first.values(), key=lambda k: pids[k])
        for k in others:
            offer(anchor, k, 0, count=False)
    # ... and every near-identical pair by pHash (identical pixels are at distance 0 too).
    for i, j, d in pairs_within(hex_to_words(hexes), pids, max_distance):
        offer(int(i), int(j), int(d), count=True)

    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in best:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # the root stays the smallest id of the group
    links.group_of = {pid: find(pid) for pid in sorted(parent)}
    for (a, b), e in sorted(best.items()):
        fa, fb = str(paths[e["i"]]), str(paths[e["j"]])
        kind = "identical" if not e["rank"][0] else "near-identical"
        links.links.append(
            {
                "patients": [a, b],
                "kind": kind,
                "frames": [fa, fb],
                "distance": e["d"],
                "frame_pairs": max(e["frame_pairs"], 1),
                "reason": _reason(a, b, fa, fb, kind, e["d"], links),
            }
        )
    return links
