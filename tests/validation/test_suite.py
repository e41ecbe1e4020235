"""The Great Expectations suite: passes on a clean split, catches each injected fault by name.

One small dataset of real PNGs (32 px, random textures, 3 frames per video) is built once
per module; each test copies its splits table, injects one fault and validates it.
"""

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

from lusaug.config import PROJ_ROOT, Params
from lusaug.data.hashing import cross_group_nearest, hex_to_words
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS, write_manifest
from lusaug.data.split import link_patients, split_by_patient
from lusaug.validation import run_validation, validate_splits
from lusaug.validation.suite import measure_frames, near_identical_table

PATIENTS = {"regular": 4, "covid": 3, "pneumonia": 3, "viral": 3}


def _frame(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A frame of a clip: the clip's smooth texture plus a little per-frame noise."""
    img = 128 + 45 * base + rng.normal(0, 2.0, base.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_png(root: Path, rel: str, img: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / rel), img)
    return hashlib.sha1(img.tobytes()).hexdigest()


def _row(rel: str, label: str, video: str, patient: str, sha1: str, size: int) -> dict:
    return {
        "path": rel, "label": label, "video_id": video, "patient_id": patient, "probe": "convex",
        "source": "test", "license": "CC BY 4.0", "width": size, "height": size, "sha1": sha1,
    }  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, micro_params: Params):
    """(root, clean splits table, params): PNGs under root/frames, paths relative to root."""
    root = tmp_path_factory.mktemp("lus") / "data"
    size = micro_params.base.image_size
    rng = np.random.default_rng(0)
    rows = []
    for label, n in PATIENTS.items():
        for p in range(n):
            patient = f"{label}-p{p}"
            for v in range(1 + p % 2):  # patients with one and with two clips
                video = f"{patient}-v{v}"
                # texture at half the frame resolution, like speckle: a 16x16 pHash keeps
                # DCT terms up to that scale, so much smoother textures would hash as noise
                noise = rng.normal(0, 1, (size // 2, size // 2)).astype(np.float32)
                base = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
                for i in range(3):
                    rel = f"frames/{label}/{video}_{i:05d}.png"
                    sha = _write_png(root, rel, _frame(base, rng))
                    rows.append(_row(rel, label, video, patient, sha, size))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    splits = split_by_patient(manifest, micro_params.base.classes, micro_params.split, seed=3)
    return root, splits, micro_params


def _validate(dataset, df, tmp_path):
    root, _, params = dataset
    return validate_splits(df, root, params, tmp_path / "docs")


def _entries(report, suite, column=None):
    out = [e for e in report.expectations if e["suite"] == suite]
    return [e for e in out if column is None or e["column"] == column]


def _failed_suites(report) -> set[str]:
    return {e["suite"] for e in report.failed()}


def _two_clip_patient(splits: pd.DataFrame) -> str:
    n = splits.groupby("patient_id")["video_id"].nunique()
    return str(n[n > 1].index[0])


def _other(split: str) -> str:
    return SPLITS[(SPLITS.index(split) + 1) % len(SPLITS)]


# ------------------------------------------------------------------- clean


def test_clean_split_passes(dataset, tmp_path):
    _, splits, _ = dataset
    report = _validate(dataset, splits.copy(), tmp_path)
    assert report.success, report.message()
    assert report.statistics["evaluated_expectations"] >= 45
    assert (
        report.statistics["successful_expectations"] == report.statistics["evaluated_expectations"]
    )
    # every suite ran and every leakage check is a real GX expectation
    suites = {e["suite"] for e in report.expectations}
    assert {"manifest", "frames", "class_coverage", "patient_leakage", "video_leakage",
            "identical_frames", "near_identical_frames"} <= suites  # fmt: skip
    assert report.offenders["patients"] == {} and report.offenders["frames"] == []
    assert (tmp_path / "docs" / "index.html").is_file()


# ------------------------------------------------------------------- leakage of each kind


def test_patient_in_two_splits(dataset, tmp_path):
    _, splits, _ = dataset
    df = splits.copy()
    patient = _two_clip_patient(df)
    rows = df["patient_id"] == patient
    video = sorted(df.loc[rows, "video_id"].unique())[1]
    home = df.loc[rows, "split"].iloc[0]
    df.loc[df["video_id"] == video, "split"] = _other(home)  # the whole clip moves
    report = _validate(dataset, df, tmp_path)
    assert not report.success
    assert _failed_suites(report) == {"patient_leakage"}
    assert report.offenders["patients"] == {
        patient: sorted({home, _other(home)}, key=SPLITS.index)
    }
    assert report.offenders["videos"] == {}
    assert patient in report.message()


def test_video_in_two_splits(dataset, tmp_path):
    _, splits, _ = dataset
    df = splits.copy()
    video = str(df["video_id"].iloc[0])
    idx = df.index[df["video_id"] == video][-1]
    home = df.loc[idx, "split"]
    # one frame of the clip filed under another patient in another split: the video leaks (and,
    # as consecutive frames are alike, so does a near-identical frame), the patient does not
    df.loc[idx, ["split", "patient_id"]] = [_other(home), "ghost-patient"]
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"video_leakage", "near_identical_frames"}
    assert report.offenders["patients"] == {}
    assert list(report.offenders["videos"]) == [video]
    assert set(report.offenders["videos"][video]) == {home, _other(home)}
    assert video in report.message()


def test_identical_frame_in_two_splits(dataset, tmp_path):
    root, splits, _ = dataset
    df = splits.copy()
    src = df[df["split"] == "train"].iloc[0]
    rel = "frames/copies/identical_00000.png"
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED)
    sha = _write_png(root, rel, img)
    assert sha == src["sha1"]
    new = _row(rel, src["label"], "copy-video", "copy-patient", sha, int(src["width"]))
    df = pd.concat([df, pd.DataFrame([{**new, "split": "test"}])], ignore_index=True)
    report = _validate(dataset, df, tmp_path)
    sha_check = _entries(report, "identical_frames", "sha1")[0]
    assert not sha_check["success"] and sha_check["unexpected_count"] == 2
    assert report.offenders["identical_frames"] == {sha: [(src["path"], "train"), (rel, "test")]}
    assert {src["path"], rel} <= set(report.offenders["frames"])
    assert report.offenders["patients"] == {} and report.offenders["videos"] == {}
    assert rel in report.message()


