"""The patient-grouped, class-stratified split: cross-validation folds and the hold-out scheme.

Properties (hypothesis) of the cv fold assignment, the per-fold train/val roles and the final
split; the hold-out properties; rare classes, multi-class patients, patients linked by
identical or near-identical frames (real PNGs); check_fold_list; the stage script.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from lusaug.core.config import FINAL_FOLD, SplitParams
from lusaug.data.assignment import SplitError, target_counts
from lusaug.data.linking import LinkError, link_patients
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest, write_manifest
from lusaug.data.split import (
    assign_cv_folds,
    check_fold_list,
    count_folds,
    final_split,
    fold_file,
    holdout_split,
    make_splits,
    split_frames,
    split_summary,
)
from tests.helpers.split_data import (
    finish,
    first_frame,
    links_from_pairs,
    make_manifest,
    params_file,
    plant_copy,
    roles,
    start_stage,
    with_pngs,
)

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
HOLDOUT = SplitParams("holdout", [0], [0, FINAL_FOLD], 5, 0.25, FRACTIONS)


def cv(folds: int = 3, max_folds: int = 5, val_fraction: float = 0.25) -> SplitParams:
    k = list(range(folds))
    return SplitParams("cv", k, [*k, FINAL_FOLD], max_folds, val_fraction, FRACTIONS)


def holdout(df, classes, seed, links=None) -> pd.DataFrame:
    return holdout_split(df, classes, FRACTIONS, seed, links).frames


def role_map(df: pd.DataFrame) -> dict[str, str]:
    """Patient -> its one split (fails when a patient has two)."""
    out = {}
    for p, s in roles(df).items():
        assert len(s) == 1, f"patient {p} has frames in {sorted(s)}"
        out[p] = next(iter(s))
    return out


# ------------------------------------------------------------------- target counts


@pytest.mark.parametrize(
    ("n", "expected"),
    [(3, [1, 1, 1]), (4, [2, 1, 1]), (5, [3, 1, 1]), (10, [6, 2, 2]), (7, [4, 2, 1])],
)
def test_target_counts_spread_rare_classes(n, expected):
    assert target_counts(n, [0.6, 0.2, 0.2]) == expected


def test_target_counts_even_folds():
    assert target_counts(7, [0.2] * 5) == [2, 2, 1, 1, 1]
    assert target_counts(2, [0.75, 0.25]) == [1, 1]  # cv validation: 2 units -> one each


# ------------------------------------------------------------------- hold-out examples


def test_holdout_rare_class_spread_one_patient_per_split():
    df = holdout(make_manifest({"a": 8, "b": 3}), ["a", "b"], seed=0)
    per_split = df[df["label"] == "b"].groupby("split")["patient_id"].nunique().to_dict()
    assert per_split == {"train": 1, "val": 1, "test": 1}
    four = holdout(make_manifest({"a": 8, "b": 4}), ["a", "b"], seed=0)
    per_split = four[four["label"] == "b"].groupby("split")["patient_id"].nunique().to_dict()
    assert per_split == {"train": 2, "val": 1, "test": 1}


def test_holdout_two_patients_raise_naming_the_class():
    with pytest.raises(SplitError, match=r"class 'viral' has 2 patient.*at least 3"):
        holdout(make_manifest({"regular": 6, "viral": 2}), ["regular", "viral"], seed=1)


def test_class_without_frames_is_named():
    df = make_manifest({"regular": 6})
    with pytest.raises(SplitError, match=r"class 'viral' has 0 patient"):
        holdout(df, ["regular", "viral"], seed=0)
    with pytest.raises(SplitError, match=r"class 'viral' has 0 patient.*cross-validation"):
        assign_cv_folds(df, ["regular", "viral"], 5, seed=0)


def test_unknown_label_and_missing_patient_are_clear_errors():
    df = make_manifest({"a": 3, "b": 3})
    for split in (lambda d, c: holdout(d, c, 0), lambda d, c: make_splits(d, c, cv(), 0)):
        with pytest.raises(SplitError, match="not in base.classes"):
            split(df, ["a"])
    df.loc[0, "patient_id"] = ""
    with pytest.raises(
        SplitError, match=r"1 frame\(s\) have no patient_id \(videos \['a-p0-v0'\]"
    ):
        make_splits(df, ["a", "b"], cv(), 0)


def test_multi_class_patient_stays_in_one_split_and_counts_for_both_classes():
    # Like POCUS patient 7 (Pneu_ and Reg_ clips): a patient placed through its rarer class
    # must count towards the other class too, so that class still gets 1/1/1.
    df = make_manifest(
        {"regular": 2, "pneumonia": 3, "covid": 6}, extra=[("pneumonia-p0", "regular")]
    )
    classes = ["regular", "covid", "pneumonia"]
    for seed in range(10):
        fold = holdout_split(df, classes, FRACTIONS, seed)
        out = fold.frames
        role_map(out)
        reg = out[out["label"] == "regular"].groupby("split")["patient_id"].nunique()
        assert reg.to_dict() == {"train": 1, "val": 1, "test": 1}
        summary = split_summary([fold], classes, HOLDOUT, seed)
        assert summary["multi_class_patients"] == ["pneumonia-p0"]
        entry = summary["folds"]["0"]
        assert sum(v["patients"] for v in entry["classes"]["regular"].values()) == 3
        assert entry["totals"]["train"]["frames"] == int((out["split"] == "train").sum())
        assert summary["settings"]["fractions"] == FRACTIONS


def test_shared_patients_of_a_rare_class_are_spread_for_the_next_class():
    # a: 4 patients (2/1/1); b: 3 patients, two of them shared with a. A naive assignment can
    # put both shared patients in train and leave b with no room for val or test.
    df = make_manifest({"a": 4, "b": 1, "c": 8}, extra=[("a-p0", "b"), ("a-p1", "b")])
    for seed in range(30):
        out = holdout(df, ["a", "b", "c"], seed)
        for label in ("a", "b", "c"):
            assert set(out.loc[out["label"] == label, "split"]) == set(SPLITS), (seed, label)


# ------------------------------------------------------------------- hold-out properties


@st.composite
def manifests(draw):
    n_classes = draw(st.integers(2, 4))
    classes = [f"c{i}" for i in range(n_classes)]
    spec = {c: draw(st.integers(3, 16)) for c in classes}
    videos = draw(st.integers(1, 2))
    patients = [f"{c}-p{p}" for c, n in spec.items() for p in range(n)]
    extra = draw(
        st.lists(st.tuples(st.sampled_from(patients), st.sampled_from(classes)), max_size=3)
    )
    return classes, make_manifest(spec, extra=extra, videos=videos)


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(data=manifests(), seed=st.integers(0, 2**16))
def test_holdout_properties(data, seed):
    classes, df = data
    out = holdout(df, classes, seed)
    assert len(out) == len(df) and out["split"].isin(SPLITS).all()
    assert out["path"].tolist() == df["path"].tolist()
    # grouped: no patient in two splits (and so no video either)
    role_map(out)
    # every class in every split
    for c in classes:
        assert set(out.loc[out["label"] == c, "split"]) == set(SPLITS), c
    # stratified: per class, patient counts are within the slack that shared patients allow
    pc = out.groupby("patient_id")["label"].nunique()
    for c in classes:
        members = out.loc[out["label"] == c, "patient_id"].unique()
        n = len(members)
        if n < 10:
            continue
        shared = int((pc.loc[members] > 1).sum())
        counts = out[out["label"] == c].groupby("split")["patient_id"].nunique()
        for s in SPLITS:
            assert abs(counts[s] - n * FRACTIONS[s]) <= shared + 1, (c, s, counts)
    # deterministic for a seed, whatever the row order
    again = holdout(df.sample(frac=1.0, random_state=seed), classes, seed)
    assert roles(again) == roles(out)


# ------------------------------------------------------------------- cv: properties


@st.composite
def cv_cases(draw, shared: bool = True):
    """(classes, manifest, links, cfg, seed): 2-4 classes of 2-12 patients; with ``shared``,
    up to 3 extra clips of another class on existing patients and up to 2 linked pairs."""
    n_classes = draw(st.integers(2, 4))
    classes = [f"c{i}" for i in range(n_classes)]
    # the first class is the small one more often than not: few folds, a class left short
    spec = {c: draw(st.integers(2, 5 if i == 0 else 12)) for i, c in enumerate(classes)}
    patients = [f"{c}-p{p}" for c, n in spec.items() for p in range(n)]
    extra, pairs = [], []
    if shared:
        pick = st.sampled_from(patients)
        small = st.sampled_from(patients[: spec[classes[0]]])  # links touch the small class
        extra = draw(st.lists(st.tuples(pick, st.sampled_from(classes)), max_size=3))
        pairs = draw(st.lists(st.tuples(st.one_of(small, pick), pick), max_size=2))
    df = make_manifest(spec, extra=extra, videos=draw(st.integers(1, 2)), frames=2)
    cfg = cv(
        folds=2,
        max_folds=draw(st.integers(2, 6)),
        val_fraction=draw(st.sampled_from([0.2, 0.25, 0.34, 0.5])),
    )
    return classes, df, links_from_pairs(pairs), cfg, draw(st.integers(0, 2**16))


def _units(df: pd.DataFrame, links) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Patient -> unit (its linked group, else itself); unit -> its classes."""
    unit = {str(p): links.unit(str(p)) for p in df["patient_id"].unique()}
    classes: dict[str, set[str]] = {}
    for p, c in zip(df["patient_id"].astype(str), df["label"].astype(str), strict=True):
        classes.setdefault(unit[p], set()).add(c)
    return unit, classes


