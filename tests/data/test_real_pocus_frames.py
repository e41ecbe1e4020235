"""Real POCUS data (../shared/pocus via the pocus_dir fixture): import -> frames.

Skips with a reason when the folder is absent. The split/validate half of the real-data chain
lives with those stages' tests.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from lusaug.data.ingest import import_folder
from lusaug.stages.frames import FramesPaths
from lusaug.stages.frames import run as run_frames

pytestmark = [pytest.mark.slow, pytest.mark.pocus]

UNCERTAIN = "Vir_or_Pneu_prospective_file4"


@pytest.fixture(scope="module")
def real_frames(pocus_dir, params, tmp_path_factory):
    out = tmp_path_factory.mktemp("pocus")
    summary = import_folder(pocus_dir, out / "raw", params, dvc_commit=False)
    # Few frames per video keep this quick; every video is still fully decoded.
    p = replace(
        params,
        base=replace(params.base, workers=2, image_size=32),
        frames=replace(params.frames, max_per_video=3),
    )
    report = run_frames(
        FramesPaths(out / "raw", out / "frames", out / "frames.csv", out / "ingest.json"),
        p.base,
        p.import_,
        p.frames,
    )
    manifest = pd.read_csv(out / "frames.csv", dtype=str, keep_default_na=False)
    return summary, report, manifest, pocus_dir


def test_import_summary(real_frames):
    summary, _, _, pocus_dir = real_frames
    media = [
        p
        for p in pocus_dir.rglob("*")
        if p.is_file()
        and p.parent.name != "label_uncertain"
        and p.suffix.lower() in {".mp4", ".mov", ".avi", ".gif", ".mpeg", ".jpg", ".png"}
    ]
    assert summary["files"] == len(media)
    assert all(n > 0 for n in summary["per_class"].values())
    assert [s["file"] for s in summary["skipped"]] == [
        f"pocus_videos/linear/label_uncertain/{UNCERTAIN}.mp4"
    ]


def test_manifest_has_every_class_and_no_uncertain_file(real_frames, params):
    _, report, manifest, _ = real_frames
    assert set(manifest.label) == set(params.base.classes)
    assert not manifest.video_id.str.contains(UNCERTAIN).any()
    assert (manifest.width == "32").all()
    assert manifest.video_id.nunique() == report["totals"]["files_processed"]


def test_every_file_decodes(real_frames):
    summary, report, manifest, _ = real_frames
    assert report["skipped"] == []
    assert report["totals"]["files_processed"] == summary["files"]
    videos = [f for f in report["files"] if f["file"].startswith("pocus_videos/")]
    assert len(videos) == 112  # 113 upstream minus the uncertain one
    assert all(f["frames"] > 0 and f["frames_decoded"] > 0 for f in videos)
    assert manifest.groupby("video_id").size().max() <= 3


def test_patients_from_metadata(real_frames):
    _, _, manifest, _ = real_frames
    pid = manifest.groupby("video_id").patient_id.first()
    assert pid["Vir_liftl_H1N1_case2_clip1"] == pid["Vir_liftl_H1N1_case2_clip2"] == "5"
    p7 = manifest[manifest.patient_id == "7"]
    assert set(p7.label) == {"pneumonia", "regular"}
    assert {"Pneu_liftl_pneu_case3_clip3", "Reg_liftl_case3_clip2"} <= set(p7.video_id)
    # a video never spans two patients, and ids are clean strings (no "5.0")
    assert manifest.groupby("video_id").patient_id.nunique().max() == 1
    assert not manifest.patient_id.str.endswith(".0").any()
    assert set(manifest[manifest.video_id == "Vir_liftl_H1N1_case2_clip2"].probe) == {"linear"}


def test_licenses_carried(real_frames):
    _, _, manifest, _ = real_frames
    assert (manifest.license != "").all()
    lic = manifest.groupby("video_id").license.first()
    assert lic["Vir_liftl_H1N1_case2_clip1"] == "CC BY-NC -SA 4.0"


def test_frames_written_as_grey_pngs(real_frames):
    _, report, manifest, _ = real_frames
    out = Path(report["manifest"]).parent  # manifest paths are relative to the CSV's folder
    for row in manifest.sample(20, random_state=0).itertuples():
        img = cv2.imread(str(out / row.path), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape == (32, 32) and img.dtype == np.uint8
        assert 3 < img.mean() < 250
