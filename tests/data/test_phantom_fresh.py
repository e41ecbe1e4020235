"""Fresh phantom patients: only on the phantom that wrote data/raw, never a patient of it, and
sampled exactly as the frames stage samples the data."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pandas as pd
import pytest

from lusaug.data.ingest import import_folder
from lusaug.data.manifest import RAW_METADATA_NAME
from lusaug.data.phantom import plan_phantom, write_phantom
from lusaug.data.phantom.fresh import (
    FreshPatientError,
    check_disjoint,
    fresh_patient,
    render_fresh_frames,
    render_patients,
)
from lusaug.data.phantom.source import (
    PhantomSourceError,
    planned_files,
    read_phantom_source,
)
from lusaug.stages import frames as frames_stage


def _with(params, **phantom):
    return dataclasses.replace(params, phantom=dataclasses.replace(params.phantom, **phantom))


@pytest.fixture(scope="module")
def raw(tmp_path_factory, micro_params):
    out = tmp_path_factory.mktemp("fresh") / "raw"
    write_phantom(out, micro_params)
    return out


@pytest.fixture(scope="module")
def data_frames(raw, micro_params):
    """The frames stage run on the written phantom (its manifest)."""
    root = raw.parent
    p = micro_params
    paths = frames_stage.FramesPaths(
        raw, root / "frames", root / "frames.csv", root / "ingest.json"
    )
    frames_stage.run(paths, p.base, p.import_, p.frames)
    return pd.read_csv(root / "frames.csv", dtype=str, keep_default_na=False)


def test_the_phantom_is_recognised_with_its_seed_and_patients(raw, micro_params):
    source = read_phantom_source(raw, micro_params)
    meta = pd.read_csv(raw / RAW_METADATA_NAME, dtype=str)
    assert source.seed == micro_params.phantom.seed
    assert source.patient_ids == set(meta["patient_id"])
    assert {pp.patient_id for pp in source.planned} == source.patient_ids
    # planned_files mirrors write_phantom's naming exactly
    assert sorted(f for pp in source.planned for f in planned_files(pp)) == sorted(meta["file"])


def test_imported_data_is_refused_even_with_phantom_pixels(raw, micro_params, tmp_path):
    dest = tmp_path / "raw"
    import_folder(raw, dest, micro_params, dvc_commit=False)  # the real `lusaug import`
    with pytest.raises(PhantomSourceError, match=r"metadata\.csv: column 'source'"):
        read_phantom_source(dest, micro_params)


def test_a_raw_folder_without_metadata_is_refused(tmp_path, micro_params):
    with pytest.raises(PhantomSourceError, match=r"metadata\.csv not found"):
        read_phantom_source(tmp_path, micro_params)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"seed": 8}, "phantom.seed is 8"),
        ({"difficulty": 0.3}, "phantom.difficulty is 0.3"),
        ({"height": 64}, "phantom.height is 64"),
    ],
)
def test_a_phantom_of_other_params_is_refused(raw, micro_params, change, key):
    with pytest.raises(PhantomSourceError, match=key):
        read_phantom_source(raw, _with(micro_params, **change))


def test_changed_patient_counts_or_clip_length_are_refused(raw, micro_params):
    more = dict(micro_params.phantom.patients, viral=micro_params.phantom.patients["viral"] + 1)
    with pytest.raises(PhantomSourceError, match="phantom.patients"):
        read_phantom_source(raw, _with(micro_params, patients=more))
    longer = micro_params.phantom.frames_per_clip + 2
    with pytest.raises(PhantomSourceError, match="frames_per_clip"):
        read_phantom_source(raw, _with(micro_params, frames_per_clip=longer))


def test_a_hand_edited_readme_is_refused(raw, micro_params, tmp_path):
    copy = tmp_path / "raw"
    shutil.copytree(raw, copy)
    (copy / "README.md").write_text("# my data\n")
    with pytest.raises(PhantomSourceError, match="README.md does not state"):
        read_phantom_source(copy, micro_params)


def test_fresh_patients_share_no_id_and_no_seed_with_any_phantom_of_that_seed(raw, micro_params):
    source = read_phantom_source(raw, micro_params)
    fresh = [
        fresh_patient(source.seed, micro_params, label, purpose, stream, i)
        for label in micro_params.base.classes
        for purpose in ("oracle", "test")
        for stream in range(3)
        for i in range(4)
    ]
    check_disjoint(source, fresh)
    assert not {p.patient_id for p in fresh} & source.patient_ids
    # ...whatever the patient counts: a phantom with 10x the patients of the same seed
    big = _with(micro_params, patients={c: 40 for c in micro_params.base.classes})
    keys = {pp.seed.spawn_key for pp in plan_phantom(big)}
    assert not keys & {p.seed.spawn_key for p in fresh}
    assert len({p.seed.spawn_key for p in fresh}) == len(fresh)  # and among themselves
    # a planned patient posing as fresh is caught
    with pytest.raises(FreshPatientError, match="patients of data/raw"):
        check_disjoint(source, [source.planned[0]])


def test_fresh_frames_are_new_and_made_like_the_datas(raw, micro_params, data_frames):
    """A data patient re-rendered through the same path gives the frames stage's exact frames;
    fresh patients' frames are none of the data's."""
    source = read_phantom_source(raw, micro_params)
    viral = next(pp for pp in source.planned if pp.label == "viral")
    again = render_patients([viral], micro_params)
    stage = data_frames[data_frames["patient_id"] == viral.patient_id]
    assert len(stage) > 0 and sorted(again.table["sha1"]) == sorted(stage["sha1"])
    assert again.images.shape[1:] == (micro_params.base.image_size,) * 2

    fresh = render_fresh_frames(source.seed, micro_params, "viral", "oracle", 0, 9)
    assert len(fresh.images) == 9 and len(fresh.table) == 9
    assert set(fresh.table["label"]) == {"viral"}
    assert not set(fresh.table["patient_id"]) & set(data_frames["patient_id"])
    assert not set(fresh.table["sha1"]) & set(data_frames["sha1"])
    # per clip, at most frames.max_per_video frames, as the data
    assert fresh.table.groupby("video_id").size().max() <= micro_params.frames.max_per_video


def test_more_fresh_images_keep_the_first_ones(raw, micro_params):
    seed = micro_params.phantom.seed
    few = render_fresh_frames(seed, micro_params, "viral", "oracle", 1, 3)
    many = render_fresh_frames(seed, micro_params, "viral", "oracle", 1, 7)
    np.testing.assert_array_equal(many.images[:3], few.images)
    other = render_fresh_frames(seed, micro_params, "viral", "oracle", 2, 3)
    assert not np.array_equal(other.images, few.images)  # another stream, other patients
    assert len(many.patients) >= 2 and many.patients[0].patient_id.startswith("fresh-oracle-s1")