def _val_allowed(unit_classes, outside: set[str], classes) -> dict[str, bool]:
    """Whether validation can hold each class: >= 2 of its units outside the test fold, one of
    which holds no class that has fewer than 2 units outside (such a unit must train)."""
    n_out = {c: sum(c in unit_classes[u] for u in outside) for c in classes}
    short = {c for c in classes if n_out[c] < 2}
    return {
        c: n_out[c] >= 2
        and any(c in unit_classes[u] and not unit_classes[u] & short for u in outside)
        for c in classes
    }


def _check_roles(df, fold_frames, val_missing, classes, links, test_units):
    """One fold (or the final split): grouped roles, val when allowed, else val_missing + train."""
    assert fold_frames["path"].tolist() == df["path"].tolist()
    role = role_map(fold_frames)  # no patient has two roles
    unit, unit_classes = _units(df, links)
    for members in links.groups().values():  # linked patients share their role
        assert len({role[p] for p in members}) == 1, members
    outside = set(unit_classes) - test_units
    allowed = _val_allowed(unit_classes, outside, classes)
    present = {s: set(fold_frames.loc[fold_frames["split"] == s, "label"]) for s in SPLITS}
    for c in classes:
        n_out = sum(c in unit_classes[u] for u in outside)
        if allowed[c]:
            assert c in present["train"] and c in present["val"], c
            assert c not in val_missing, c
        else:
            assert c in val_missing and c not in present["val"], (c, val_missing)
            assert (c in present["train"]) == (n_out >= 1), c  # it trains when it can
    assert val_missing == [c for c in classes if not allowed[c]]  # in class order
    return role, unit, unit_classes