def test_near_identical_frame_in_two_splits(dataset, tmp_path):
    root, splits, params = dataset
    df = splits.copy()
    src = df[df["split"] == "val"].iloc[0]
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED).astype(np.int16)
    noise = np.random.default_rng(1).integers(-2, 3, img.shape)
    shifted = np.clip(img + 4 + noise, 0, 255).astype(np.uint8)  # brighter, slightly noisy
    rel = "frames/copies/near_00000.png"
    sha = _write_png(root, rel, shifted)
    assert sha != src["sha1"]
    new = _row(rel, src["label"], "near-video", "near-patient", sha, int(src["width"]))
    df = pd.concat([df, pd.DataFrame([{**new, "split": "train"}])], ignore_index=True)
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"near_identical_frames"}
    assert _entries(report, "identical_frames")[0]["success"]
    pairs = report.offenders["near_identical_pairs"]
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
    """A duplicate filed under a second patient: a plain patient split leaks it, validation says
    so; the split's linking keeps both patients together and the same validation passes."""
    root, splits, params = dataset
    regular = splits[splits["label"] == "regular"].groupby("patient_id")["split"].first()
    src_patient = regular.index[0]
    dst_patient = next(p for p, s in regular.items() if s != regular[src_patient])
    src = splits[splits["patient_id"] == src_patient].iloc[0]
    img = cv2.imread(str(root / src["path"]), cv2.IMREAD_UNCHANGED).astype(np.int16)
    noisy = np.clip(img + 3 + np.random.default_rng(7).integers(-2, 3, img.shape), 0, 255)
    rel = "frames/regular/refiled_00000.png"
    sha = _write_png(root, rel, noisy.astype(np.uint8))
    new = _row(rel, "regular", "refiled", dst_patient, sha, int(src["width"]))
    manifest = pd.concat(
        [splits.drop(columns="split"), pd.DataFrame([new])], ignore_index=True
    ).astype({"width": "int64", "height": "int64"})
    classes, v = params.base.classes, params.validate

    plain = split_by_patient(manifest, classes, params.split, seed=3)
    assert plain.loc[plain["path"] == rel, "split"].item() != src["split"]
    near = near_identical_table(measure_frames(plain, root, v.phash_size))
    leaked = near[near["phash_min_distance"] <= v.phash_max_distance]
    assert {src["path"], rel} <= set(leaked["path"])  # what the GX suite would reject

    links = link_patients(manifest, root, v.phash_size, v.phash_max_distance)
    assert links.groups() == {min(src_patient, dst_patient): sorted([src_patient, dst_patient])}
    linked = split_by_patient(manifest, classes, params.split, seed=3, links=links)
    assert linked.groupby("patient_id")["split"].nunique().max() == 1
    pair = linked["patient_id"].isin([src_patient, dst_patient])
    assert linked.loc[pair, "split"].nunique() == 1
    report = _validate(dataset, linked, tmp_path)
    assert report.success, report.message()


