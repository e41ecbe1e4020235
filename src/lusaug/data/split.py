"""Patient-grouped, class-stratified splits: cross-validation folds (default) or one hold-out.

The unit of assignment is the patient, or a group of patients that share identical or
near-identical frames (:mod:`lusaug.data.linking`): all frames of a unit land in one split,
whatever their class (a POCUS patient may have clips of two classes). Stratification is by class.

Two schemes (``split.scheme``):

- ``cv`` (default): the study's question is about a class with a handful of patients, so every
  patient group of the rarest class is tested exactly once. k = the number of groups of the
  rarest class, capped by ``split.max_folds``; units are assigned to k equal-share test folds
  (the rarest class first, one group per fold; the other classes stratified over the folds). In
  fold f the test split is fold f; of the other units, a share ``split.val_fraction`` of each
  class's units validates and the rest trains (seeded per fold). A class with a single unit
  left outside the test fold cannot be in both train and validation: it trains, the fold's
  ``val_missing`` lists it, and validation macro averages run over the classes present.
- ``holdout``: one train/val/test split by ``split.fractions`` (fold 0).

Assignment (deterministic for a seed, independent of the manifest's row order): for every class,
list its units; per class, target unit counts per bin come from the shares by largest remainder,
with at least one unit per bin; classes are processed from the rarest to the most common; units
already placed through a rarer class count towards this class's bins; the remaining ones, in a
seeded random order, go first to bins that still lack the class, then to the bin furthest below
its target (ties prefer the bin where the unit's other, not yet processed classes have most
room). A class that cannot appear in every bin raises :class:`SplitError` naming it.

DVC needs the folds before it runs (``split.folds`` drives ``train``, ``split.items`` = the folds
+ ``final`` the stages the final model also reads), so the split checks that ``split.folds`` is
``[0, ..., k-1]`` for the k the data gives and says how to fix it otherwise (``lusaug folds
--write``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lusaug.core.config import FINAL_FOLD, SplitParams, ValidateParams
from lusaug.data.assignment import (
    SplitError,
    assign_units,
    check_counts,
    expand_units,
    patient_classes,
    too_few,
    units_of,
)
from lusaug.data.linking import SHOW, PatientLinks, link_patients
from lusaug.data.manifest import SPLITS

logger = logging.getLogger(__name__)

SCHEMES = ("cv", "holdout")
FOLD_FILE = "fold-{fold}.csv"  # one split file per fold inside data/splits/
# The final model's split (every patient trains or validates), named as one more fold: it is the
# last item of the per-fold stages (split.items), which name their files fold-${item}.
FINAL_FILE = FOLD_FILE.format(fold=FINAL_FOLD)
VAL_SEED_OFFSET = 1  # fold f draws its validation patients with seed + VAL_SEED_OFFSET + f


# ---------------------------------------------------------------- cross-validation folds


@dataclass(frozen=True)
class FoldAssignment:
    """Which test fold every patient belongs to, and why there are k folds."""

    fold_of: dict[str, int]  # patient id -> test fold in [0, k)
    k: int
    rare_class: str  # the class with the fewest independent patient groups
    rare_groups: list[list[str]]  # its groups (linked patients together), sorted

    def test_patients(self, fold: int) -> set[str]:
        return {p for p, f in self.fold_of.items() if f == fold}


def _rarest(units: Mapping[str, set[str]], classes: Sequence[str]) -> tuple[str, list[str]]:
    members = {c: sorted(u for u, cs in units.items() if c in cs) for c in classes}
    rare = min(classes, key=lambda c: (len(members[c]), list(classes).index(c)))
    return rare, members[rare]


def _check_cv_units(
    units: Mapping[str, set[str]], members: Mapping[str, list[str]], classes: Sequence[str]
) -> tuple[str, list[str]]:
    """The rarest class and its units; raises when it has fewer than 2 (no cross-validation)."""
    rare, rare_units = _rarest(units, classes)
    if len(rare_units) < 2:
        raise SplitError(
            f"class {rare!r} has {too_few(rare_units, members)}: cross-validation needs at "
            "least 2 (add patients, drop the class, or use split.scheme: holdout)"
        )
    return rare, rare_units


def count_folds(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    max_folds: int,
    links: PatientLinks | None = None,
) -> tuple[int, str, int]:
    """(k, rarest class, its independent patient groups) for the cv scheme."""
    units, _ = units_of(patient_classes(manifest, classes), links)
    rare, rare_units = _rarest(units, classes)
    return min(len(rare_units), max_folds), rare, len(rare_units)


def assign_cv_folds(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    max_folds: int,
    seed: int,
    links: PatientLinks | None = None,
) -> FoldAssignment:
    """Every patient to one of k test folds; each rare-class group is in exactly one fold.

    Args:
        manifest: Frame manifest (needs ``label`` and ``patient_id``).
        classes: Class names (base.classes).
        max_folds: Cap on k (``split.max_folds``).
        seed: Seed of the assignment (base.seed).
        links: Linked patients (:func:`lusaug.data.linking.link_patients`), kept together.

    Raises:
        SplitError: The rarest class has fewer than 2 independent groups, or a class cannot
            appear in every test fold.
    """
    units, members = units_of(patient_classes(manifest, classes), links)
    rare, rare_units = _check_cv_units(units, members, classes)
    k = min(len(rare_units), max_folds)
    names = [f"test fold {i}" for i in range(k)]
    bins = assign_units(units, classes, [1.0 / k] * k, names, seed, members)
    groups = sorted(members[u] for u in rare_units)
    return FoldAssignment(expand_units(bins, members), k, rare, groups)


def fold_roles(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    test_patients: set[str],
    val_fraction: float,
    seed: int,
    links: PatientLinks | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Patient -> train/val/test for one fold, and the classes validation had to go without.

    The test patients are given; of the rest, ``val_fraction`` of each class's units validate.
    A class with one unit outside the test fold trains (it is listed as missing from val): that
    unit trains even when it also holds other classes, and a class whose units outside the test
    fold all train that way is missing from val too.
    """
    units, members = units_of(patient_classes(manifest, classes), links)
    rest = {u: cs for u, cs in units.items() if not set(members[u]) & test_patients}
    counts = {c: sum(c in cs for cs in rest.values()) for c in classes}
    too_few_left = {c for c in classes if counts[c] < 2}
    forced = {u for u, cs in rest.items() if cs & too_few_left}  # they train
    free = {c: sum(c in cs for u, cs in rest.items() if u not in forced) for c in classes}
    both = [c for c in classes if c not in too_few_left and free[c] >= 1]
    missing = [c for c in classes if c not in both]
    roles = {p: "test" for p in test_patients}
    placed: dict[str, int] = {}
    if both:
        sub = {u: cs & set(both) for u, cs in rest.items() if cs & set(both)}
        names = ["train", "val"]
        fixed = {u: 0 for u in sub if u in forced}
        shares = [1.0 - val_fraction, val_fraction]
        placed = assign_units(sub, both, shares, names, seed, members, fixed)
    for unit in rest:
        split = "val" if placed.get(unit) == 1 else "train"
        roles.update({p: split for p in members[unit]})
    return roles, missing