def _check_cv(classes, df, links, cfg, folds, assignment):
    unit, unit_classes = _units(df, links)
    per_class = {c: sorted(u for u, cs in unit_classes.items() if c in cs) for c in classes}
    rare = min(classes, key=lambda c: (len(per_class[c]), classes.index(c)))
    n_rare = len(per_class[rare])
    k = min(n_rare, cfg.max_folds)  # k is capped by max_folds
    assert assignment.k == k == len(folds) and [f.fold for f in folds] == list(range(k))
    assert assignment.rare_class == rare
    groups = sorted(sorted(p for p in unit if unit[p] == u) for u in per_class[rare])
    assert assignment.rare_groups == groups
    # every patient is in the test split of exactly one fold, the one fold_of names
    assert set(assignment.fold_of) == set(unit)
    tested = {p: [f.fold for f in folds if role_map(f.frames)[p] == "test"] for p in unit}
    assert all(tested[p] == [assignment.fold_of[p]] for p in unit)
    # every rare group is tested exactly once; k = its groups: one group per fold
    per_fold = [sum(assignment.fold_of[g[0]] == f for g in groups) for f in range(k)]
    assert sum(per_fold) == n_rare and min(per_fold) >= 1
    assert max(per_fold) - min(per_fold) <= 1
    if k == n_rare:
        assert per_fold == [1] * k
    for f in folds:
        test_units = {unit[p] for p in assignment.test_patients(f.fold)}
        _check_roles(df, f.frames, f.val_missing, classes, links, test_units)
        for members in links.groups().values():  # linked patients: one test fold
            assert len({assignment.fold_of[p] for p in members}) == 1
        # stratified: every class in every test fold, unit counts within the slack that units
        # shared with other classes allow (they may be placed through another class)
        for c in classes:
            n = len(per_class[c])
            count = sum(c in unit_classes[u] for u in test_units)
            shared = sum(len(unit_classes[u]) > 1 for u in per_class[c])
            assert count >= 1, (f.fold, c)
            assert abs(count - n / k) < shared + 1, (f.fold, c, count, n, k, shared)
    return unit_classes


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cv_cases())
def test_cv_fold_properties(case):
    classes, df, links, cfg, seed = case
    try:
        folds, assignment = make_splits(df, classes, cfg, seed, links)
    except SplitError as err:
        # only when the data do not allow it: a class with < 2 independent groups, or (with
        # multi-class / linked units) a class that cannot be in every bin; the class is named
        msg = str(err)
        assert msg.startswith("class '"), msg
        assert "cross-validation needs at least 2" in msg or "cannot appear in" in msg, msg
        reject()
    _check_cv(classes, df, links, cfg, folds, assignment)
    # deterministic for a seed, whatever the row order
    shuffled = df.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)
    again, again_assignment = make_splits(shuffled, classes, cfg, seed, links)
    assert again_assignment == assignment
    for a, b in zip(folds, again, strict=True):
        assert roles(a.frames) == roles(b.frames) and a.val_missing == b.val_missing
    # the final split: nobody tested, every class in train and val when the data allow
    final = final_split(df, classes, cfg.val_fraction, seed, links)
    assert final.fold is None and "test" not in set(final.frames["split"])
    _check_roles(df, final.frames, final.val_missing, classes, links, set())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cv_cases(shared=False))
