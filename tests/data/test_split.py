"""The patient-grouped, class-stratified split: properties (hypothesis), rare classes, k-fold,
and patients linked by identical or near-identical frames."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lusaug.config import PROJ_ROOT, SplitParams
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest, write_manifest
from lusaug.data.split import (
    SplitError,
    assign_patient_folds,
    fold_roles,
    link_patients,
    split_by_patient,
    split_frames,
    split_summary,
    target_counts,
)

HOLDOUT = SplitParams(fractions={"train": 0.6, "val": 0.2, "test": 0.2}, kfold=0, fold=0)


def _rows(label: str, patient: str, video: str, n_frames: int) -> list[dict]:
    return [
        {
            "path": f"frames/{label}/{video}_{i:05d}.png",
            "label": label,
            "video_id": video,
            "patient_id": patient,
            "probe": "convex",
            "source": "test",
            "license": "CC BY 4.0",
            "width": 32,
            "height": 32,
            "sha1": hashlib.sha1(f"{video}/{i}".encode()).hexdigest(),
        }
        for i in range(n_frames)
    ]


def make_manifest(spec: dict[str, int], extra: list[tuple[str, str]] = (), videos: int = 2):
    """``spec`` = patients per class; ``extra`` = (patient, class) clips added to patients."""
    rows: list[dict] = []
    for label, n in spec.items():
        for p in range(n):
            for v in range(videos):
                rows += _rows(label, f"{label}-p{p}", f"{label}-p{p}-v{v}", 3)
    for patient, label in extra:
        rows += _rows(label, patient, f"{patient}-{label}-extra", 2)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def patient_split_map(df: pd.DataFrame) -> dict[str, set[str]]:
    return {str(p): set(map(str, g)) for p, g in df.groupby("patient_id")["split"]}


# ------------------------------------------------------------------- target counts


@pytest.mark.parametrize(
    ("n", "expected"),
    [(3, [1, 1, 1]), (4, [2, 1, 1]), (5, [3, 1, 1]), (10, [6, 2, 2]), (7, [4, 2, 1])],
)
def test_target_counts_spread_rare_classes(n, expected):
    assert target_counts(n, [0.6, 0.2, 0.2]) == expected


def test_target_counts_even_folds():
    assert target_counts(7, [0.2] * 5) == [2, 2, 1, 1, 1]


# ------------------------------------------------------------------- examples


def test_rare_class_spread_one_patient_per_split():
    df = split_by_patient(make_manifest({"a": 8, "b": 3}), ["a", "b"], HOLDOUT, seed=0)
    per_split = df[df["label"] == "b"].groupby("split")["patient_id"].nunique().to_dict()
    assert per_split == {"train": 1, "val": 1, "test": 1}
    four = split_by_patient(make_manifest({"a": 8, "b": 4}), ["a", "b"], HOLDOUT, seed=0)
    per_split = four[four["label"] == "b"].groupby("split")["patient_id"].nunique().to_dict()
    assert per_split == {"train": 2, "val": 1, "test": 1}


def test_two_patients_raise_naming_the_class():
    with pytest.raises(SplitError, match=r"class 'viral' has 2 patient"):
        split_by_patient(
            make_manifest({"regular": 6, "viral": 2}), ["regular", "viral"], HOLDOUT, seed=1
        )


def test_class_without_frames_is_named():
    with pytest.raises(SplitError, match=r"class 'viral' has 0 patient"):
        split_by_patient(make_manifest({"regular": 6}), ["regular", "viral"], HOLDOUT, seed=0)


def test_unknown_label_and_missing_patient_are_clear_errors():
    df = make_manifest({"a": 3, "b": 3})
    with pytest.raises(SplitError, match="not in base.classes"):
        split_by_patient(df, ["a"], HOLDOUT, seed=0)
    df.loc[0, "patient_id"] = ""
    with pytest.raises(SplitError, match="no patient_id"):
        split_by_patient(df, ["a", "b"], HOLDOUT, seed=0)


def test_multi_class_patient_stays_in_one_split_and_counts_for_both_classes():
    # Like POCUS patient 7 (Pneu_ and Reg_ clips): a patient placed through its rarer class
    # must count towards the other class too, so that class still gets 1/1/1.
    df = make_manifest(
        {"regular": 2, "pneumonia": 3, "covid": 6}, extra=[("pneumonia-p0", "regular")]
    )
    classes = ["regular", "covid", "pneumonia"]
    for seed in range(10):
        out = split_by_patient(df, classes, HOLDOUT, seed=seed)
        assert all(len(s) == 1 for s in patient_split_map(out).values())
        reg = out[out["label"] == "regular"].groupby("split")["patient_id"].nunique()
        assert reg.to_dict() == {"train": 1, "val": 1, "test": 1}
        summary = split_summary(out, classes, HOLDOUT, seed)
        assert summary["multi_class_patients"] == ["pneumonia-p0"]
        assert sum(v["patients"] for v in summary["classes"]["regular"].values()) == 3
        assert summary["totals"]["train"]["frames"] == int((out["split"] == "train").sum())


def test_shared_patients_of_a_rare_class_are_spread_for_the_next_class():
    # a: 4 patients (2/1/1); b: 3 patients, two of them shared with a. A naive assignment can
    # put both shared patients in train and leave b with no room for val or test.
    df = make_manifest({"a": 4, "b": 1, "c": 8}, extra=[("a-p0", "b"), ("a-p1", "b")])
    for seed in range(30):
        out = split_by_patient(df, ["a", "b", "c"], HOLDOUT, seed=seed)
        for label in ("a", "b", "c"):
            assert set(out.loc[out["label"] == label, "split"]) == set(SPLITS), (seed, label)


# ------------------------------------------------------------------- properties


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
def test_split_properties(data, seed):
    classes, df = data
    out = split_by_patient(df, classes, HOLDOUT, seed=seed)
    assert len(out) == len(df) and out["split"].isin(SPLITS).all()
    # grouped: no patient in two splits (and so no video either)
    assert all(len(s) == 1 for s in patient_split_map(out).values())
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
            assert abs(counts[s] - n * HOLDOUT.fractions[s]) <= shared + 1, (c, s, counts)
    # deterministic for a seed, whatever the row order
    again = split_by_patient(df.sample(frac=1.0, random_state=seed), classes, HOLDOUT, seed)
    assert patient_split_map(again) == patient_split_map(out)


@FAST
@given(data=manifests(), seed=st.integers(0, 2**16), kfold=st.integers(3, 5))
def test_kfold_partitions_patients(data, seed, kfold):
    classes, df = data
    assume(df.groupby("label")["patient_id"].nunique().min() >= kfold)
    folds = assign_patient_folds(df, classes, kfold, seed)
    assert set(folds) == set(df["patient_id"]) and set(folds.values()) == set(range(kfold))
    tests: list[str] = []
    for fold in range(kfold):
        params = SplitParams(fractions=HOLDOUT.fractions, kfold=kfold, fold=fold)
        out = split_by_patient(df, classes, params, seed)
        m = patient_split_map(out)
        assert all(len(s) == 1 for s in m.values())
        for c in classes:
            assert set(out.loc[out["label"] == c, "split"]) == set(SPLITS)
        tests += [p for p, s in m.items() if s == {"test"}]
    # each patient is in the test split of exactly one fold
    assert sorted(tests) == sorted(folds)


def test_kfold_roles_and_too_few_patients():
    assert fold_roles(5, 4) == {0: "val", 1: "train", 2: "train", 3: "train", 4: "test"}
    df = make_manifest({"a": 8, "viral": 4})
    with pytest.raises(SplitError, match=r"class 'viral' has 4 patient.*5"):
        split_by_patient(df, ["a", "viral"], SplitParams(HOLDOUT.fractions, 5, 0), seed=0)
    out = split_by_patient(df, ["a", "viral"], SplitParams(HOLDOUT.fractions, 4, 2), seed=0)
    summary = split_summary(out, ["a", "viral"], SplitParams(HOLDOUT.fractions, 4, 2), 0)
    assert summary["settings"].items() >= {"mode": "kfold", "test_fold": 2, "val_fold": 3}.items()
    assert summary["settings"]["train_folds"] == [0, 1]


# ------------------------------------------------------------------- linked patients

SIZE = 32


def with_pngs(df: pd.DataFrame, root: Path, seed: int = 0) -> pd.DataFrame:
    """Write one PNG per row under ``root`` (a random texture per video, a little noise per
    frame, as consecutive ultrasound frames) and set ``sha1`` from the pixels."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    bases: dict[str, np.ndarray] = {}
    for i, row in out.iterrows():
        if row["video_id"] not in bases:
            noise = rng.normal(0, 1, (SIZE // 2, SIZE // 2)).astype(np.float32)
            bases[row["video_id"]] = cv2.resize(noise, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
        img = 128 + 45 * bases[row["video_id"]] + rng.normal(0, 2.0, (SIZE, SIZE))
        out.at[i, "sha1"] = _write(root, row["path"], np.clip(img, 0, 255).astype(np.uint8))
    return out


def _write(root: Path, rel: str, img: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / rel), img)
    return hashlib.sha1(img.tobytes()).hexdigest()


def plant_copy(df: pd.DataFrame, root: Path, src: str, dst: str, noisy: bool = True) -> None:
    """Overwrite the PNG at ``dst`` with (a slightly changed copy of) the PNG at ``src``."""
    img = cv2.imread(str(root / src), cv2.IMREAD_UNCHANGED).astype(np.int16)
    if noisy:  # brighter and slightly noisy: a re-encoded copy, not the same bytes
        img = img + 3 + np.random.default_rng(1).integers(-2, 3, img.shape)
    sha = _write(root, dst, np.clip(img, 0, 255).astype(np.uint8))
    df.loc[df["path"] == dst, "sha1"] = sha


def _first_frame(df: pd.DataFrame, patient: str) -> str:
    return str(df.loc[df["patient_id"] == patient, "path"].min())


def _links(df, root, params):
    v = params.validate
    return link_patients(df, root, v.phash_size, v.phash_max_distance)


def test_distinct_patients_are_not_linked(tmp_path, params):
    df = with_pngs(make_manifest({"a": 6, "b": 3}), tmp_path)
    links = _links(df, tmp_path, params)
    assert links.group_of == {} and links.links == []
    out = split_by_patient(df, ["a", "b"], HOLDOUT, seed=0, links=links)
    plain = split_by_patient(df, ["a", "b"], HOLDOUT, seed=0)
    assert out["split"].tolist() == plain["split"].tolist()  # no link: the same split


def test_near_identical_frame_keeps_two_patients_in_one_split(tmp_path, params):
    df = with_pngs(make_manifest({"a": 8, "b": 4}), tmp_path)
    src, dst = _first_frame(df, "a-p0"), _first_frame(df, "a-p5")
    plant_copy(df, tmp_path, src, dst)
    assert df.loc[df["path"] == src, "sha1"].item() != df.loc[df["path"] == dst, "sha1"].item()

    links = _links(df, tmp_path, params)
    assert links.groups() == {"a-p0": ["a-p0", "a-p5"]}
    [link] = links.links
    assert link["patients"] == ["a-p0", "a-p5"] and link["frames"] == [src, dst]
    assert link["kind"] == "near-identical" and link["frame_pairs"] >= 1
    assert link["distance"] <= params.validate.phash_max_distance
    reason = f"patients a-p0 and a-p5 were kept together because frames {src} and {dst}"
    assert reason in link["reason"]
    # the same links whatever the row order
    shuffled = _links(df.sample(frac=1.0, random_state=3), tmp_path, params)
    assert shuffled.group_of == links.group_of and shuffled.links == links.links

    separated = 0
    for seed in range(12):
        plain = patient_split_map(split_by_patient(df, ["a", "b"], HOLDOUT, seed))
        separated += plain["a-p0"] != plain["a-p5"]
        out = split_by_patient(df, ["a", "b"], HOLDOUT, seed, links=links)
        m = patient_split_map(out)
        assert m["a-p0"] == m["a-p5"] and all(len(v) == 1 for v in m.values())
        for label in ("a", "b"):
            assert set(out.loc[out["label"] == label, "split"]) == set(SPLITS)
    assert separated > 0  # without the link, the pair does cross splits for some seeds

    summary = split_summary(out, ["a", "b"], HOLDOUT, seed, links=links)
    linked = summary["linked_patients"]
    assert linked["hash_size"] == params.validate.phash_size
    assert linked["n_groups"] == 1 and linked["n_linked_patients"] == 2
    [group] = linked["groups"]
    assert group["patients"] == ["a-p0", "a-p5"] and group["labels"] == ["a"]
    assert group["split"] == sorted(m["a-p0"]) and group["links"] == [link]
    assert summary["settings"]["grouping"] == "patient_id + shared frames"


def test_identical_frame_links_across_classes_and_chains(tmp_path, params):
    # a-p1 ~ b-p0 by an exact copy (sha1), b-p0 ~ c-p2 by a noisy copy: one group of three
    df = with_pngs(make_manifest({"a": 6, "b": 4, "c": 6}), tmp_path)
    plant_copy(df, tmp_path, _first_frame(df, "a-p1"), _first_frame(df, "b-p0"), noisy=False)
    plant_copy(df, tmp_path, _first_frame(df, "b-p0"), _first_frame(df, "c-p2"))
    links = _links(df, tmp_path, params)
    assert links.groups() == {"a-p1": ["a-p1", "b-p0", "c-p2"]}
    kinds = {tuple(e["patients"]): (e["kind"], e["distance"]) for e in links.links}
    assert kinds[("a-p1", "b-p0")] == ("identical", 0)
    assert kinds[("b-p0", "c-p2")][0] == "near-identical"
    assert "identical (same sha1)" in next(e["reason"] for e in links.links if e["distance"] == 0)
    for seed in range(5):
        out = split_by_patient(df, ["a", "b", "c"], HOLDOUT, seed, links=links)
        m = patient_split_map(out)
        assert m["a-p1"] == m["b-p0"] == m["c-p2"]
        for label in ("a", "b", "c"):
            assert set(out.loc[out["label"] == label, "split"]) == set(SPLITS)
    summary = split_summary(out, ["a", "b", "c"], HOLDOUT, seed, links=links)
    assert summary["linked_patients"]["groups"][0]["labels"] == ["a", "b", "c"]


def test_kfold_keeps_linked_patients_in_one_fold(tmp_path, params):
    df = with_pngs(make_manifest({"a": 8, "b": 5}), tmp_path)
    plant_copy(df, tmp_path, _first_frame(df, "a-p2"), _first_frame(df, "b-p4"))
    links = _links(df, tmp_path, params)
    for seed in range(5):
        folds = assign_patient_folds(df, ["a", "b"], 4, seed, links=links)
        assert folds["a-p2"] == folds["b-p4"] and set(folds.values()) == set(range(4))


def test_linking_that_leaves_too_few_groups_names_them(tmp_path, params):
    spec = {c: (6 if c == "regular" else 3) for c in params.base.classes}
    df = with_pngs(make_manifest(spec), tmp_path)
    src, dst = _first_frame(df, "viral-p0"), _first_frame(df, "viral-p2")
    plant_copy(df, tmp_path, src, dst)
    with pytest.raises(SplitError) as err:
        split_frames(df, tmp_path, params)  # the stage's entry point: link, split, summarise
    msg = str(err.value)
    assert msg.startswith("class 'viral' has 2 independent patient group(s)")
    assert "near-identical frames stay together (viral-p0+viral-p2)" in msg
    assert f"Linked: patients viral-p0 and viral-p2 were kept together because frames {src}" in msg


def test_unreadable_frame_is_named(tmp_path, params):
    df = with_pngs(make_manifest({"a": 3, "b": 3}), tmp_path)
    gone = _first_frame(df, "b-p1")
    (tmp_path / gone).unlink()
    with pytest.raises(SplitError, match=f"1 frame\\(s\\) cannot be read.*{gone}"):
        _links(df, tmp_path, params)


# ------------------------------------------------------------------- the stage script


def _params_file(tmp_path: Path, params_dict: dict, classes: list[str]) -> Path:
    data = json.loads(json.dumps(params_dict))
    data["base"]["classes"] = classes
    data["base"]["target_class"] = classes[-1]
    data["phantom"]["patients"] = {c: 3 for c in classes}
    data["import"]["prefixes"] = {c[:3].title(): c for c in classes}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_split(tmp_path: Path, params_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LUSAUG_PARAMS=str(params_path))
    cmd = [
        sys.executable,
        str(PROJ_ROOT / "pipelines" / "split.py"),
        "data/frames.csv",
        "data/splits.csv",
        "reports/split.json",
    ]
    return subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_pipeline_script_writes_splits_and_report(tmp_path, params_dict):
    classes = ["regular", "viral"]
    params_path = _params_file(tmp_path, params_dict, classes)
    data = tmp_path / "data"
    df = with_pngs(make_manifest({"regular": 6, "viral": 3}), data)
    src, dst = _first_frame(df, "regular-p1"), _first_frame(df, "regular-p4")
    plant_copy(df, data, src, dst)
    write_manifest(df, data / "frames.csv")
    proc = _run_split(tmp_path, params_path)
    assert proc.returncode == 0, proc.stderr
    out = read_manifest(data / "splits.csv")
    assert list(out.columns) == [*MANIFEST_COLUMNS, "split"]
    assert out.loc[out["patient_id"].isin(["regular-p1", "regular-p4"]), "split"].nunique() == 1
    report = json.loads((tmp_path / "reports" / "split.json").read_text())
    assert report["classes"]["viral"]["test"]["patients"] == 1
    assert report["n_frames"] == len(out)
    [group] = report["linked_patients"]["groups"]
    assert group["patients"] == ["regular-p1", "regular-p4"]
    assert group["links"][0]["frames"] == [src, dst]
    assert "viral" in proc.stdout  # the rich table
    assert "kept together" in proc.stdout and dst in proc.stdout.replace("\n", "")


def test_pipeline_script_fails_naming_the_class(tmp_path, params_dict):
    # no PNGs at all: too few patients is reported before any frame is read
    params_path = _params_file(tmp_path, params_dict, ["regular", "viral"])
    write_manifest(make_manifest({"regular": 6, "viral": 2}), tmp_path / "data" / "frames.csv")
    proc = _run_split(tmp_path, params_path)
    assert proc.returncode != 0
    assert "viral" in proc.stderr and "2 patient" in proc.stderr
    assert not (tmp_path / "data" / "splits.csv").exists()