# ---------------------------------------------------------------- both schemes


@dataclass
class FoldSplit:
    """One fold: the manifest plus ``split`` (train/val/test), and what validation lacks."""

    fold: int | None  # None: the final model's split (no test patients)
    frames: pd.DataFrame
    val_missing: list[str] = field(default_factory=list)


def fold_file(fold: int | str | None) -> str:
    """File name of fold ``fold``'s split inside the splits folder (None: the final split)."""
    return FINAL_FILE if fold is None else FOLD_FILE.format(fold=fold)


def final_split(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    val_fraction: float,
    seed: int,
    links: PatientLinks | None = None,
) -> FoldSplit:
    """The final model's split: ``val_fraction`` of each class's patient groups validate (early
    stopping), all the others train; nobody is held out for testing."""
    roles, missing = fold_roles(manifest, classes, set(), val_fraction, seed, links)
    return FoldSplit(None, _with_split(manifest, roles), missing)


def relocate(frames: pd.DataFrame, levels: int = 1) -> pd.DataFrame:
    """The manifest with ``path`` made relative to a folder ``levels`` below the manifest's
    (paths are relative to the CSV that holds them; fold files sit in data/splits/)."""
    out = frames.copy()
    out["path"] = ("../" * levels + out["path"].astype(str)).astype("string")
    return out