def test_cv_without_shared_patients_always_splits_exactly(case):
    """One class per patient and no links: the split never fails, and every count is the
    largest-remainder target (test: n/k rounded; validation: val_fraction of what is left)."""
    classes, df, links, cfg, seed = case
    folds, assignment = make_splits(df, classes, cfg, seed, links)
    unit_classes = _check_cv(classes, df, links, cfg, folds, assignment)
    for f in folds:
        role = role_map(f.frames)
        for c in classes:
            pats = [p for p, cs in unit_classes.items() if c in cs]
            n_test = sum(role[p] == "test" for p in pats)
            assert n_test in (
                math.floor(len(pats) / assignment.k),
                math.ceil(len(pats) / assignment.k),
            )
            left = len(pats) - n_test
            n_val = sum(role[p] == "val" for p in pats)
            assert n_val == (
                target_counts(left, [1 - cfg.val_fraction, cfg.val_fraction])[1]
                if left >= 2
                else 0
            )
    final = final_split(df, classes, cfg.val_fraction, seed)
    role = role_map(final.frames)
    for c in classes:
        pats = [p for p, cs in unit_classes.items() if c in cs]
        shares = [1 - cfg.val_fraction, cfg.val_fraction]
        assert sum(role[p] == "val" for p in pats) == target_counts(len(pats), shares)[1]
    assert final.val_missing == []


# ------------------------------------------------------------------- cv: examples


def test_cv_tests_each_viral_patient_once_and_caps_k():
    df = make_manifest({"regular": 9, "covid": 6, "viral": 4})
    classes = ["regular", "covid", "viral"]
    folds, a = make_splits(df, classes, cv(max_folds=5), seed=0)
    assert (a.k, a.rare_class, a.rare_groups) == (4, "viral", [[f"viral-p{i}"] for i in range(4)])
    assert count_folds(df, classes, 5) == (4, "viral", 4)
    counts = {c: [] for c in classes}
    for f in folds:
        test = f.frames[f.frames["split"] == "test"]
        for c, n in test.groupby("label")["patient_id"].nunique().items():
            counts[c].append(n)
    # per class, n/k rounded by largest remainder: 9 regular -> 3, 2, 2, 2; 6 covid -> 2, 2, 1, 1
    assert {c: sorted(v) for c, v in counts.items()} == {
        "regular": [2, 2, 2, 3], "covid": [1, 1, 2, 2], "viral": [1, 1, 1, 1],
    }  # fmt: skip
    capped, b = make_splits(df, classes, cv(max_folds=2), seed=0)
    assert b.k == len(capped) == 2 and count_folds(df, classes, 2) == (2, "viral", 4)
    viral_tests = [len(b.test_patients(f) & {f"viral-p{i}" for i in range(4)}) for f in range(2)]
    assert viral_tests == [2, 2]


def test_cv_needs_two_rare_groups():
    with pytest.raises(SplitError, match=r"^class 'viral' has 1 patient\(s\): cross-validation "):
        make_splits(make_manifest({"regular": 6, "viral": 1}), ["regular", "viral"], cv(), 0)


def test_cv_rare_class_of_two_trains_in_every_fold_and_is_missing_from_val():
    """Two viral patients: k = 2, each fold tests one and trains the other; validation cannot
    hold viral as well (documented in val_missing)."""
    df = make_manifest({"regular": 6, "viral": 2})
    folds, a = make_splits(df, ["regular", "viral"], cv(folds=2), seed=0)
    assert a.k == 2
    for f in folds:
        role = role_map(f.frames)
        assert f.val_missing == ["viral"]
        assert sorted(role[p] for p in ("viral-p0", "viral-p1")) == ["test", "train"]
        assert {"train", "val", "test"} == {role[p] for p in role if p.startswith("regular")}
    summary = split_summary(folds, ["regular", "viral"], cv(folds=2), 0, a)
    assert [summary["folds"][k]["val_missing"] for k in ("0", "1")] == [["viral"], ["viral"]]
    assert summary["settings"] | {"rare_groups": None} == {
        "scheme": "cv", "seed": 0, "grouping": "patient_id", "stratify": "label", "k": 2,
        "max_folds": 5, "val_fraction": 0.25, "rare_class": "viral", "rare_groups": None,
    }  # fmt: skip


