"""Assign patients (or groups of linked patients) to bins, stratified by class.

The one algorithm both split schemes use (see :mod:`lusaug.data.split`): per class, target unit
counts per bin from the shares by largest remainder with at least one unit per bin; classes from
the rarest to the most common; units already placed through a rarer class count towards this
class's bins; the rest, in a seeded random order, go first to bins that still lack the class,
then to the bin furthest below its target, ties preferring the bin where the unit's other, not
yet processed classes have most room. Deterministic for a seed, whatever the row order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from lusaug.core.errors import LusaugError
from lusaug.data.linking import SHOW, PatientLinks


class SplitError(LusaugError, ValueError):
    """The manifest cannot be split with every class where it must be."""


def units_of(
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


def patient_classes(manifest: pd.DataFrame, classes: Sequence[str]) -> dict[str, set[str]]:
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


def too_few(units: list[str], unit_members: Mapping[str, list[str]] | None) -> str:
    """'N patient(s)', or the linked groups when linking is why there are too few units."""
    groups = [unit_members[u] for u in units] if unit_members else [[u] for u in units]
    if all(len(g) == 1 for g in groups):
        return f"{len(units)} patient(s)"
    linked = [
        "+".join(g[:SHOW]) + (f"+... ({len(g)} patients)" if len(g) > SHOW else "")
        for g in groups
        if len(g) > 1
    ]
    return (
        f"{len(units)} independent patient group(s), as patients that share identical or "
        f"near-identical frames stay together ({'; '.join(linked)})"
    )


def check_counts(
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
                f"class {c!r} has {too_few(members[c], unit_members)}; at least "
                f"{len(bin_names)} are needed so that it appears in every one of "
                f"{list(bin_names)} (add patients or drop the class)"
            )
    return members


def assign_units(
    patient_classes: Mapping[str, set[str]],
    classes: Sequence[str],
    fractions: Sequence[float],
    bin_names: Sequence[str],
    seed: int,
    unit_members: Mapping[str, list[str]] | None = None,
    fixed: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Assign every unit to a bin index (see the module docstring for the procedure).

    ``patient_classes`` maps each unit (a patient, or a group of linked patients) to its classes;
    ``unit_members`` (unit -> patients) only makes the error messages name linked groups;
    ``fixed`` (unit -> bin) places units before any class is processed (they count towards
    their classes' bins like units placed through a rarer class).
    """
    n_bins = len(fractions)
    members = check_counts(patient_classes, classes, bin_names, unit_members)
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

    for pid, b in sorted((fixed or {}).items()):
        place(pid, b)
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


def expand_units(bins: Mapping[str, int], unit_members: Mapping[str, list[str]]) -> dict[str, int]:
    return {pid: bins[unit] for unit, pids in unit_members.items() for pid in pids}
