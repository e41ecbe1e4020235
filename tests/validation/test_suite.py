"""The Great Expectations suites: pass on clean folds, catch each injected fault by name.

One small dataset of real PNGs (32 px, random textures, 3 frames per clip) is split once per
module into cross-validation folds by the real split stage (3 folds, every viral patient tested
once, plus the final split); each test copies a fold table, injects one fault and validates it
with the real GX suites. The stage scripts run end to end on their own tiny folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lusaug.core.config import Params
from lusaug.data.hashing import cross_group_nearest, hex_to_words
from lusaug.data.linking import link_patients
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest, write_manifest
from lusaug.data.split import fold_file, make_splits, relocate, split_frames
from lusaug.stages import validate
from lusaug.validation import Sections, validate_folds, validate_splits
from lusaug.validation.expectations import CROSS_FOLD_SUITES, FOLD_SUITES
from lusaug.validation.suite import FINAL, documented_fallbacks, stable_page
from lusaug.validation.tables import measure_frames, near_identical_table
from tests.helpers.split_data import (
    finish,
    manifest_rows,
    params_file,
    start_stage,
    with_pngs,
    write_png,
)

PATIENTS = {"regular": 4, "covid": 3, "pneumonia": 3, "viral": 3}
SEED = 3


def _manifest(patients: dict[str, int], size: int, frames: int = 3, clips=lambda p: 1 + p % 2):
    rows = []
    for label, n in patients.items():
        for p in range(n):
            patient = f"{label}-p{p}"
            for v in range(clips(p)):  # patients with one and with two clips
                rows += manifest_rows(label, patient, f"{patient}-v{v}", frames, size)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, micro_params: Params):
    """root, manifest, fold tables {0, 1, 2, "final"}, split summary, sections."""
    root = tmp_path_factory.mktemp("lus") / "data"
    manifest = with_pngs(_manifest(PATIENTS, micro_params.base.image_size), root)
    p = micro_params
    split = replace(
        p.split, folds=[0, 1, 2], items=[0, 1, 2, "final"], max_folds=5
    )  # 3 patients per class: 3 folds
    folds, summary = split_frames(manifest, root, split, p.validate, p.base.classes, SEED)
    tables = {FINAL if f.fold is None else f.fold: f.frames for f in folds}
    assert list(tables) == [0, 1, 2, FINAL]
    return {
        "root": root,
        "manifest": manifest,
        "tables": tables,
        "summary": summary,
        "sections": Sections(p.base, p.validate, p.frames),
        "params": replace(p, split=split),
    }


@pytest.fixture(scope="module")
def clean_report(dataset, tmp_path_factory):
    docs = tmp_path_factory.mktemp("clean") / "docs"
    exempt = _fallbacks(dataset["summary"], dataset["params"].base.classes, docs.parent)
    report = validate_folds(dataset["tables"], dataset["root"], dataset["sections"], docs, exempt)
    return report, docs


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_data_docs_are_byte_stable_between_identical_runs(dataset, clean_report, tmp_path):
    """reports/validation is DVC-cached: a second validation of the same splits writes the same
    bytes (no run time, build time or random element id in the pages)."""
    _, docs = clean_report
    again = tmp_path / "docs"
    exempt = _fallbacks(dataset["summary"], dataset["params"].base.classes, tmp_path)
    validate_folds(dataset["tables"], dataset["root"], dataset["sections"], again, exempt)
    first, second = _files(docs), _files(again)
    assert any(name.startswith("validations/") for name in first)
    assert first == second


def test_stable_page_numbers_ids_in_order_and_keeps_them_paired():
    page = (
        '<a href="#b-0c5e0a4e-1111-4222-8333-944445555666">x</a> 20261207T194001.644123Z '
        '<div id=b-0c5e0a4e-1111-4222-8333-944445555666></div><img src="logo.png?d=20261207T19'
        '4001.644123Z"><div id=c-aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee>'
    )
    assert stable_page(page) == (
        '<a href="#b-n1">x</a> 19700101T000000.000000Z <div id=b-n1></div><img src="logo.png">'
        "<div id=c-n2>"
    )


def _fallbacks(summary: dict, classes, folder) -> dict:
    """The exemptions the validate stage reads from reports/split.json (via the real reader)."""
    path = folder / "split.json"
    path.write_text(json.dumps(summary))
    return documented_fallbacks(path, classes)


def _fold(dataset, k=0) -> pd.DataFrame:
    return dataset["tables"][k].copy()


def _validate(dataset, df, tmp_path):
    """One fold on its own (fold 0's seven suites)."""
    return validate_splits(df, dataset["root"], dataset["sections"], tmp_path / "docs")


def _entries(report, suite, column=None):
    out = [e for e in report.expectations if e["suite"] == suite]
    return [e for e in out if column is None or e["column"] == column]


def _failed_suites(report) -> set[str]:
    return {e["suite"] for e in report.failed()}


def _off(report, fold="0"):
    return report.offenders["folds"][fold]


def _two_clip_patient(splits: pd.DataFrame) -> str:
    n = splits.groupby("patient_id")["video_id"].nunique()
    return str(n[n > 1].index[0])


def _other(split: str) -> str:
    return SPLITS[(SPLITS.index(split) + 1) % len(SPLITS)]


def _role(df: pd.DataFrame) -> dict[str, str]:
    return {str(p): str(s) for p, s in df.groupby("patient_id")["split"].first().items()}


# ------------------------------------------------------------------- clean


def test_clean_folds_pass(dataset, clean_report):
    report, docs = clean_report
    assert report.success, report.message()
    assert report.n_folds == 3 and report.n_frames == len(dataset["manifest"])
    st = report.statistics
    assert st["evaluated_expectations"] >= 4 * 45 + 2
    assert st["successful_expectations"] == st["evaluated_expectations"]
    # every suite ran for every fold and the final split, and the two cross-fold suites
    suites = {e["suite"] for e in report.expectations}
    per_fold = {f"fold-{k}.{kind}" for k in (0, 1, 2, FINAL) for kind in FOLD_SUITES}
    assert suites == per_fold | {f"folds.{kind}" for kind in CROSS_FOLD_SUITES}
    assert set(report.offenders["folds"]) == {"0", "1", "2", "final"}
    for off in report.offenders["folds"].values():
        assert off["patients"] == {} and off["frames"] == [] and off["missing_class_split"] == []
    assert report.offenders["cross_fold"] == {
        "patients_not_tested_once": {},
        "frames_missing_from_folds": [],
    }
    assert report.message().startswith("validation passed: ")
    assert report.message().endswith(f"on {len(dataset['manifest'])} frames, 3 fold(s)")
    assert (docs / "index.html").is_file()
    # the split put every viral patient in exactly one test fold
    tested = [p for k in (0, 1, 2) for p, s in _role(dataset["tables"][k]).items() if s == "test"]
    assert sorted(tested) == sorted(dataset["manifest"]["patient_id"].unique())


def test_one_fold_on_its_own_passes(dataset, tmp_path):
    report = _validate(dataset, _fold(dataset), tmp_path)
    assert report.success, report.message()
    assert report.n_folds == 1 and "folds.test_folds" not in {
        e["suite"] for e in report.expectations
    }


# ------------------------------------------------------------------- leakage of each kind


def test_patient_in_two_splits(dataset, tmp_path):
    df = _fold(dataset)
    patient = _two_clip_patient(df)
    rows = df["patient_id"] == patient
    video = sorted(df.loc[rows, "video_id"].unique())[1]
    home = df.loc[rows, "split"].iloc[0]
    df.loc[df["video_id"] == video, "split"] = _other(home)  # the whole clip moves
    report = _validate(dataset, df, tmp_path)
    assert not report.success
    assert _failed_suites(report) == {"fold-0.patient_leakage"}
    assert _off(report)["patients"] == {patient: sorted({home, _other(home)}, key=SPLITS.index)}
    assert _off(report)["videos"] == {}
    assert f"fold 0: patients in two splits: {patient} in " in report.message()


def test_video_in_two_splits(dataset, tmp_path):
    df = _fold(dataset)
    video = str(df["video_id"].iloc[0])
    idx = df.index[df["video_id"] == video][-1]
    home = df.loc[idx, "split"]
    # one frame of the clip filed under another patient in another split: the video leaks (and,
    # as consecutive frames are alike, so does a near-identical frame), the patient does not
    df.loc[idx, ["split", "patient_id"]] = [_other(home), "ghost-patient"]
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"fold-0.video_leakage", "fold-0.near_identical_frames"}
    assert _off(report)["patients"] == {}
    assert list(_off(report)["videos"]) == [video]
    assert set(_off(report)["videos"][video]) == {home, _other(home)}
    assert f"videos in two splits: {video} in" in report.message()