@pytest.mark.parametrize("how", ["multi-class patient", "linked patients"])
def test_cv_short_class_trains_even_when_its_patient_holds_another_class(how):
    """The one viral unit left outside a fold's test split trains, also when it holds (or is
    linked to) regular frames and regular could have sent it to validation."""
    spec = {"regular": 6, "viral": 2}
    if how == "multi-class patient":
        df, links = make_manifest(spec, extra=[("viral-p0", "regular")]), links_from_pairs([])
        unit = ["viral-p0"]
    else:
        df, links = make_manifest(spec), links_from_pairs([("regular-p3", "viral-p0")])
        unit = ["regular-p3", "viral-p0"]
    for seed in range(12):
        folds, a = make_splits(df, ["regular", "viral"], cv(folds=2), seed, links)
        [fold] = [f for f in folds if "viral-p1" in a.test_patients(f.fold)]
        role = role_map(fold.frames)
        assert fold.val_missing == ["viral"]
        assert {role[p] for p in unit} == {"train"}, seed
        val = fold.frames[fold.frames["split"] == "val"]
        assert set(val["label"]) == {"regular"}


def test_final_split_tests_nobody():
    df = make_manifest({"regular": 8, "covid": 4, "viral": 2})
    final = final_split(df, ["regular", "covid", "viral"], 0.25, seed=5)
    assert final.fold is None and fold_file(final.fold) == "fold-final.csv"
    out = final.frames
    assert set(out["split"]) == {"train", "val"} and final.val_missing == []
    val = out[out["split"] == "val"].groupby("label")["patient_id"].nunique().to_dict()
    assert val == {"regular": 2, "covid": 1, "viral": 1}
    lone = final_split(make_manifest({"regular": 8, "viral": 1}), ["regular", "viral"], 0.25, 0)
    assert lone.val_missing == ["viral"]
    assert set(lone.frames.loc[lone.frames["label"] == "viral", "split"]) == {"train"}


# ------------------------------------------------------------------- check_fold_list


def test_check_fold_list_names_k_and_the_fix():
    check_fold_list(cv(folds=3), 3, "why")  # matches: no error
    with pytest.raises(SplitError) as err:
        check_fold_list(
            cv(folds=4), 3, "3 independent patient group(s) of the rarest class 'viral'"
        )
    msg = str(err.value)
    assert msg.startswith("the data gives 3 fold(s) (3 independent patient group(s) of the rarest")
    assert "split.folds is [0, 1, 2, 3]; set split.folds: [0, 1, 2]" in msg
    assert "lusaug folds --write" in msg
    assert "dvc exp run -S 'split.folds=[0, 1, 2]' -S 'split.items=[0, 1, 2, final]'" in msg
    with pytest.raises(
        SplitError, match=r"gives 1 fold\(s\) \(holdout\) but split.folds is \[0, 1\]"
    ):
        check_fold_list(cv(folds=2), 1, "holdout")


# ------------------------------------------------------------------- linked patients (PNGs)


def _links(df, root, params):
    v = params.validate
    return link_patients(df, root, v.phash_size, v.phash_max_distance)


def _stage_split(df, root, params, cfg, classes, seed=0):
    return split_frames(df, root, cfg, params.validate, classes, seed)


def test_distinct_patients_are_not_linked(tmp_path, params):
    df = with_pngs(make_manifest({"a": 6, "b": 3}), tmp_path)
    links = _links(df, tmp_path, params)
    assert links.group_of == {} and links.links == []
    for cfg in (cv(), HOLDOUT):
        with_links, _ = make_splits(df, ["a", "b"], cfg, 0, links)
        plain, _ = make_splits(df, ["a", "b"], cfg, 0)
        for x, y in zip(with_links, plain, strict=True):  # no link: the same split
            assert x.frames["split"].tolist() == y.frames["split"].tolist()