def _with_split(manifest: pd.DataFrame, roles: Mapping[str, str]) -> pd.DataFrame:
    out = manifest.copy()
    out["split"] = out["patient_id"].astype(str).map(roles).astype("string")
    return out


def holdout_split(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    fractions: Mapping[str, float],
    seed: int,
    links: PatientLinks | None = None,
) -> FoldSplit:
    """One train/val/test split: ``fractions`` of each class's patient groups, every class in
    every split."""
    units, members = units_of(patient_classes(manifest, classes), links)
    shares = [float(fractions[s]) for s in SPLITS]
    bins = assign_units(units, classes, shares, SPLITS, seed, members)
    roles = {pid: SPLITS[b] for pid, b in expand_units(bins, members).items()}
    return FoldSplit(0, _with_split(manifest, roles))


def make_splits(
    manifest: pd.DataFrame,
    classes: Sequence[str],
    cfg: SplitParams,
    seed: int,
    links: PatientLinks | None = None,
) -> tuple[list[FoldSplit], FoldAssignment | None]:
    """Every fold's split for ``split.scheme`` (holdout: one fold), and the cv assignment."""
    if cfg.scheme == "holdout":
        return [holdout_split(manifest, classes, cfg.fractions, seed, links)], None
    assignment = assign_cv_folds(manifest, classes, cfg.max_folds, seed, links)
    folds = []
    for f in range(assignment.k):
        roles, missing = fold_roles(
            manifest,
            classes,
            assignment.test_patients(f),
            cfg.val_fraction,
            seed + VAL_SEED_OFFSET + f,
            links,
        )
        folds.append(FoldSplit(f, _with_split(manifest, roles), missing))
    return folds, assignment


FINAL_SEED_OFFSET = 999  # the final split draws its validation patients with seed + this


def check_fold_list(cfg: SplitParams, k: int, why: str) -> None:
    """``split.folds`` must name exactly the folds the data gives (DVC runs one item each)."""
    expected = list(range(k))
    if list(cfg.folds) != expected:
        items = f"[{', '.join(map(str, [*expected, FINAL_FOLD]))}]"
        raise SplitError(
            f"the data gives {k} fold(s) ({why}) but split.folds is {list(cfg.folds)}; set "
            f"split.folds: {expected} and split.items: {items} (`lusaug folds --write`, or "
            f"`dvc exp run -S 'split.folds={expected}' -S 'split.items={items}'`) so that DVC "
            "runs one item per fold"
        )


# ---------------------------------------------------------------- summary (reports/split.json)


def _counts(frames: pd.DataFrame) -> dict[str, int]:
    return {
        "patients": int(frames["patient_id"].nunique()),
        "videos": int(frames["video_id"].nunique()),
        "frames": len(frames),
    }


def fold_summary(fold: FoldSplit, classes: Sequence[str]) -> dict[str, Any]:
    """Patients / videos / frames per class and split of one fold (a patient with frames of
    two classes counts once under each class)."""
    df = fold.frames
    per_class = {
        c: {s: _counts(df[(df["label"] == c) & (df["split"] == s)]) for s in SPLITS}
        for c in classes
    }
    return {
        "classes": per_class,
        "totals": {s: _counts(df[df["split"] == s]) for s in SPLITS},
        "test_patients": sorted(map(str, df.loc[df["split"] == "test", "patient_id"].unique())),
        "val_missing": list(fold.val_missing),
    }