def test_identical_frame_in_two_splits(dataset, tmp_path):
    root, df = dataset["root"], _fold(dataset)
    src = df[df["split"] == "train"].iloc[0]
    rel = "frames/copies/identical_00000.png"
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED)
    sha = write_png(root, rel, img)
    assert sha == src["sha1"]
    new = manifest_rows(src["label"], "copy-patient", "copy-video", 1, int(src["width"]))[0]
    new.update(path=rel, sha1=sha, split="test")
    df = pd.concat([df, pd.DataFrame([new])], ignore_index=True)
    report = _validate(dataset, df, tmp_path)
    sha_check = _entries(report, "fold-0.identical_frames", "sha1")[0]
    assert not sha_check["success"] and sha_check["unexpected_count"] == 2
    assert _off(report)["identical_frames"] == {sha: [(src["path"], "train"), (rel, "test")]}
    assert {src["path"], rel} <= set(_off(report)["frames"])
    assert _off(report)["patients"] == {} and _off(report)["videos"] == {}
    assert rel in report.message() and "identical frames in two splits" in report.message()


def test_near_identical_frame_in_two_splits(dataset, tmp_path):
    root, df, params = dataset["root"], _fold(dataset), dataset["params"]
    src = df[df["split"] == "val"].iloc[0]
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED).astype(np.int16)
    noise = np.random.default_rng(1).integers(-2, 3, img.shape)
    shifted = np.clip(img + 4 + noise, 0, 255).astype(np.uint8)  # brighter, slightly noisy
    rel = "frames/copies/near_00000.png"
    sha = write_png(root, rel, shifted)
    assert sha != src["sha1"]
    new = manifest_rows(src["label"], "near-patient", "near-video", 1, int(src["width"]))[0]
    new.update(path=rel, sha1=sha, split="train")
    df = pd.concat([df, pd.DataFrame([new])], ignore_index=True)
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"fold-0.near_identical_frames"}
    assert _entries(report, "fold-0.identical_frames")[0]["success"]
    pairs = _off(report)["near_identical_pairs"]
    # the copy is named with its source; the source's clip-mates (consecutive frames are alike)
    # may be named with it too, and nothing else is
    assert tuple(sorted([src["path"], rel])) in [(p["a"], p["b"]) for p in pairs]
    clip = set(df.loc[df["video_id"] == src["video_id"], "path"])
    for p in pairs:
        assert rel in (p["a"], p["b"]) and {p["a"], p["b"]} - {rel} <= clip
        assert p["distance"] <= params.validate.phash_max_distance
        assert {p["split_a"], p["split_b"]} == {"val", "train"}
    assert rel in report.message() and src["path"] in report.message()


