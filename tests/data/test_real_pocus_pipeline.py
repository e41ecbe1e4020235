"""Real POCUS data (../shared/pocus via the pocus_dir fixture): import -> frames -> split -> validate.

The whole left half of the pipeline on the real folder, with the library functions the DVC stages
call. Skips with a reason when the folder is absent. Fewer frames per video than the default keep
it quick (every video is still decoded in full); the default params pass too (see the report).
"""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest

from lusaug.data.ingest import import_folder
from lusaug.data.manifest import SPLITS, read_manifest
from lusaug.data.split import fold_file
from lusaug.stages import split, validate
from lusaug.stages.frames import FramesPaths
from lusaug.stages.frames import run as run_frames

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
        split=replace(
            params.split, folds=[0, 1, 2, 3], items=[0, 1, 2, 3, "final"], max_folds=5
        ),  # as the pocus profile
    )
    import_folder(pocus_dir, data / "raw", p, dvc_commit=False)
    ingest = run_frames(
        FramesPaths(data / "raw", data / "frames", data / "frames.csv", reports / "ingest.json"),
        p.base,
        p.import_,
        p.frames,
    )
    split_paths = split.SplitPaths(data / "frames.csv", data / "splits", reports / "split.json")
    summary = split.run(split_paths, p.base, p.split, p.validate)
    metrics = out / "metrics" / "validation.json"
    paths = validate.ValidatePaths(
        data / "splits", reports / "validation", metrics, reports / "split.json"
    )
    report = validate.run(paths, p.base, p.validate, p.frames, folds=p.split.folds)
    return SimpleNamespace(
        params=p,
        ingest=ingest,
        folds={k: read_manifest(data / "splits" / fold_file(k)) for k in p.split.folds},
        summary=summary,
        report=report,
        metrics=json.loads(metrics.read_text()),
    )


def _roles(real, video_ids) -> list[set[str]]:
    """The roles the videos get in each fold (one role per fold when kept together)."""
    out = []
    for fold in real.folds.values():
        rows = fold[fold["video_id"].isin(list(video_ids))]
        assert set(rows["video_id"]) == set(video_ids), "a video is missing from the manifest"
        out.append(set(rows["split"]))
    return out


def test_validation_passes_on_every_fold(real):
    assert real.report.success, real.report.message()
    assert real.metrics["success"] is True and real.metrics["unsuccessful_expectations"] == 0
    assert real.metrics["n_frames"] == real.ingest["totals"]["frames"]
    assert real.metrics["n_folds"] == len(real.folds) == 4  # 4 viral patients: 5, 99, 114, 115
    for off in real.report.offenders["folds"].values():
        assert off["near_identical_pairs"] == []


def test_every_viral_patient_is_tested_exactly_once(real):
    tested = {}
    for k, fold in real.folds.items():
        viral = fold[(fold["label"] == "viral") & (fold["split"] == "test")]
        tested[k] = sorted(set(viral["patient_id"]))
    assert sorted(p for ps in tested.values() for p in ps) == ["114", "115", "5", "99"]
    assert all(len(ps) == 1 for ps in tested.values()), tested


def test_patient_5_viral_clips_in_one_split(real):
    clips = ["Vir_liftl_H1N1_case2_clip1", "Vir_liftl_H1N1_case2_clip2"]
    fold0 = real.folds[0]
    assert set(fold0.loc[fold0["video_id"].isin(clips), "patient_id"]) == {"5"}
    assert all(len(r) == 1 for r in _roles(real, clips))


def test_patient_7_pneumonia_and_regular_clips_in_one_split(real):
    for fold in real.folds.values():
        p7 = fold[fold["patient_id"] == "7"]
        assert set(p7["label"]) == {"pneumonia", "regular"}
        assert any(v.startswith("Pneu_") for v in p7["video_id"])
        assert any(v.startswith("Reg_") for v in p7["video_id"])
        assert p7["split"].nunique() == 1


def test_duplicate_across_patients_is_linked_and_kept_together(real):
    assert all(len(r) == 1 for r in _roles(real, DUPLICATE))
    pids = real.folds[0].groupby("video_id")["patient_id"].first()
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


def test_every_class_in_every_split_of_every_fold(real):
    for k, fold in real.folds.items():
        present = fold.groupby("label")["split"].unique().map(set)
        missing_val = set(real.summary["folds"][str(k)]["val_missing"])
        for label in real.params.base.classes:
            expected = set(SPLITS) - ({"val"} if label in missing_val else set())
            assert present[label] == expected, (k, label)
        # and patient-grouped: no patient (so no video) in two splits
        assert fold.groupby("patient_id")["split"].nunique().max() == 1


def test_blank_and_near_black_frames_dropped_and_reported(real):
    dropped = {
        (d["video_id"], d["reason"].split(":")[0]): d for d in real.ingest["dropped_frames"]
    }
    assert dropped[("Reg-Atlas-lungcurtain", "blank")]["frame_indices"] == [0]
    assert dropped[("Reg_northumbria_0409_set3_vid2", "near-black")]["frame_indices"] == [0]
    assert real.ingest["totals"]["frames_dropped"] == sum(d["count"] for d in dropped.values())
    kept = set(real.folds[0]["path"])
    assert "../frames/regular/Reg-Atlas-lungcurtain_00000.png" not in kept
    assert real.ingest["skipped"] == []  # the files themselves still give frames
