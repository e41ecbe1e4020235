"""Control generators: the oracle's candidates are new phantom patients (and only on the
phantom); null_other's are real other-class frames of the fold's training patients."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from lusaug.data.ingest import import_folder
from lusaug.data.manifest import RAW_METADATA_NAME, frame_path
from lusaug.data.phantom import write_phantom
from lusaug.data.phantom.source import PhantomSourceError
from lusaug.generators.control_generators import oracle_candidates, relabel_candidates
from lusaug.generators.frame_io import read_splits

SIZE = 32


@pytest.fixture(scope="module")
def raw(tmp_path_factory, micro_params):
    out = tmp_path_factory.mktemp("controls") / "raw"
    write_phantom(out, micro_params)
    return out


def _pngs(folder):
    return sorted(folder.glob("*.png"))


def test_oracle_writes_the_asked_number_of_new_patients_frames(raw, micro_params, tmp_path):
    cands = tmp_path / "candidates"
    table = oracle_candidates(raw, micro_params, 7, stream=0, candidates_dir=cands)
    files = _pngs(cands)
    assert [p.name for p in files] == list(table["file"]) and len(files) == 7
    data_ids = set(pd.read_csv(raw / RAW_METADATA_NAME, dtype=str)["patient_id"])
    assert not set(table["patient_id"]) & data_ids  # disjoint ids
    assert set(table["label"]) == {micro_params.base.target_class}
    img = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (micro_params.base.image_size,) * 2
    # another fold draws other patients
    other = oracle_candidates(raw, micro_params, 7, stream=1, candidates_dir=tmp_path / "c1")
    assert not set(other["patient_id"]) & set(table["patient_id"])


def test_oracle_refuses_imported_data_and_writes_nothing(raw, micro_params, tmp_path):
    imported = tmp_path / "raw"
    import_folder(raw, imported, micro_params, dvc_commit=False)
    cands = tmp_path / "candidates"
    with pytest.raises(PhantomSourceError, match="not the phantom"):
        oracle_candidates(imported, micro_params, 4, stream=0, candidates_dir=cands)
    assert not cands.exists()


@pytest.fixture
def split(splits_csv):
    return read_splits(splits_csv)


def test_null_other_is_other_class_frames_of_training_patients_only(split, splits_csv, tmp_path):
    cands = tmp_path / "candidates"
    table = relabel_candidates(split, splits_csv, "viral", SIZE, 0, 3, cands)
    rare_train = split[(split["label"] == "viral") & (split["split"] == "train")]
    assert len(table) == len(rare_train)  # 0 = as many as the real rare-class training frames
    assert "viral" not in set(table["source_label"])
    train_patients = set(split.loc[split["split"] == "train", "patient_id"])
    held_out = set(split.loc[split["split"] != "train", "patient_id"])
    assert held_out and set(table["patient_id"]) <= train_patients
    assert not set(table["patient_id"]) & held_out
    # each candidate is exactly the pixels of the frame it names
    for png, src in zip(_pngs(cands), table["source_path"], strict=True):
        written = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        source = cv2.imread(str(frame_path(splits_csv, src)), cv2.IMREAD_GRAYSCALE)
        np.testing.assert_array_equal(written, source)


def test_null_other_count_and_seed(split, splits_csv, tmp_path):
    a = relabel_candidates(split, splits_csv, "viral", SIZE, 5, 1, tmp_path / "a")
    b = relabel_candidates(split, splits_csv, "viral", SIZE, 5, 1, tmp_path / "b")
    c = relabel_candidates(split, splits_csv, "viral", SIZE, 5, 2, tmp_path / "c")
    assert len(a) == 5 and a.equals(b)  # seeded, deterministic
    assert list(a["source_path"]) != list(c["source_path"])
    pool = ((split["split"] == "train") & (split["label"] != "viral")).sum()
    big = relabel_candidates(split, splits_csv, "viral", SIZE, pool + 3, 1, tmp_path / "d")
    assert len(big) == pool + 3  # beyond the pool: with replacement