def test_split_linking_prevents_what_validation_catches(dataset, tmp_path):
    """A duplicate filed under a second patient: folds made without linking leak it, validation
    says so; the split stage's linking keeps both patients together in every fold and the same
    validation passes on every fold."""
    root, params = dataset["root"], dataset["params"]
    manifest = dataset["manifest"]
    src_patient, dst_patient = "regular-p0", "regular-p3"
    src = manifest[manifest["patient_id"] == src_patient].iloc[0]
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED).astype(np.int16)
    noisy = np.clip(img + 3 + np.random.default_rng(7).integers(-2, 3, img.shape), 0, 255)
    rel = "frames/regular/refiled_00000.png"
    sha = write_png(root, rel, noisy.astype(np.uint8))
    new = manifest_rows("regular", dst_patient, "refiled", 1, int(src["width"]))[0]
    new.update(path=rel, sha1=sha)
    manifest = pd.concat([manifest, pd.DataFrame([new])], ignore_index=True)
    manifest = manifest.astype({"width": "int64", "height": "int64"})
    classes, v = params.base.classes, params.validate

    plain, _ = make_splits(manifest, classes, params.split, SEED)
    apart = [f for f in plain if _role(f.frames)[src_patient] != _role(f.frames)[dst_patient]]
    assert apart  # the two patients are tested in different folds
    near = near_identical_table(measure_frames(apart[0].frames, root, v.phash_size))
    leaked = near[near["phash_min_distance"] <= v.phash_max_distance]
    assert {src["path"], rel} <= set(leaked["path"])  # what the GX suite rejects

    links = link_patients(manifest, root, v.phash_size, v.phash_max_distance)
    assert links.groups() == {src_patient: [src_patient, dst_patient]}
    folds, summary = split_frames(manifest, root, params.split, v, classes, SEED)
    for f in folds:
        assert _role(f.frames)[src_patient] == _role(f.frames)[dst_patient]
    assert summary["linked_patients"]["groups"][0]["patients"] == [src_patient, dst_patient]
    tables = {FINAL if f.fold is None else f.fold: f.frames for f in folds}
    exempt = _fallbacks(summary, classes, tmp_path)
    report = validate_folds(tables, root, dataset["sections"], tmp_path / "docs", exempt)
    assert report.success, report.message()