# ------------------------------------------------------------------- files, sizes, pixels


def test_wrong_size_and_missing_file(dataset, tmp_path):
    root, splits, params = dataset
    df = splits.copy()
    big = params.base.image_size + 8
    rel = "frames/odd/big_00000.png"
    _write_png(root, rel, np.random.default_rng(2).integers(20, 200, (big, big), dtype=np.uint8))
    df.loc[0, ["path", "width"]] = [rel, big]
    df.loc[1, "path"] = "frames/odd/missing_00000.png"
    report = _validate(dataset, df, tmp_path)
    by_check = report.offenders["frames_by_check"]
    assert by_check["frames.png_width"] == [rel] and by_check["frames.png_height"] == [rel]
    assert by_check["manifest.width"] == [rel]
    assert by_check["frames.exists"] == ["frames/odd/missing_00000.png"]
    assert "frames.readable" not in by_check  # a missing file is reported once, as missing
    assert _failed_suites(report) == {"manifest", "frames"}
    assert "missing_00000.png" in report.message()


def test_blank_frame_fails_pixel_statistics(dataset, tmp_path):
    root, splits, params = dataset
    df = splits.copy()
    rel = "frames/odd/black_00000.png"
    size = params.base.image_size
    _write_png(root, rel, np.zeros((size, size), dtype=np.uint8))
    df.loc[2, "path"] = rel
    report = _validate(dataset, df, tmp_path)
    failed = {(e["suite"], e["column"]) for e in report.failed()}
    assert failed == {("frames", "pix_mean"), ("frames", "pix_std")}
    assert report.offenders["frames"] == [rel]


def test_every_class_in_every_split(dataset, tmp_path):
    _, splits, _ = dataset
    df = splits.copy()
    df.loc[(df["label"] == "viral") & (df["split"] == "test"), "split"] = "train"
    report = _validate(dataset, df, tmp_path)
    assert _failed_suites(report) == {"class_coverage"}
    assert report.offenders["missing_class_split"] == [{"label": "viral", "split": "test"}]


