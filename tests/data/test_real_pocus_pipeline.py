"""Real POCUS data (../shared/pocus via the pocus_dir fixture): import -> frames -> split -> validate.

The whole left half of the pipeline on the real folder, with the library functions the DVC stages
call. Skips with a reason when the folder is absent. Fewer frames per video than the default keep
it quick (every video is still decoded in full); the default params pass too (see the report).
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pandas as pd
import pytest

from lusaug.data.frames import extract_frames
from lusaug.data.ingest import import_folder
from lusaug.data.manifest import SPLITS, read_manifest, write_manifest
from lusaug.data.split import split_frames
from lusaug.validation import run_validation

pytestmark = [pytest.mark.slow, pytest.mark.pocus]

MAX_PER_VIDEO = 10
# The same image filed under two patient ids upstream (a genuine duplicate across patients).
DUPLICATE = ("Pneu_northumbria_0409_set4_img2", "Pneu_northumbria_0409_set6_img6")


@pytest.fixture(scope="module")
def real(pocus_dir, params, tmp_path_factory):
    out = tmp_path_factory.mktemp("pocus_pipeline")
    data, reports = out / "data", out / "reports"
    p = replace(
        params,
        base=replace(params.base, workers=2),
        frames=replace(params.frames, max_per_video=MAX_PER_VIDEO),
    )
    import_folder(pocus_dir, data / "raw", p, dvc_commit=False)
    ingest = extract_frames(
        data / "raw", data / "frames", data / "frames.csv", reports / "ingest.json", p
    )
    splits, summary = split_frames(read_manifest(data / "frames.csv"), data, p)
    write_manifest(splits, data / "splits.csv")
    metrics = out / "metrics" / "validation.json"
    report = run_validation(data / "splits.csv", reports / "validation", metrics, p)
    return SimpleNamespace(
        params=p,
        ingest=ingest,
        splits=read_manifest(data / "splits.csv"),
        summary=summary,
        report=report,
        metrics=json.loads(metrics.read_text()),
    )


def _split_of(splits: pd.DataFrame, video_ids) -> set[str]:
    rows = splits[splits["video_id"].isin(list(video_ids))]
    assert set(rows["video_id"]) == set(video_ids), "a video is missing from the manifest"
    return set(rows["split"])


def test_validation_passes(real):
    assert real.report.success, real.report.message()
    assert real.metrics["success"] is True and real.metrics["unsuccessful_expectations"] == 0
    assert real.metrics["n_frames"] == len(real.splits) == real.ingest["totals"]["frames"]
    assert real.report.offenders["near_identical_pairs"] == []


def test_patient_5_viral_clips_in_one_split(real):
    clips = ["Vir_liftl_H1N1_case2_clip1", "Vir_liftl_H1N1_case2_clip2"]
    assert set(real.splits.loc[real.splits["video_id"].isin(clips), "patient_id"]) == {"5"}
    assert len(_split_of(real.splits, clips)) == 1


def test_patient_7_pneumonia_and_regular_clips_in_one_split(real):
    p7 = real.splits[real.splits["patient_id"] == "7"]
    assert set(p7["label"]) == {"pneumonia", "regular"}
    assert any(v.startswith("Pneu_") for v in p7["video_id"])
    assert any(v.startswith("Reg_") for v in p7["video_id"])
    assert p7["split"].nunique() == 1


def test_duplicate_across_patients_is_linked_and_kept_together(real):
    assert len(_split_of(real.splits, DUPLICATE)) == 1
    pids = real.splits.groupby("video_id")["patient_id"].first()
    a, b = sorted(pids[list(DUPLICATE)])
    assert a != b  # two patient ids upstream: only the linking keeps them together
    linked = real.summary["linked_patients"]
    assert linked["hash_size"] == real.params.validate.phash_size
    group = next(g for g in linked["groups"] if a in g["patients"])
    assert b in group["patients"]
    link = next(e for e in group["links"] if e["patients"] == [a, b])
    assert [f.split("/")[-1].rsplit("_", 1)[0] for f in link["frames"]] == list(DUPLICATE)
    assert link["distance"] <= real.params.validate.phash_max_distance
    assert f"patients {a} and {b} were kept together" in link["reason"]


def test_every_class_in_every_split(real):
    present = real.splits.groupby("label")["split"].unique().map(set)
    for label in real.params.base.classes:
        assert present[label] == set(SPLITS), label
    # and patient-grouped: no patient (so no video) in two splits
    assert real.splits.groupby("patient_id")["split"].nunique().max() == 1


def test_blank_and_near_black_frames_dropped_and_reported(real):
    dropped = {
        (d["video_id"], d["reason"].split(":")[0]): d for d in real.ingest["dropped_frames"]
    }
    assert dropped[("Reg-Atlas-lungcurtain", "blank")]["frame_indices"] == [0]
    assert dropped[("Reg_northumbria_0409_set3_vid2", "near-black")]["frame_indices"] == [0]
    assert real.ingest["totals"]["frames_dropped"] == sum(d["count"] for d in dropped.values())
    kept = set(real.splits["path"])
    assert "frames/regular/Reg-Atlas-lungcurtain_00000.png" not in kept
    assert real.ingest["skipped"] == []  # the files themselves still give frames