# ------------------------------------------------------------------- files, sizes, pixels


def test_wrong_size_and_missing_file(dataset, tmp_path):
    root, df = dataset["root"], _fold(dataset)
    big = dataset["params"].base.image_size + 8
    rel = "frames/odd/big_00000.png"
    write_png(root, rel, np.random.default_rng(2).integers(20, 200, (big, big), dtype=np.uint8))
    df.loc[0, ["path", "width"]] = [rel, big]
    df.loc[1, "path"] = "frames/odd/missing_00000.png"
    report = _validate(dataset, df, tmp_path)
    by_check = _off(report)["frames_by_check"]
    assert by_check["frames.png_width"] == [rel] and by_check["frames.png_height"] == [rel]
    assert by_check["manifest.width"] == [rel]
    assert by_check["frames.exists"] == ["frames/odd/missing_00000.png"]
    assert "frames.readable" not in by_check  # a missing file is reported once, as missing
    assert _failed_suites(report) == {"fold-0.manifest", "fold-0.frames"}
    assert "frames.exists: frames/odd/missing_00000.png" in report.message()


def test_blank_frame_fails_pixel_statistics(dataset, tmp_path):
    root, df = dataset["root"], _fold(dataset)
    rel = "frames/odd/black_00000.png"
    size = dataset["params"].base.image_size
    write_png(root, rel, np.zeros((size, size), dtype=np.uint8))
    df.loc[2, "path"] = rel
    report = _validate(dataset, df, tmp_path)
    failed = {(e["suite"], e["column"]) for e in report.failed()}
    assert failed == {("fold-0.frames", "pix_mean"), ("fold-0.frames", "pix_std")}
    assert _off(report)["frames"] == [rel]


def test_every_class_in_every_split(dataset, tmp_path):
    df = _fold(dataset)
    df.loc[(df["label"] == "viral") & (df["split"] == "test"), "split"] = "train"
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"fold-0.class_coverage"}
    assert _off(report)["missing_class_split"] == [{"label": "viral", "split": "test"}]
    assert "fold 0: class missing from split: viral in test" in report.message()