def test_near_identical_frame_keeps_two_patients_together(tmp_path, params):
    df = with_pngs(make_manifest({"a": 8, "b": 4}), tmp_path)
    src, dst = first_frame(df, "a-p0"), first_frame(df, "a-p5")
    plant_copy(df, tmp_path, src, dst)
    assert df.loc[df["path"] == src, "sha1"].item() != df.loc[df["path"] == dst, "sha1"].item()

    links = _links(df, tmp_path, params)
    assert links.groups() == {"a-p0": ["a-p0", "a-p5"]}
    [link] = links.links
    assert link["patients"] == ["a-p0", "a-p5"] and link["frames"] == [src, dst]
    assert link["kind"] == "near-identical" and link["frame_pairs"] >= 1
    assert link["distance"] <= params.validate.phash_max_distance
    reason = f"patients a-p0 and a-p5 were kept together because frames {src} and {dst}"
    assert reason in link["reason"] and "near-identical (pHash distance" in link["reason"]
    # the same links whatever the row order
    shuffled = _links(df.sample(frac=1.0, random_state=3), tmp_path, params)
    assert shuffled.group_of == links.group_of and shuffled.links == links.links

    separated = 0
    for seed in range(12):
        plain = roles(holdout(df, ["a", "b"], seed))
        separated += plain["a-p0"] != plain["a-p5"]
        out = holdout(df, ["a", "b"], seed, links)
        m = role_map(out)
        assert m["a-p0"] == m["a-p5"]
        for label in ("a", "b"):
            assert set(out.loc[out["label"] == label, "split"]) == set(SPLITS)
        folds, a = make_splits(df, ["a", "b"], cv(), seed, links)
        assert a.fold_of["a-p0"] == a.fold_of["a-p5"]
        assert all(role_map(f.frames)["a-p0"] == role_map(f.frames)["a-p5"] for f in folds)
    assert separated > 0  # without the link, the pair does cross splits for some seeds

    summary = split_summary(folds, ["a", "b"], cv(), seed, a, links=links)
    linked = summary["linked_patients"]
    assert linked["hash_size"] == params.validate.phash_size
    assert linked["n_groups"] == 1 and linked["n_linked_patients"] == 2
    [group] = linked["groups"]
    assert group["patients"] == ["a-p0", "a-p5"] and group["labels"] == ["a"]
    assert group["split"] == {str(f.fold): [role_map(f.frames)["a-p0"]] for f in folds}
    assert group["links"] == [link]
    assert summary["settings"]["grouping"] == "patient_id + shared frames"


def test_identical_frame_links_across_classes_and_chains(tmp_path, params):
    # a-p1 ~ b-p0 by an exact copy (sha1), b-p0 ~ c-p2 by a noisy copy: one group of three
    df = with_pngs(make_manifest({"a": 6, "b": 4, "c": 6}), tmp_path)
    plant_copy(df, tmp_path, first_frame(df, "a-p1"), first_frame(df, "b-p0"), noisy=False)
    plant_copy(df, tmp_path, first_frame(df, "b-p0"), first_frame(df, "c-p2"))
    links = _links(df, tmp_path, params)
    assert links.groups() == {"a-p1": ["a-p1", "b-p0", "c-p2"]}
    kinds = {tuple(e["patients"]): (e["kind"], e["distance"]) for e in links.links}
    assert kinds[("a-p1", "b-p0")] == ("identical", 0)
    assert kinds[("b-p0", "c-p2")][0] == "near-identical"
    assert "identical (same sha1)" in next(e["reason"] for e in links.links if e["distance"] == 0)
    classes = ["a", "b", "c"]
    for seed in range(5):
        m = role_map(holdout(df, classes, seed, links))
        assert m["a-p1"] == m["b-p0"] == m["c-p2"]
        folds, a = make_splits(df, classes, cv(), seed, links)
        assert a.rare_class == "b" and len(a.rare_groups) == 4 and a.k == 4
        assert ["a-p1", "b-p0", "c-p2"] in a.rare_groups
        assert len({a.fold_of[p] for p in ("a-p1", "b-p0", "c-p2")}) == 1
        for f in folds:
            m = role_map(f.frames)
            assert m["a-p1"] == m["b-p0"] == m["c-p2"]
    summary = split_summary(folds, classes, cv(), seed, a, links=links)
    assert summary["linked_patients"]["groups"][0]["labels"] == ["a", "b", "c"]