def split_summary(
    folds: Sequence[FoldSplit],
    classes: Sequence[str],
    cfg: SplitParams,
    seed: int,
    assignment: FoldAssignment | None = None,
    links: PatientLinks | None = None,
) -> dict[str, Any]:
    """What ``reports/split.json`` holds: settings, per-fold counts, linked patients."""
    frames = folds[0].frames
    settings: dict[str, Any] = {
        "scheme": cfg.scheme,
        "seed": seed,
        "grouping": "patient_id" if links is None else "patient_id + shared frames",
        "stratify": "label",
        "k": len(folds),
    }
    if assignment is not None:
        settings.update(
            max_folds=cfg.max_folds,
            val_fraction=cfg.val_fraction,
            rare_class=assignment.rare_class,
            rare_groups=assignment.rare_groups,
        )
    else:
        settings["fractions"] = {s: cfg.fractions[s] for s in SPLITS}
    multi = frames.groupby("patient_id")["label"].nunique()
    summary: dict[str, Any] = {
        "settings": settings,
        "folds": {str(f.fold): fold_summary(f, classes) for f in folds},
        "n_frames": len(frames),
        "n_patients": int(frames["patient_id"].nunique()),
        "multi_class_patients": sorted(map(str, multi[multi > 1].index)),
    }
    if links is not None:
        summary["linked_patients"] = _linked_summary(folds, links)
    return summary


def _linked_summary(folds: Sequence[FoldSplit], links: PatientLinks) -> dict[str, Any]:
    groups = []
    for members in links.groups().values():
        member_set = set(members)
        entry: dict[str, Any] = {"patients": members, "links": []}
        for f in folds:
            rows = f.frames[f.frames["patient_id"].astype(str).isin(members)]
            entry["labels"] = sorted(set(map(str, rows["label"])))
            entry.setdefault("split", {})[str(f.fold)] = sorted(
                set(map(str, rows["split"])), key=SPLITS.index
            )
        entry["links"] = [e for e in links.links if set(e["patients"]) <= member_set]
        groups.append(entry)
    return {
        "hash_size": links.hash_size,
        "max_distance": links.max_distance,
        "n_groups": len(groups),
        "n_linked_patients": sum(len(g["patients"]) for g in groups),
        "groups": groups,
    }


# ---------------------------------------------------------------- the stage


def split_frames(
    manifest: pd.DataFrame,
    root: Path | str,
    cfg: SplitParams,
    hashing: ValidateParams,
    classes: Sequence[str],
    seed: int,
) -> tuple[list[FoldSplit], dict[str, Any]]:
    """The ``split`` stage: link patients by shared frames, make every fold (and the final
    model's split, last, with ``fold`` None), summarise.

    Args:
        manifest: Frame manifest (``data/frames.csv``).
        root: Folder the manifest paths are relative to (the CSV's folder).
        cfg: The ``split`` section.
        hashing: The ``validate`` section (pHash size and distance: the same near-identical
            test ``validate`` applies).
        classes: base.classes.
        seed: base.seed.

    Raises:
        SplitError: A class has too few patients, a label or patient id is bad, or
            ``split.folds`` does not match the folds the data gives.
    """
    # Bad labels or ids, or too few patients, fail before any frame is hashed (linking can only
    # lower the number of independent units).
    units, members = units_of(patient_classes(manifest, classes), None)
    if cfg.scheme == "holdout":
        check_counts(units, classes, SPLITS, members)
    else:
        _check_cv_units(units, members, classes)
    links = link_patients(manifest, root, hashing.phash_size, hashing.phash_max_distance)
    for link in links.links[:SHOW]:
        logger.info("split: %s", link["reason"])
    if len(links.links) > SHOW:
        logger.info("split: ... and %d more linked patient pairs", len(links.links) - SHOW)
    try:
        folds, assignment = make_splits(manifest, classes, cfg, seed, links)
    except SplitError as err:
        if not links.links:
            raise
        reasons = [e["reason"] for e in links.links[:SHOW]]
        more = f" (+{len(links.links) - SHOW} more)" if len(links.links) > SHOW else ""
        raise SplitError(f"{err}. Linked: " + "; ".join(reasons) + more) from err
    if assignment is not None:
        why = (
            f"{len(assignment.rare_groups)} independent patient group(s) of the rarest class "
            f"{assignment.rare_class!r}, split.max_folds {cfg.max_folds}"
        )
    else:
        why = "split.scheme holdout is one fold"
    check_fold_list(cfg, len(folds), why)
    final = final_split(manifest, classes, cfg.val_fraction, seed + FINAL_SEED_OFFSET, links)
    summary = split_summary(folds, classes, cfg, seed, assignment, links)
    summary["final"] = fold_summary(final, classes)
    return [*folds, final], summary