def test_documented_fallbacks_pass_and_undocumented_gaps_fail(dataset, tmp_path):
    """A fold whose validation lacks viral passes only when split.json documents it
    (val_missing); the final split has no test patients, which is documented for every class."""
    classes = dataset["params"].base.classes
    df = _fold(dataset)
    df.loc[(df["label"] == "viral") & (df["split"] == "val"), "split"] = "train"
    tables = {0: df, FINAL: dataset["tables"][FINAL]}
    summary = json.loads(json.dumps(dataset["summary"]))
    summary["folds"]["0"]["val_missing"] = ["viral"]
    split_json = tmp_path / "split.json"
    split_json.write_text(json.dumps(summary))
    exempt = documented_fallbacks(split_json, classes)
    assert exempt[0] == [("viral", "val")] and exempt[1] == [] and exempt[2] == []
    assert exempt[FINAL] == [(c, "test") for c in classes]
    assert documented_fallbacks(tmp_path / "absent.json", classes) == {
        FINAL: [(c, "test") for c in classes]
    }
    root, sections = dataset["root"], dataset["sections"]

    documented = validate_folds(tables, root, sections, tmp_path / "ok", exempt)
    assert documented.success, documented.message()

    undocumented = validate_folds(tables, root, sections, tmp_path / "bad")
    assert not undocumented.success
    # the final split tests nobody by design: validate_folds exempts it without being told
    assert _failed_suites(undocumented) == {"fold-0.class_coverage"}
    assert _off(undocumented)["missing_class_split"] == [{"label": "viral", "split": "val"}]
    assert _off(undocumented, "final")["missing_class_split"] == []
    assert "fold 0: class missing from split: viral in val" in undocumented.message()


def test_schema_labels_and_types(dataset, tmp_path):
    df = _fold(dataset)
    df.loc[0, "label"] = "flu"
    df.loc[1, "patient_id"] = ""
    df = df.drop(columns=["probe"])
    report = _validate(dataset, df, tmp_path)
    failed = {(e["suite"], e["expectation"], e["column"]) for e in report.failed()}
    assert ("fold-0.manifest", "expect_table_columns_to_match_ordered_list", None) in failed
    assert ("fold-0.manifest", "expect_column_values_to_be_in_set", "label") in failed
    assert ("fold-0.manifest", "expect_column_value_lengths_to_be_between", "patient_id") in failed
    assert _off(report)["frames_by_check"]["manifest.label"] == [df.loc[0, "path"]]
    # a wrong dtype: sizes written as text
    typed = _fold(dataset)
    typed["width"] = typed["width"].astype("string")
    report = _validate(dataset, typed, tmp_path)
    assert {(e["expectation"], e["column"]) for e in report.failed()} == {
        ("expect_column_values_to_be_of_type", "width"),
        ("expect_column_values_to_be_between", "width"),  # text cannot be compared to a size
    }


# ------------------------------------------------------------------- across folds


def _movable(tables, role: str, exclude: str = ""):
    """(patient, fold k) with that role in fold k where another patient of each of its classes
    has the role too: moving it out of the role leaves every class in every split of fold k."""
    for k in (0, 1, 2):
        df = tables[k]
        for p, r in sorted(_role(df).items()):
            if r != role or p == exclude:
                continue
            labels = set(df.loc[df["patient_id"] == p, "label"])
            others = df[(df["split"] == role) & (df["patient_id"] != p)]
            if labels <= set(others["label"]):
                return p, k
    raise AssertionError(f"no {role} patient can move in this dataset")