def test_linking_lowers_k_and_check_fold_list_says_so(tmp_path, params):
    spec = {"regular": 6, "covid": 4, "pneumonia": 4, "viral": 3}
    classes = list(spec)
    df = with_pngs(make_manifest(spec, videos=1), tmp_path)
    plant_copy(df, tmp_path, first_frame(df, "viral-p0"), first_frame(df, "viral-p2"))
    with pytest.raises(SplitError) as err:
        _stage_split(df, tmp_path, params, cv(folds=3), classes)
    msg = str(err.value)
    assert msg.startswith("the data gives 2 fold(s) (2 independent patient group(s) of the rarest")
    assert "class 'viral', split.max_folds 5) but split.folds is [0, 1, 2]" in msg
    assert "set split.folds: [0, 1]" in msg
    folds, summary = _stage_split(df, tmp_path, params, cv(folds=2), classes)
    assert [f.fold for f in folds] == [0, 1, None]
    assert summary["settings"]["rare_groups"] == [["viral-p0", "viral-p2"], ["viral-p1"]]
    for f in folds[:2]:
        m = role_map(f.frames)
        assert m["viral-p0"] == m["viral-p2"]
        assert f.val_missing == ["viral"]  # one viral group left outside each test fold
    [group] = summary["linked_patients"]["groups"]
    assert group["patients"] == ["viral-p0", "viral-p2"]


def test_linking_that_leaves_too_few_groups_names_them(tmp_path, params):
    spec = {"regular": 6, "covid": 3, "pneumonia": 3, "viral": 3}
    classes = list(spec)
    df = with_pngs(make_manifest(spec, videos=1), tmp_path)
    src, dst = first_frame(df, "viral-p0"), first_frame(df, "viral-p2")
    plant_copy(df, tmp_path, src, dst)
    with pytest.raises(SplitError) as err:  # holdout needs 3 groups per class
        _stage_split(df, tmp_path, params, HOLDOUT, classes)
    msg = str(err.value)
    assert msg.startswith("class 'viral' has 2 independent patient group(s)")
    assert "near-identical frames stay together (viral-p0+viral-p2)" in msg
    assert f"Linked: patients viral-p0 and viral-p2 were kept together because frames {src}" in msg
    second = sorted(df.loc[df["patient_id"] == "viral-p2", "path"])[1]
    plant_copy(df, tmp_path, first_frame(df, "viral-p1"), second)  # viral-p1 joins the group
    with pytest.raises(SplitError) as err:  # cv needs 2
        _stage_split(df, tmp_path, params, cv(), classes)
    msg = str(err.value)
    assert msg.startswith("class 'viral' has 1 independent patient group(s)")
    assert "(viral-p0+viral-p1+viral-p2): cross-validation needs at least 2" in msg
    assert "Linked: patients viral-p0 and viral-p2" in msg


def test_unreadable_frame_is_named(tmp_path, params):
    df = with_pngs(make_manifest({"a": 3, "b": 3}), tmp_path)
    gone = first_frame(df, "b-p1")
    (tmp_path / gone).unlink()
    with pytest.raises(LinkError, match=f"1 frame\\(s\\) cannot be read.*{gone}"):
        _links(df, tmp_path, params)
    with pytest.raises(LinkError, match="run the frames stage again"):
        _stage_split(df, tmp_path, params, cv(folds=3), ["a", "b"])


def test_too_few_patients_fail_before_any_frame_is_read(tmp_path, params):
    df = make_manifest({"regular": 6, "viral": 1})  # no PNGs at all
    with pytest.raises(SplitError, match=r"class 'viral' has 1 patient\(s\): cross-validation"):
        _stage_split(df, tmp_path, params, cv(), ["regular", "viral"])
    with pytest.raises(SplitError, match=r"class 'viral' has 1 patient\(s\); at least 3"):
        _stage_split(df, tmp_path, params, HOLDOUT, ["regular", "viral"])


def test_stage_summary_counts_every_fold(tmp_path, params):
    spec = {"regular": 5, "covid": 4, "viral": 3}
    df = with_pngs(make_manifest(spec), tmp_path)
    folds, summary = _stage_split(df, tmp_path, params, cv(folds=3), list(spec), seed=7)
    assert [f.fold for f in folds] == [0, 1, 2, None]
    assert set(summary["folds"]) == {"0", "1", "2"} and summary["settings"]["k"] == 3
    assert summary["n_frames"] == len(df) and summary["n_patients"] == 12
    for key, f in [*((str(f.fold), f) for f in folds[:3]), ("final", folds[3])]:
        entry = summary["final"] if key == "final" else summary["folds"][key]
        out = f.frames
        for s in SPLITS:
            rows = out[out["split"] == s]
            assert entry["totals"][s] == {
                "patients": rows["patient_id"].nunique(),
                "videos": rows["video_id"].nunique(),
                "frames": len(rows),
            }
            for c in spec:
                assert entry["classes"][c][s]["frames"] == int((rows["label"] == c).sum())
        tested = sorted(out.loc[out["split"] == "test", "patient_id"].unique())
        assert entry["test_patients"] == tested and entry["val_missing"] == f.val_missing
    assert summary["final"]["totals"]["test"]["patients"] == 0
    tested = [p for k in ("0", "1", "2") for p in summary["folds"][k]["test_patients"]]
    assert sorted(tested) == sorted(df["patient_id"].unique())


