"""The frames stage: sampling, crop.json, black borders, squaring, manifest, atomic outputs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from lusaug.core.config import PROJ_ROOT
from lusaug.data.decode import CropSpec
from lusaug.data.frames_plan import FramesError
from lusaug.data.manifest import MANIFEST_COLUMNS, RAW_METADATA_COLUMNS
from lusaug.data.pixels import to_square, trim_black
from lusaug.stages.frames import FramesPaths, run
from tests.data.media_helpers import (
    frame_pattern,
    make_raw,
    small_params,
    write_image,
    write_video,
)


def _run(raw: Path, out: Path, params):
    paths = FramesPaths(raw, out / "frames", out / "frames.csv", out / "ingest.json")
    return run(paths, params.base, params.import_, params.frames)


def _file_report(report: dict, rel: str) -> dict:
    return next(f for f in report["files"] if f["file"] == rel)


def _one_video_raw(tmp_path: Path, n_frames: int, fps: float, **kw) -> Path:
    """All four classes present (so the stage succeeds); the covid clip is the one under test."""
    raw = make_raw(tmp_path / "raw", n_frames=4)
    write_video(raw / "pocus_videos/convex/Cov_test.avi", n_frames, fps=fps, **kw)
    return raw


REL = "pocus_videos/convex/Cov_test.avi"


@pytest.mark.parametrize(
    ("n_frames", "fps", "overrides", "expected"),
    [
        (60, 30.0, {"sample_fps": 3.0, "max_per_video": 0}, [0, 10, 20, 30, 40, 50]),
        (50, 25.0, {"sample_fps": 3.0, "max_per_video": 0}, [0, 9, 17, 25, 34, 42]),
        (60, 30.0, {"sample_fps": 0.0, "every_n": 7, "max_per_video": 0}, list(range(0, 60, 7))),
        (60, 30.0, {"sample_fps": 3.0, "max_per_video": 4}, [0, 20, 30, 50]),
        (10, 30.0, {"sample_fps": 60.0, "max_per_video": 0}, list(range(10))),
    ],
)
def test_sampling(tmp_path, params, n_frames, fps, overrides, expected):
    p = small_params(params, auto_crop_black=False, **overrides)
    report = _run(_one_video_raw(tmp_path, n_frames, fps), tmp_path / "out", p)
    assert _file_report(report, REL)["frame_indices"] == expected
    df = pd.read_csv(tmp_path / "out" / "frames.csv", dtype=str)
    names = sorted(Path(x).name for x in df[df.video_id == "Cov_test"].path)
    assert names == [f"Cov_test_{i:05d}.png" for i in expected]


def test_sampled_pixels_come_from_the_right_frames(tmp_path, params):
    # frame i has background 40 + (3 i mod 150) (lossless FFV1), so each PNG must show its own frame
    p = small_params(params, sample_fps=3.0, max_per_video=0, auto_crop_black=False)
    p = replace(p, base=replace(p.base, image_size=64))
    raw = _one_video_raw(tmp_path, 60, 30.0, size=(64, 64))
    _run(raw, tmp_path / "out", p)
    for i in [0, 10, 20, 30, 40, 50]:
        img = cv2.imread(str(tmp_path / f"out/frames/covid/Cov_test_{i:05d}.png"), -1)
        assert img.dtype == np.uint8 and img.ndim == 2
        assert int(np.median(img[40:])) == 40 + (3 * i) % 150


def test_cap_spreads_over_a_long_clip(tmp_path, params):
    # every frame is a candidate; the buffer thins itself but the pick still spans the clip
    p = small_params(params, sample_fps=0.0, every_n=1, max_per_video=5, auto_crop_black=False)
    report = _run(_one_video_raw(tmp_path, 120, 30.0), tmp_path / "out", p)
    idx = _file_report(report, REL)["frame_indices"]
    assert len(idx) == 5 and idx == sorted(set(idx))
    assert idx[0] == 0 and idx[-1] >= 100
    gaps = np.diff(idx)
    assert gaps.max() <= 2 * gaps.min() + 2


def _gradient(i: int, h: int, w: int) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    grey = (2 * cols + rows + i).clip(0, 255).astype(np.uint8)
    return np.dstack([grey] * 3)


def test_crop_json_box_and_frame_range(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4)
    write_video(raw / REL, 60, fps=30.0, size=(64, 48), frame_fn=_gradient)
    write_image(raw / "pocus_images/convex/Reg_img.png", size=(64, 48))
    crops = {
        REL: [[8, 16, 24], [10, 40.0]],  # top=8, left=16, side=24; frames 10..39
        "pocus_images/convex/Reg_img.png": [[4, 2, 20], [0, -9.2e18]],  # garbage end: ignored
    }
    (raw / "crop.json").write_text(json.dumps(crops))
    p = small_params(params, sample_fps=3.0, max_per_video=0, auto_crop_black=False)
    p = replace(p, base=replace(p.base, image_size=24))
    report = _run(raw, tmp_path / "out", p)
    info = _file_report(report, REL)
    assert info["frame_indices"] == [10, 20, 30]
    assert info["cropped_size"] == [24, 24]
    img = cv2.imread(str(tmp_path / "out/frames/covid/Cov_test_00010.png"), -1)
    # pixel (r, c) of the crop is source (8 + r, 16 + c): 2 * (16 + c) + (8 + r) + 10
    rows, cols = np.mgrid[0:24, 0:24]
    assert np.array_equal(img, (2 * (16 + cols) + (8 + rows) + 10).astype(np.uint8))
    assert _file_report(report, "pocus_images/convex/Reg_img.png")["cropped_size"] == [20, 20]

    off = small_params(
        params, sample_fps=3.0, max_per_video=0, auto_crop_black=False, use_crop_json=False
    )
    report = _run(raw, tmp_path / "out2", off)
    assert _file_report(report, REL)["frame_indices"] == [0, 10, 20, 30, 40, 50]
    assert _file_report(report, REL)["cropped_size"] == [64, 48]


def test_crop_spec_parse():
    spec = CropSpec.parse([[25, 90, 250], [0, 30.0]])
    assert (spec.top, spec.left, spec.size, spec.start, spec.end) == (25, 90, 250, 0, 30)
    assert CropSpec.parse([[1, 2, 3], [0, 0.0]]).end is None
    assert CropSpec.parse([[1, 2, 3], [5, -9.223372036854776e18]]).end is None
    with pytest.raises(ValueError):
        CropSpec.parse([[1, 2, 0], [0, 1]])


def test_malformed_crop_entry_is_noted_not_fatal(tmp_path, params):
    raw = _one_video_raw(tmp_path, 10, 30.0)
    (raw / "crop.json").write_text(json.dumps({REL: [["a", 1, 2], [0, 5]]}))
    report = _run(raw, tmp_path / "out", small_params(params))
    info = _file_report(report, REL)
    assert info["frames"] > 0 and any("malformed crop.json" in n for n in info["notes"])


def test_trim_black_only_at_the_edges():
    frame = np.zeros((40, 50), np.uint8)
    frame[6:34, 10:45] = 100
    frame[15:20, :] = 0  # a dark band inside: anatomy, must stay
    frame[2, 3] = 12  # at the threshold: still border
    other = np.zeros_like(frame)
    other[5, 20] = 90  # another frame brightens one more row
    assert trim_black([frame, other], threshold=12) == (5, 34, 10, 45)
    assert trim_black([np.full((4, 4), 12, np.uint8)], threshold=12) is None


def test_black_border_removed_end_to_end(tmp_path, params):
    def bordered(i: int, h: int, w: int) -> np.ndarray:
        f = np.zeros((h, w, 3), np.uint8)
        # black: 16 rows on top, 8 columns left and right; the content has a gentle ramp (a
        # flat frame would be dropped as blank)
        f[16:, 8:56] = (90 + i + np.arange(48) // 2)[None, :, None]
        return f

    raw = make_raw(tmp_path / "raw", n_frames=4)
    write_video(raw / REL, 6, size=(64, 64), frame_fn=bordered)
    p = small_params(params, auto_crop_black=True, black_threshold=12)
    info = _file_report(_run(raw, tmp_path / "out", p), REL)
    assert info["black_border_trim"] == [16, 0, 8, 8]
    assert info["cropped_size"] == [48, 48]
    img = cv2.imread(str(tmp_path / "out/frames/covid/Cov_test_00000.png"), -1)
    assert img.min() >= 90  # no black left: the content fills the square


def test_to_square_pads_and_keeps_aspect():
    wide = np.full((20, 40), 200, np.uint8)
    out = to_square(wide, 16)
    assert out.shape == (16, 16) and out.dtype == np.uint8
    assert out[:3].max() == 0 and out[-3:].max() == 0  # black pad above and below
    assert out[6:10].min() == 200
    tiny = np.full((8, 8), 77, np.uint8)
    assert np.array_equal(to_square(tiny, 16), np.full((16, 16), 77, np.uint8))


def test_manifest_schema_sha1_and_paths(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=12)
    write_image(raw / "pocus_images/linear/Pneu_still.jpg")
    p = small_params(params, max_per_video=3)
    report = _run(raw, tmp_path / "out", p)
    df = pd.read_csv(tmp_path / "out/frames.csv", dtype=str, keep_default_na=False)
    assert list(df.columns) == MANIFEST_COLUMNS
    assert set(df.label) == set(params.base.classes)
    assert (df.width == "32").all() and (df.height == "32").all()
    for row in df.itertuples():
        img = cv2.imread(str(tmp_path / "out" / row.path), cv2.IMREAD_UNCHANGED)
        assert img.shape == (32, 32) and img.dtype == np.uint8
        assert hashlib.sha1(img.tobytes()).hexdigest() == row.sha1
        assert row.path.startswith(f"frames/{row.label}/{row.video_id}_")
    still = df[df.video_id == "Pneu_still"]
    assert len(still) == 1 and still.patient_id.iloc[0] == "file:Pneu_still"
    assert still.probe.iloc[0] == "linear"
    clip = df[df.video_id == "Cov_clip0"]
    assert set(clip.patient_id) == {"covid-p0"} and set(clip.license) == {"CC0"}
    assert report["totals"]["frames"] == len(df)
    # PNG files on disk are exactly the manifest rows
    on_disk = {
        p.relative_to(tmp_path / "out").as_posix()
        for p in (tmp_path / "out/frames").rglob("*.png")
    }
    assert on_disk == set(df.path)


def test_shared_stems_get_unique_video_ids(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4, with_metadata=False)
    write_video(raw / "pocus_videos/linear/Reg_clip0.avi", 4)  # same stem as the convex clip
    _run(raw, tmp_path / "out", small_params(params))
    df = pd.read_csv(tmp_path / "out/frames.csv", dtype=str)
    reg = df[df.label == "regular"].groupby("video_id").probe.first()
    assert len(reg) == 2 and all(v.startswith("Reg_clip0__") for v in reg.index)
    assert set(reg) == {"convex", "linear"}
    assert df.groupby("video_id").patient_id.nunique().max() == 1


def test_metadata_rows_and_files_outside_it(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4)
    write_video(raw / "pocus_videos/convex/Reg_extra.avi", 4)  # not in metadata.csv
    meta = pd.read_csv(raw / "metadata.csv", dtype=str)
    extra = pd.DataFrame(
        [
            {
                "file": "pocus_videos/convex/Gone.avi",
                "label": "covid",
                "patient_id": "1",
                "probe": "convex",
                "source": "",
                "license": "",
            },
        ],
        columns=RAW_METADATA_COLUMNS,
    )
    pd.concat([meta, extra]).to_csv(raw / "metadata.csv", index=False)
    write_video(raw / "pocus_videos/convex/Cov_other.avi", 4)
    meta = pd.read_csv(raw / "metadata.csv", dtype=str)
    meta.loc[len(meta)] = ["pocus_videos/convex/Cov_other.avi", "tuberculosis", "2", "", "", ""]
    meta.to_csv(raw / "metadata.csv", index=False)

    report = _run(raw, tmp_path / "out", small_params(params))
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert "not found" in reasons["pocus_videos/convex/Gone.avi"]
    assert "tuberculosis" in reasons["pocus_videos/convex/Cov_other.avi"]
    df = pd.read_csv(tmp_path / "out/frames.csv", dtype=str)
    extra_rows = df[df.video_id == "Reg_extra"]
    assert set(extra_rows.patient_id) == {"file:Reg_extra"}
    assert set(extra_rows.label) == {"regular"}


def test_real_world_names_are_read_and_ambiguous_ones_reported(tmp_path, params):
    """A prefix followed by a space, digit or bracket names the class; a name that a shorter
    prefix of another class also matches is listed in reports/ingest.json with the reason."""
    raw = make_raw(tmp_path / "raw", n_frames=4, with_metadata=False)
    for name in ("Reg 2.avi", "Cov-case3.avi", "Vir(1).avi", "Vir_or_Pneu 4.avi"):
        write_video(raw / "pocus_videos/convex" / name, 4)
    prefixes = {**params.import_.prefixes, "Vir_or_Pneu": "pneumonia"}
    p = small_params(params)
    p = replace(p, import_=replace(p.import_, prefixes=prefixes))
    report = _run(raw, tmp_path / "out", p)
    assert report["skipped"] == []
    labels = {f["file"].rsplit("/", 1)[1]: f["label"] for f in report["files"]}
    assert labels["Reg 2.avi"] == "regular" and labels["Cov-case3.avi"] == "covid"
    assert labels["Vir(1).avi"] == "viral" and labels["Vir_or_Pneu 4.avi"] == "pneumonia"
    (amb,) = report["ambiguous_names"]
    assert amb["file"] == "pocus_videos/convex/Vir_or_Pneu 4.avi" and amb["label"] == "pneumonia"
    assert "'Vir' (viral)" in amb["reason"] and "'Vir_or_Pneu' (pneumonia)" in amb["reason"]
    saved = json.loads((tmp_path / "out/ingest.json").read_text())
    assert saved["ambiguous_names"] == report["ambiguous_names"]


def test_parallel_equals_serial(tmp_path, params):
    raw = make_raw(tmp_path / "raw", per_class=2, n_frames=10)
    serial = small_params(params, max_per_video=4, sample_fps=0.0, every_n=1)
    _run(raw, tmp_path / "one", serial)
    _run(raw, tmp_path / "two", replace(serial, base=replace(serial.base, workers=2)))
    one = (tmp_path / "one/frames.csv").read_text()
    assert one == (tmp_path / "two/frames.csv").read_text()
    assert len(one.splitlines()) == 1 + 8 * 4


def test_class_without_frames_fails_naming_it_and_keeps_old_outputs(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=6)
    out = tmp_path / "out"
    p = small_params(params)
    _run(raw, out, p)
    before_csv = (out / "frames.csv").read_bytes()
    before_pngs = sorted(x.relative_to(out) for x in (out / "frames").rglob("*.png"))

    # the only viral clip becomes unreadable: the stage must stop and say "viral"
    (raw / "pocus_videos/convex/Vir_clip0.avi").write_bytes(b"")
    with pytest.raises(FramesError, match="'viral'") as err:
        _run(raw, out, p)
    assert "1 file(s) of it skipped" in str(err.value)
    assert (out / "frames.csv").read_bytes() == before_csv
    assert sorted(x.relative_to(out) for x in (out / "frames").rglob("*.png")) == before_pngs
    report = json.loads((out / "ingest.json").read_text())
    assert "viral" in report["error"]
    assert {"file": "pocus_videos/convex/Vir_clip0.avi", "reason": "empty file (0 bytes)"} in (
        report["skipped"]
    )
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_missing_or_empty_raw_folder(tmp_path, params):
    with pytest.raises(FramesError, match="does not exist"):
        _run(tmp_path / "nope", tmp_path / "out", params)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FramesError, match="is empty"):
        _run(tmp_path / "empty", tmp_path / "out", params)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.docx").write_text("x")
    with pytest.raises(FramesError, match="no usable video or image"):
        _run(tmp_path / "notes", tmp_path / "out", params)
    assert not (tmp_path / "out").exists()


def test_pipeline_script(tmp_path, micro_params_dict):
    pdict = json.loads(json.dumps(micro_params_dict))
    pdict["base"]["workers"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(pdict))
    script = str(PROJ_ROOT / "pipelines" / "frames.py")
    args = ["data/raw", "data/frames", "data/frames.csv", "reports/ingest.json"]
    env = {**os.environ, "LUSAUG_PARAMS": str(tmp_path / "params.yaml")}

    bad = subprocess.run(
        [sys.executable, script, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode != 0
    assert "frames failed: raw folder data/raw does not exist" in bad.stderr
    assert "Traceback" not in bad.stderr

    make_raw(tmp_path / "data/raw", n_frames=6)
    ok = subprocess.run(
        [sys.executable, script, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    df = pd.read_csv(tmp_path / "data/frames.csv", dtype=str)
    assert (df.width == str(pdict["base"]["image_size"])).all()
    assert (tmp_path / "reports/ingest.json").is_file()


# --- blank, near-black and saturated frames ------------------------------------------------------


def _mixed_quality(i: int, h: int, w: int) -> np.ndarray:
    """Frame 2 blank (all black), 5 near-black (one dim row), 7 saturated; the rest normal."""
    if i == 2:
        return np.zeros((h, w, 3), np.uint8)
    if i == 5:
        f = np.zeros((h, w, 3), np.uint8)
        f[h // 2] = 100  # mean ~1.6 (< frames.min_mean) but std ~12 (> frames.min_std)
        return f
    if i == 7:
        f = np.full((h, w, 3), 255, np.uint8)
        f[h // 2 : h // 2 + 2] = 200  # mean ~253 (> frames.max_mean), std ~10
        return f
    return frame_pattern(i, h, w)


def test_blank_near_black_and_saturated_frames_are_dropped_and_reported(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4)
    write_video(raw / REL, 9, size=(64, 64), frame_fn=_mixed_quality)
    p = small_params(params, sample_fps=0.0, every_n=1, max_per_video=0, auto_crop_black=False)
    assert (p.frames.min_std, p.frames.min_mean, p.frames.max_mean) == (2.0, 3.0, 250.0)
    report = _run(raw, tmp_path / "out", p)

    kept = [0, 1, 3, 4, 6, 8]
    info = _file_report(report, REL)
    assert info["frame_indices"] == kept and info["frames"] == len(kept)
    by_reason = {d["reason"].split(":")[0]: d for d in report["dropped_frames"]}
    assert {k: d["frame_indices"] for k, d in by_reason.items()} == {
        "blank": [2],
        "near-black": [5],
        "saturated": [7],
    }
    assert all(d["file"] == REL and d["count"] == 1 for d in report["dropped_frames"])
    assert "frames.min_std=2" in by_reason["blank"]["reason"]
    assert "frames.min_mean=3" in by_reason["near-black"]["reason"]
    assert "frames.max_mean=250" in by_reason["saturated"]["reason"]
    assert sorted(info["frames_dropped"].values()) == [1, 1, 1]
    assert report["totals"]["frames_dropped"] == 3
    assert sum(report["totals"]["frames_dropped_by_reason"].values()) == 3

    df = pd.read_csv(tmp_path / "out/frames.csv", dtype=str)
    names = sorted(Path(x).name for x in df[df.video_id == "Cov_test"].path)
    assert names == [f"Cov_test_{i:05d}.png" for i in kept]
    on_disk = sorted(x.name for x in (tmp_path / "out/frames/covid").glob("Cov_test_*.png"))
    assert on_disk == names
    for rel in df.path:  # what is kept passes the rule that validate re-checks
        img = cv2.imread(str(tmp_path / "out" / rel), cv2.IMREAD_UNCHANGED)
        assert img.std() >= p.frames.min_std
        assert p.frames.min_mean <= img.mean() <= p.frames.max_mean


def test_file_with_only_blank_frames_is_skipped_with_reason(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4)
    flat = np.full((48, 48), 120, np.uint8)  # not black (kept by the border trim), but flat
    (raw / "pocus_images/convex").mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(raw / "pocus_images/convex/Reg_flat.png"), flat)
    report = _run(raw, tmp_path / "out", small_params(params))
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    reason = reasons["pocus_images/convex/Reg_flat.png"]
    assert reason.startswith("every sampled frame was dropped") and "1 blank" in reason
    assert report["dropped_frames"] == []  # a skipped file is listed once, under `skipped`
    assert not (tmp_path / "out/frames/regular/Reg_flat_00000.png").exists()


def test_pixel_thresholds_are_checked(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=4)
    with pytest.raises(FramesError, match="frames.min_mean <= frames.max_mean"):
        _run(raw, tmp_path / "out", small_params(params, min_mean=200.0, max_mean=100.0))
    with pytest.raises(FramesError, match="frames.min_std must be >= 0"):
        _run(raw, tmp_path / "out", small_params(params, min_std=-1.0))