def test_patient_tested_twice_and_patient_never_tested(dataset, tmp_path):
    """The validate stage over a data/splits folder where one patient is tested in two folds and
    another in none: only the cross-fold suite fails, naming both, and the Data Docs and the
    metrics are written anyway (a stale docs file is gone)."""
    tables = {k: df.copy() for k, df in dataset["tables"].items()}
    # twice: a train patient of fold k also tested there (its classes keep another train patient)
    twice, k_twice = _movable(tables, "train")
    tables[k_twice].loc[tables[k_twice]["patient_id"] == twice, "split"] = "test"
    first_fold = next(k for k in (0, 1, 2) if k != k_twice and _role(tables[k])[twice] == "test")
    # never: a test patient of a fold whose test split keeps its classes, moved to train
    never, k_never = _movable(tables, "test", exclude=twice)
    tables[k_never].loc[tables[k_never]["patient_id"] == never, "split"] = "train"

    splits_dir = dataset["root"] / "splits_cross"  # paths relative to the CSV: ../frames/...
    for k, df in tables.items():
        write_manifest(relocate(df), splits_dir / fold_file(None if k == FINAL else k))
    split_json = tmp_path / "split.json"
    split_json.write_text(json.dumps(dataset["summary"]))
    docs, metrics = tmp_path / "reports" / "validation", tmp_path / "metrics" / "validation.json"
    docs.mkdir(parents=True)
    (docs / "stale.html").write_text("old")
    sections = dataset["sections"]
    paths = validate.ValidatePaths(splits_dir, docs, metrics, split_json)
    report = validate.run(
        paths, sections.base, sections.validate, sections.frames, folds=[0, 1, 2]
    )

    assert not report.success
    assert _failed_suites(report) == {"folds.test_folds"}
    folds_twice = ",".join(map(str, sorted([first_fold, k_twice])))
    expected = {twice: folds_twice, never: "none"}
    assert report.offenders["cross_fold"]["patients_not_tested_once"] == expected
    msg = report.message()
    assert "patients not tested exactly once: " in msg
    assert f"{twice} (test folds: {folds_twice})" in msg and f"{never} (test folds: none)" in msg
    assert (docs / "index.html").is_file() and not (docs / "stale.html").exists()
    assert not any(p.name.startswith(".validation") for p in docs.parent.iterdir())
    data = json.loads(metrics.read_text())
    assert data["success"] is False and data["n_folds"] == 3
    assert data["offenders"]["cross_fold"]["patients_not_tested_once"] == expected
    assert data["evaluated_expectations"] == len(data["expectations"])
    assert data["successful_expectations"] == sum(e["success"] for e in data["expectations"])
    assert data["offenders"] == json.loads(json.dumps(report.offenders))
    [entry] = [e for e in data["expectations"] if not e["success"]]
    assert entry["suite"] == "folds.test_folds" and entry["unexpected_count"] == 2
    assert {r["patient_id"] for r in entry["unexpected"]} == {twice, never}


def test_frame_missing_from_one_fold_file(dataset, tmp_path):
    tables = {k: df.copy() for k, df in dataset["tables"].items()}
    fold1 = tables[1]
    two_clip = _two_clip_patient(fold1)
    gone = str(fold1.loc[fold1["patient_id"] == two_clip, "path"].iloc[-1])
    tables[1] = fold1[fold1["path"] != gone].reset_index(drop=True)
    exempt = _fallbacks(dataset["summary"], dataset["params"].base.classes, tmp_path)
    report = validate_folds(
        tables, dataset["root"], dataset["sections"], tmp_path / "docs", exempt
    )
    assert _failed_suites(report) == {"folds.fold_frames"}
    assert report.offenders["cross_fold"]["frames_missing_from_folds"] == [gone]
    assert report.offenders["cross_fold"]["patients_not_tested_once"] == {}
    assert f"frames not in every fold file: {gone}" in report.message()


# ------------------------------------------------------------------- the pHash search itself


def test_cross_split_nearest_matches_brute_force():
    rng = np.random.default_rng(5)
    n = 1300  # more than one block of rows
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) | (rng.integers(0, 2, n, np.uint64) << 63)
    groups = rng.choice(np.array(SPLITS, dtype=object), n)
    hashes[7] = hashes[900] ^ np.uint64(0b101)  # a planted pair at distance 2
    groups[7], groups[900] = "train", "test"
    dist, nearest = cross_group_nearest(hashes, groups)
    sample = rng.choice(n, 60, replace=False).tolist() + [7, 900]
    for i in sample:
        other = np.flatnonzero(groups != groups[i])
        d = [(int(hashes[i]) ^ int(hashes[j])).bit_count() for j in other]
        assert dist[i] == min(d)
        assert (int(hashes[i]) ^ int(hashes[nearest[i]])).bit_count() == dist[i]
        assert groups[nearest[i]] != groups[i]
    assert dist[7] == 2 and nearest[7] == 900
    one, _ = cross_group_nearest(hashes[:5], np.array(["train"] * 5, dtype=object))
    assert (one == 64 + 1).all()  # no other split: number of bits + 1


def test_longer_hashes_span_several_words():
    a, b, c = "f" * 32, "f" * 31 + "0", "0" * 32  # 128-bit hashes: b is 4 bits from a
    words = hex_to_words([a, b, c])
    assert words.shape == (3, 2) and words.dtype == np.uint64
    dist, nearest = cross_group_nearest(words, np.array(["train", "test", "val"], dtype=object))
    assert dist.tolist() == [4, 4, 124] and nearest.tolist() == [1, 0, 1]