# ------------------------------------------------------------------- the stage script


def _split_args() -> list[str]:
    return ["data/frames.csv", "data/splits", "reports/split.json"]


def test_pipeline_script_outputs_and_exit_codes(tmp_path, params_dict):
    """Three real runs at once: a clean one, too few patients, split.folds that does not match
    (which must leave the previous outputs as they were)."""
    classes = ["regular", "viral"]
    ok, few, wrong = tmp_path / "ok", tmp_path / "few", tmp_path / "wrong"
    df = with_pngs(make_manifest({"regular": 6, "viral": 3}), ok / "data")
    src, dst = first_frame(df, "regular-p1"), first_frame(df, "regular-p4")
    plant_copy(df, ok / "data", src, dst)
    write_manifest(df, ok / "data" / "frames.csv")
    # no PNGs at all: too few patients is reported before any frame is read
    write_manifest(make_manifest({"regular": 6, "viral": 1}), few / "data" / "frames.csv")
    write_manifest(
        with_pngs(make_manifest({"regular": 6, "viral": 3}), wrong / "data"),
        wrong / "data" / "frames.csv",
    )
    (wrong / "data" / "splits").mkdir()
    (wrong / "data" / "splits" / "fold-0.csv").write_text("previous\n")
    (wrong / "reports").mkdir()
    (wrong / "reports" / "split.json").write_text("{}")
    procs = {
        "ok": start_stage("split", ok, params_file(ok, params_dict, classes, folds=[0, 1, 2]),
                          *_split_args()),
        "few": start_stage("split", few, params_file(few, params_dict, classes), *_split_args()),
        "wrong": start_stage("split", wrong, params_file(wrong, params_dict, classes,
                                                         folds=[0, 1, 2, 3]), *_split_args()),
    }  # fmt: skip
    res = {k: finish(p) for k, p in procs.items()}

    code, out, err = res["ok"]
    assert code == 0, err
    splits = ok / "data" / "splits"
    files = ["fold-0.csv", "fold-1.csv", "fold-2.csv", "fold-final.csv"]
    assert sorted(p.name for p in splits.iterdir()) == files
    report = json.loads((ok / "reports" / "split.json").read_text())
    tested = []
    for name in files:
        fold = read_manifest(splits / name)
        assert list(fold.columns) == [*MANIFEST_COLUMNS, "split"]
        # paths are relative to the CSV: data/splits/../frames/...
        assert fold["path"].tolist() == ["../" + p for p in df["path"]]
        assert all((splits / p).is_file() for p in fold["path"])
        pair = fold.loc[fold["patient_id"].isin(["regular-p1", "regular-p4"]), "split"]
        assert pair.nunique() == 1  # linked patients share their role
        entry = report["final"] if name == "fold-final.csv" else report["folds"][name[5]]
        assert entry["classes"]["viral"]["test"]["patients"] == (name != "fold-final.csv")
        tested += sorted(fold.loc[fold["split"] == "test", "patient_id"].unique())
    assert sorted(tested) == sorted(df["patient_id"].unique())
    assert report["n_frames"] == len(df) and report["settings"]["k"] == 3
    [group] = report["linked_patients"]["groups"]
    assert group["patients"] == ["regular-p1", "regular-p4"]
    assert group["links"][0]["frames"] == [src, dst]
    assert "fold 0: patients / videos / frames per class" in out  # the rich tables
    assert "final model's split" in out and "viral" in out
    assert "kept together" in out and dst in out.replace("\n", "")

    code, out, err = res["few"]
    assert code != 0
    assert "split failed: class 'viral' has 1 patient(s): cross-validation needs at least 2" in err
    assert "Traceback" not in err and not (few / "data" / "splits").exists()

    code, out, err = res["wrong"]
    assert code != 0 and "Traceback" not in err
    assert "split failed: the data gives 3 fold(s)" in err
    assert "split.folds is [0, 1, 2, 3]; set split.folds: [0, 1, 2]" in err
    assert (wrong / "data" / "splits" / "fold-0.csv").read_text() == "previous\n"
    assert sorted(p.name for p in (wrong / "data" / "splits").iterdir()) == ["fold-0.csv"]
    assert (wrong / "reports" / "split.json").read_text() == "{}"
