"""Patient-grouped, class-stratified train/val/test split (optionally k-fold by patient).

The unit of assignment is the patient: all frames of a patient land in one split, whatever their
class (a POCUS patient may have clips of two classes). Stratification is by class: for each class,
``split.fractions`` is the share of that class's patients that each split should receive.

Patients are not always independent: public collections re-file the same image under two
patient ids (POCUS: ``Pneu_northumbria_0409_set4_img2`` and ``..._set6_img6``). So before
assigning, :func:`link_patients` joins patients that share an identical frame (same ``sha1``) or a
near-identical one (perceptual hash within ``validate.phash_max_distance`` at
``validate.phash_size``, the same test ``validate`` applies, via :mod:`lusaug.data.hashing`) into
connected components (union-find). A component is then assigned as one unit, and
``reports/split.json`` lists each linked group with the frame pair that links it.

Algorithm (deterministic for a seed and independent of the manifest's row order):

1. For every class, list the units (patients, or linked groups of patients) with at least one
   frame of it. A class needs at least one unit per bin (3 for train/val/test, k for k-fold),
   else :class:`SplitError` names it.
2. Per class, target patient counts per bin come from the fractions by largest remainder, then at
   least one patient per bin (3 patients -> 1/1/1, 4 -> 2/1/1 with 0.6/0.2/0.2), as the study
   spread its three viral videos over the splits.
3. Classes are processed from the rarest (fewest patients) to the most common. Patients already
   placed through a rarer class count towards this class's bins; the remaining ones, in a seeded
   random order, go first to bins that still lack the class, then to the bin furthest below its
   target. Ties prefer the bin where the patient's other, not yet processed classes have most
   room, so multi-class patients do not pile up in one bin.
4. A class that still misses a bin (its patients were all used up by rarer classes) raises
   :class:`SplitError`.

K-fold (``split.kfold > 1``): the same procedure with k equal-share bins (the folds). Fold
``split.fold`` is the test split, fold ``(fold + 1) % k`` is the validation split and the other
k - 2 folds are train. The fold assignment depends only on the seed, so running ``fold = 0..k-1``
gives k test splits that partition the patients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from lusaug.config import Params, SplitParams
from lusaug.data.hashing import hex_to_words, pairs_within, phash_file
from lusaug.data.manifest import SPLITS
from lusaug.errors import LusaugError

logger = logging.getLogger(__name__)


class SplitError(LusaugError, ValueError):
    """The manifest cannot be split with every class in every split."""


# ------------------------------------------------------------------- patients linked by frames

_SHOW = 5  # unreadable frames named in an error message


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
        SplitError: Columns missing, or PNGs that cannot be read (they are named).
    """
    missing = [c for c in ("path", "patient_id", "sha1") if c not in manifest.columns]
    if missing:
        raise SplitError(f"manifest lacks column(s) {missing} needed to link duplicate frames")
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
        more = f" (+{len(bad) - _SHOW} more)" if len(bad) > _SHOW else ""
        raise SplitError(
            f"{len(bad)} frame(s) cannot be read to look for duplicate frames across patients: "
            f"{', '.join(bad[:_SHOW])}{more}; run the frames stage again"
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


def _units(
    patient_classes: Mapping[str, set[str]], links: PatientLinks | None
) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """Assignment units (patients, or linked groups): unit -> classes, unit -> patients."""
    classes: dict[str, set[str]] = {}
    members: dict[str, list[str]] = {}
    for pid in sorted(patient_classes):
        unit = links.unit(pid) if links is not None else pid
        classes.setdefault(unit, set()).update(patient_classes[pid])
        members.setdefault(unit, []).append(pid)
    return classes, members


def _patient_classes(manifest: pd.DataFrame, classes: Sequence[str]) -> dict[str, set[str]]:
    """Map each patient to the set of classes it has frames of (checks labels and ids)."""
    missing = [c for c in ("label", "patient_id") if c not in manifest.columns]
    if missing:
        raise SplitError(f"manifest lacks column(s) {missing}")
    if manifest.empty:
        raise SplitError("manifest is empty: no frames to split")
    labels = manifest["label"].astype(str)
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise SplitError(f"manifest label(s) {unknown} are not in base.classes {list(classes)}")
    pids = manifest["patient_id"]
    empty = pids.isna() | (pids.astype(str).str.strip() == "")
    if empty.any():
        where = (
            manifest.loc[empty, "video_id"] if "video_id" in manifest else manifest.index[empty]
        )
        videos = sorted(set(map(str, where)))[:5]
        raise SplitError(
            f"{int(empty.sum())} frame(s) have no patient_id (videos {videos}); "
            "the frames stage must fill it (one patient per file when unknown)"
        )
    pairs = pd.DataFrame({"patient_id": pids.astype(str), "label": labels}).drop_duplicates()
    out: dict[str, set[str]] = {}
    for pid, label in pairs.itertuples(index=False):
        out.setdefault(pid, set()).add(label)
    return out


def target_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` patients over bins by largest remainder, with at least one per bin.

    Args:
        n: Number of patients of a class (at least ``len(fractions)``).
        fractions: Share per bin, summing to 1.

    Returns:
        Patients per bin, summing to ``n``; e.g. 3 -> [1, 1, 1] and 4 -> [2, 1, 1] for
        fractions (0.6, 0.2, 0.2).
    """
    raw = [n * f for f in fractions]
    counts = [math.floor(r) for r in raw]
    # Largest fractional part first; earlier bins win ties so the result is stable.
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        if counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
            if counts[donor] <= 1:
                break
            counts[donor] -= 1
            counts[i] = 1
    return counts


def _too_few(units: list[str], unit_members: Mapping[str, list[str]] | None) -> str:
    """'N patient(s)', or the linked groups when linking is why there are too few units."""
    groups = [unit_members[u] for u in units] if unit_members else [[u] for u in units]
    if all(len(g) == 1 for g in groups):
        return f"{len(units)} patient(s)"
    linked = [
        "+".join(g[:_SHOW]) + (f"+... ({len(g)} patients)" if len(g) > _SHOW else "")
        for g in groups
        if len(g) > 1
    ]
    return (
        f"{len(units)} independent patient group(s), as patients that share identical or "
        f"near-identical frames stay together ({'; '.join(linked)})"
    )


def _check_counts(
    patient_classes: Mapping[str, set[str]],
    classes: Sequence[str],
    bin_names: Sequence[str],
    unit_members: Mapping[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """Units of each class (sorted); raises when a class has fewer units than bins."""
    members = {c: sorted(p for p, cs in patient_classes.items() if c in cs) for c in classes}
    for c in classes:
        if len(members[c]) < len(bin_names):
            raise SplitError(
                f"class {c!r} has {_too_few(members[c], unit_members)}; at least "
                f"{len(bin_names)} are needed so that it appears in every one of "
                f"{list(bin_names)} (add patients or drop the class)"
            )
    return members


def _bin_names(params: SplitParams) -> list[str]:
    return [f"fold {i}" for i in range(params.kfold)] if params.kfold > 1 else list(SPLITS)


def _assign(
    patient_classes: Mapping[str, set[str]],
    classes: Sequence[str],
    fractions: Sequence[float],
    bin_names: Sequence[str],
    seed: int,
    unit_members: Mapping[str, list[str]] | None = None,
) -> dict[str, int]:
    """Assign every unit to a bin index (see the module docstring for the procedure).

    ``patient_classes`` maps each unit (a patient, or a group of linked patients) to its classes;
    ``unit_members`` (unit -> patients) only makes the error messages name linked groups.
    """
    n_bins = len(fractions)
    members = _check_counts(patient_classes, classes, bin_names, unit_members)
    targets = {c: target_counts(len(members[c]), fractions) for c in classes}
    # Rarest first; ties by class order so the result does not depend on dict ordering.
    order = sorted(classes, key=lambda c: (len(members[c]), list(classes).index(c)))
    rng = np.random.default_rng(seed)
    placed: dict[str, int] = {}
    counts = {c: [0] * n_bins for c in classes}  # patients of class c placed per bin

    def place(pid: str, b: int) -> None:
        placed[pid] = b
        for c in patient_classes[pid]:
            counts[c][b] += 1

    for step, c in enumerate(order):
        later = set(order[step + 1 :])
        todo = [members[c][i] for i in rng.permutation(len(members[c]))]
        todo = [p for p in todo if p not in placed]
        for pid in todo:
            others = [o for o in patient_classes[pid] if o in later]
            keys = [
                (
                    counts[c][b] == 0,  # a bin that still lacks the class comes first
                    targets[c][b] - counts[c][b],  # then the bin furthest below its target
                    sum(targets[o][b] - counts[o][b] for o in others),  # room for other classes
                    fractions[b],
                    -b,
                )
                for b in range(n_bins)
            ]
            place(pid, max(range(n_bins), key=keys.__getitem__))
        empty = [bin_names[b] for b in range(n_bins) if counts[c][b] == 0]
        if empty:
            raise SplitError(
                f"class {c!r} ({len(members[c])} patients) cannot appear in {empty}: its patients "
                "were all placed through rarer classes they also belong to"
            )
    return placed


def _expand(bins: Mapping[str, int], unit_members: Mapping[str, list[str]]) -> dict[str, int]:
    return {pid: bins[unit] for unit, pids in unit_members.items() for pid in pids}


def assign_patient_folds(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    kfold: int,
    seed: int,
    links: PatientLinks | None = None,
) -> dict[str, int]:
    """Assign each patient to one of ``kfold`` folds, stratified by class.

    Args:
        manifest: Frame manifest (needs ``label`` and ``patient_id``).
        classes: Class names (base.classes).
        kfold: Number of folds (>= 2); every class needs at least this many patients.
        seed: Seed; the assignment does not depend on which fold is later used as test.
        links: Linked patients (:func:`link_patients`), kept in one fold; None = none.

    Returns:
        Patient id -> fold index in ``[0, kfold)``.
    """
    if kfold < 2:
        raise SplitError(f"kfold must be at least 2, got {kfold}")
    units, members = _units(_patient_classes(manifest, classes), links)
    names = [f"fold {i}" for i in range(kfold)]
    return _expand(_assign(units, classes, [1.0 / kfold] * kfold, names, seed, members), members)


def fold_roles(kfold: int, fold: int) -> dict[int, str]:
    """Fold index -> split: ``fold`` is test, the next fold (cyclically) is val, the rest train."""
    roles = {i: "train" for i in range(kfold)}
    roles[fold % kfold] = "test"
    roles[(fold + 1) % kfold] = "val"
    return roles


def patient_splits(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    params: SplitParams,
    seed: int,
    links: PatientLinks | None = None,
) -> dict[str, str]:
    """Patient id -> ``train``/``val``/``test`` (hold-out by fractions, or k-fold roles)."""
    if params.kfold > 1:
        if params.kfold < len(SPLITS):
            raise SplitError(f"kfold must be at least {len(SPLITS)} (test, val, train folds)")
        folds = assign_patient_folds(manifest, classes, params.kfold, seed, links)
        roles = fold_roles(params.kfold, params.fold)
        return {pid: roles[f] for pid, f in folds.items()}
    units, members = _units(_patient_classes(manifest, classes), links)
    fractions = [float(params.fractions[s]) for s in SPLITS]
    bins = _assign(units, classes, fractions, SPLITS, seed, members)
    return {pid: SPLITS[b] for pid, b in _expand(bins, members).items()}


def split_by_patient(
    manifest: pd.DataFrame,
    classes: list[str],
    params: SplitParams,
    seed: int,
    links: PatientLinks | None = None,
) -> pd.DataFrame:
    """Return the manifest plus a ``split`` column, grouped by patient and stratified by class.

    Args:
        manifest: Frame manifest (``MANIFEST_COLUMNS``).
        classes: Class names (base.classes); every label must be one of them.
        params: The ``split`` section (fractions, kfold, fold).
        seed: Seed (base.seed); the same seed gives the same split.
        links: Patients that share identical/near-identical frames (:func:`link_patients`);
            each linked group is placed as one unit. None = group by patient only.

    Returns:
        A copy of ``manifest`` with a ``split`` column in ``train``/``val``/``test``.

    Raises:
        SplitError: A class has too few patients to appear in every split (the message names the
            class and its patient count), a label is unknown, or a patient id is missing.
    """
    mapping = patient_splits(manifest, classes, params, seed, links)
    out = manifest.copy()
    out["split"] = out["patient_id"].astype(str).map(mapping).astype("string")
    return out


def split_summary(
    splits: pd.DataFrame,
    classes: Sequence[str],
    params: SplitParams,
    seed: int,
    links: PatientLinks | None = None,
) -> dict[str, Any]:
    """Counts for ``reports/split.json``: patients, videos and frames per class per split.

    A patient (or video) with frames of two classes counts once under each class. With
    ``links``, ``linked_patients`` lists every group of patients kept together, its split and
    the frame pairs that link it (each with a one-sentence reason).
    """
    per_class: dict[str, dict[str, dict[str, int]]] = {}
    for c in classes:
        sub = splits[splits["label"] == c]
        per_class[c] = {
            s: {
                "patients": int(sub.loc[sub["split"] == s, "patient_id"].nunique()),
                "videos": int(sub.loc[sub["split"] == s, "video_id"].nunique()),
                "frames": int((sub["split"] == s).sum()),
            }
            for s in SPLITS
        }
    totals = {
        s: {
            "patients": int(splits.loc[splits["split"] == s, "patient_id"].nunique()),
            "videos": int(splits.loc[splits["split"] == s, "video_id"].nunique()),
            "frames": int((splits["split"] == s).sum()),
        }
        for s in SPLITS
    }
    multi = splits.groupby("patient_id")["label"].nunique()
    settings: dict[str, Any] = {
        "seed": seed,
        "grouping": "patient_id" if links is None else "patient_id + shared frames",
        "stratify": "label",
        "kfold": params.kfold,
    }
    if params.kfold > 1:
        roles = fold_roles(params.kfold, params.fold)
        settings.update(
            mode="kfold",
            fold=params.fold,
            test_fold=params.fold,
            val_fold=(params.fold + 1) % params.kfold,
            train_folds=sorted(f for f, r in roles.items() if r == "train"),
        )
    else:
        settings.update(mode="holdout", fractions={s: params.fractions[s] for s in SPLITS})
    summary = {
        "settings": settings,
        "classes": per_class,
        "totals": totals,
        "n_frames": len(splits),
        "n_patients": int(splits["patient_id"].nunique()),
        "multi_class_patients": sorted(map(str, multi[multi > 1].index)),
    }
    if links is not None:
        summary["linked_patients"] = _linked_summary(splits, links)
    return summary


def _linked_summary(splits: pd.DataFrame, links: PatientLinks) -> dict[str, Any]:
    pids = splits["patient_id"].astype(str)
    groups = []
    for members in links.groups().values():
        rows = splits[pids.isin(members)]
        member_set = set(members)
        groups.append(
            {
                "patients": members,
                "labels": sorted(set(map(str, rows["label"]))),
                "split": sorted(set(map(str, rows["split"])), key=SPLITS.index),
                "links": [e for e in links.links if set(e["patients"]) <= member_set],
            }
        )
    return {
        "hash_size": links.hash_size,
        "max_distance": links.max_distance,
        "n_groups": len(groups),
        "n_linked_patients": sum(len(g["patients"]) for g in groups),
        "groups": groups,
    }


def split_frames(
    manifest: pd.DataFrame, root: Path | str, params: Params
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ``split`` stage: link patients by shared frames, split, summarise.

    Args:
        manifest: Frame manifest (``data/frames.csv``).
        root: Folder the manifest paths are relative to (the CSV's folder).
        params: Typed config (``base.seed``, ``base.classes``, ``split``, and
            ``validate.phash_size`` / ``validate.phash_max_distance`` for the linking).

    Returns:
        ``(splits, summary)``: the manifest plus ``split``, and the ``reports/split.json`` dict.

    Raises:
        SplitError: See :func:`split_by_patient` and :func:`link_patients`.
    """
    classes, seed = params.base.classes, params.base.seed
    # Bad labels or ids, or too few patients for a class, fail before any frame is hashed
    # (linking can only lower the number of independent units).
    _check_counts(_patient_classes(manifest, classes), classes, _bin_names(params.split))
    v = params.validate
    links = link_patients(manifest, root, v.phash_size, v.phash_max_distance)
    for link in links.links[:_SHOW]:
        logger.info("split: %s", link["reason"])
    if len(links.links) > _SHOW:
        logger.info("split: ... and %d more linked patient pairs", len(links.links) - _SHOW)
    try:
        splits = split_by_patient(manifest, classes, params.split, seed, links=links)
    except SplitError as err:
        if not links.links:
            raise
        reasons = [e["reason"] for e in links.links[:_SHOW]]
        more = f" (+{len(links.links) - _SHOW} more)" if len(links.links) > _SHOW else ""
        raise SplitError(f"{err}. Linked: " + "; ".join(reasons) + more) from err
    return splits, split_summary(splits, classes, params.split, seed, links=links)