def test_schema_labels_and_types(dataset, tmp_path):
    _, splits, _ = dataset
    df = splits.copy()
    df.loc[0, "label"] = "flu"
    df.loc[1, "patient_id"] = ""
    df = df.drop(columns=["probe"])
    report = _validate(dataset, df, tmp_path)
    failed = {(e["suite"], e["expectation"], e["column"]) for e in report.failed()}
    assert ("manifest", "expect_table_columns_to_match_ordered_list", None) in failed
    assert ("manifest", "expect_column_values_to_be_in_set", "label") in failed
    assert ("manifest", "expect_column_value_lengths_to_be_between", "patient_id") in failed
    assert report.offenders["frames_by_check"]["manifest.label"] == [df.loc[0, "path"]]
    # a wrong dtype: sizes written as text
    typed = splits.copy()
    typed["width"] = typed["width"].astype("string")
    report = _validate(dataset, typed, tmp_path)
    assert {(e["expectation"], e["column"]) for e in report.failed()} == {
        ("expect_column_values_to_be_of_type", "width"),
        ("expect_column_values_to_be_between", "width"),  # text cannot be compared to a size
    }


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


# ------------------------------------------------------------------- outputs and the stage


def test_run_validation_writes_docs_and_metrics_even_on_failure(dataset, tmp_path):
    root, splits, params = dataset
    df = splits.copy()
    patient = _two_clip_patient(df)
    video = sorted(df.loc[df["patient_id"] == patient, "video_id"].unique())[1]
    df.loc[df["video_id"] == video, "split"] = _other(
        df.loc[df["video_id"] == video, "split"].iloc[0]
    )
    csv = root / "splits_failing.csv"
    write_manifest(df, csv)
    docs, metrics = tmp_path / "reports" / "validation", tmp_path / "metrics" / "validation.json"
    docs.mkdir(parents=True)
    (docs / "stale.html").write_text("old")
    report = run_validation(csv, docs, metrics, params)
    assert not report.success and list(report.offenders["patients"]) == [patient]
    assert (docs / "index.html").is_file() and not (docs / "stale.html").exists()
    assert not any(p.name.startswith(".validation") for p in docs.parent.iterdir())
    data = json.loads(metrics.read_text())
    assert data["success"] is report.success
    assert data["evaluated_expectations"] == len(data["expectations"])
    assert data["successful_expectations"] == sum(e["success"] for e in data["expectations"])
    assert data["offenders"] == json.loads(json.dumps(report.offenders))


def _stage(root: Path, tmp_path: Path, params_dict: dict, csv: str) -> subprocess.Popen:
    """Start `pipelines/validate.py` in ``tmp_path`` (runs concurrently; GX import is slow)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_dict))
    env = dict(os.environ, LUSAUG_PARAMS=str(params_path), GX_ANALYTICS_ENABLED="false")
    cmd = [
        sys.executable,
        str(PROJ_ROOT / "pipelines" / "validate.py"),
        str(root / csv),
        "reports/validation",
        "metrics/validation.json",
    ]
    return subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_stage_exit_codes(dataset, tmp_path, micro_params_dict):
    root, splits, _ = dataset
    write_manifest(splits, root / "splits_clean.csv")
    leaky = splits.copy()
    patient = _two_clip_patient(leaky)
    video = min(leaky.loc[leaky["patient_id"] == patient, "video_id"].unique())
    home = leaky.loc[leaky["video_id"] == video, "split"].iloc[0]
    leaky.loc[leaky["video_id"] == video, "split"] = _other(home)
    write_manifest(leaky, root / "splits_leaky.csv")

    clean_dir, leaky_dir = tmp_path / "clean", tmp_path / "leaky"
    procs = {
        "clean": _stage(root, clean_dir, micro_params_dict, "splits_clean.csv"),
        "leaky": _stage(root, leaky_dir, micro_params_dict, "splits_leaky.csv"),
    }
    outs = {k: p.communicate(timeout=300) for k, p in procs.items()}
    assert procs["clean"].returncode == 0, outs["clean"][1][-2000:]
    assert "validation passed" in outs["clean"][0]
    assert procs["leaky"].returncode != 0
    err = outs["leaky"][1]
    assert patient in err and "patients in two splits" in err
    for d, success in ((clean_dir, True), (leaky_dir, False)):
        assert (d / "reports" / "validation" / "index.html").is_file()
        assert json.loads((d / "metrics" / "validation.json").read_text())["success"] is success