# ------------------------------------------------------------------- the stages, end to end


def test_split_and_validate_stages_end_to_end(tmp_path, micro_params_dict):
    """pipelines/split.py then pipelines/validate.py on a folder of real PNGs: two viral
    patients, so k = 2 and each fold's validation lacks viral (documented in split.json).
    validate passes on that; it exits 1 naming the patient when one is tested in two folds and
    the class when split.json no longer documents the gap."""
    classes = list(micro_params_dict["base"]["classes"])
    size = micro_params_dict["base"]["image_size"]
    spec = {"regular": 5, "covid": 4, "pneumonia": 4, "viral": 2}
    assert list(spec) == classes
    run = tmp_path / "clean"
    params = params_file(run, micro_params_dict, classes, folds=[0, 1])
    df = with_pngs(_manifest(spec, size, frames=2, clips=lambda p: 1), run / "data")
    write_manifest(df, run / "data" / "frames.csv")
    code, out, err = finish(
        start_stage("split", run, params, "data/frames.csv", "data/splits", "reports/split.json")
    )
    assert code == 0, err
    report = json.loads((run / "reports" / "split.json").read_text())
    assert [report["folds"][k]["val_missing"] for k in ("0", "1")] == [["viral"], ["viral"]]
    assert report["final"]["val_missing"] == []
    assert "validation has no ['viral'] (too few)" in out

    # tested twice: a regular train patient of a fold whose train keeps another regular patient
    folds = {k: read_manifest(run / "data" / "splits" / fold_file(k)) for k in (0, 1)}

    def regular_train(k: int) -> list[str]:
        role = _role(folds[k])
        return [p for p in sorted(role) if p.startswith("regular") and role[p] == "train"]

    k_twice = next(k for k in (0, 1) if len(regular_train(k)) >= 2)
    twice = regular_train(k_twice)[0]  # tested in the other fold; regular still trains here
    # one failing run with both faults: the patient tested twice, and split.json that no longer
    # documents the validation gap
    bad = tmp_path / "bad"
    shutil.copytree(run / "data", bad / "data")
    shutil.copytree(run / "reports", bad / "reports")
    leaked = folds[k_twice].copy()
    leaked.loc[leaked["patient_id"] == twice, "split"] = "test"
    write_manifest(leaked, bad / "data" / "splits" / fold_file(k_twice))
    cleared = json.loads(json.dumps(report))
    for entry in cleared["folds"].values():
        entry["val_missing"] = []
    (bad / "reports" / "split.json").write_text(json.dumps(cleared))

    args = ("data/splits", "reports/split.json", "reports/validation", "metrics/validation.json")
    procs = {d: start_stage("validate", d, params, *args) for d in (run, bad)}
    res = {d: finish(p) for d, p in procs.items()}

    code, out, err = res[run]
    assert code == 0, err[-3000:]
    assert "validation passed" in out and f"on {len(df)} frames, 2 fold(s)" in out
    code, out, err = res[bad]
    assert code == 1, err[-3000:]
    assert "validation FAILED: 5 of " in err  # test_folds + (patients, frames) x 2 folds
    assert f"patients not tested exactly once: {twice} (test folds: 0,1)" in err
    assert "fold 0: class missing from split: viral in val" in err
    assert "fold 1: class missing from split: viral in val" in err
    for d, success in ((run, True), (bad, False)):
        assert (d / "reports" / "validation" / "index.html").is_file()
        metrics = json.loads((d / "metrics" / "validation.json").read_text())
        assert metrics["success"] is success and metrics["n_folds"] == 2
    failed = {(e["suite"], e["column"]) for e in metrics["expectations"] if not e["success"]}
    assert failed == {
        ("folds.test_folds", "n_test_folds"),
        *((f"fold-{k}.class_coverage", c) for k in (0, 1) for c in ("patients", "frames")),
    }
    assert metrics["offenders"]["cross_fold"]["patients_not_tested_once"] == {twice: "0,1"}
    for k in ("0", "1"):
        assert metrics["offenders"]["folds"][k]["missing_class_split"] == [
            {"label": "viral", "split": "val"}
        ]
