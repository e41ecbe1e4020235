"""Intra-clip positives: every pair is two frames of one clip; nothing crosses patients."""

from __future__ import annotations

import numpy as np
import pytest

from lusaug.features.frame_table import FeaturesError, check_training_only
from lusaug.features.pairs import ClipIndex, epoch_pairs
from tests.features.helpers import toy_fold


@pytest.fixture(scope="module")
def train_rows():
    train, _ = toy_fold()
    return train.rows


def test_every_positive_pair_is_intra_clip_and_intra_patient(train_rows):
    clips = train_rows["video_id"].to_numpy()
    patients = train_rows["patient_id"].to_numpy()
    index = ClipIndex.build(clips, patients)
    for epoch in range(3):
        for batch in epoch_pairs(index, batch_size=8, seed=0, epoch=epoch):
            a, b = batch[:, 0], batch[:, 1]
            assert (clips[a] == clips[b]).all()
            assert (patients[a] == patients[b]).all()
            # distinct clips per batch: no other frame of a positive's clip is a negative
            assert len(set(clips[a])) == len(batch)
            multi = np.array([(clips == c).sum() > 1 for c in clips[a]])
            assert (a[multi] != b[multi]).all(), "a multi-frame clip gives two different frames"


def test_pairs_depend_only_on_seed_and_epoch(train_rows):
    index = ClipIndex.build(train_rows["video_id"], train_rows["patient_id"])
    first = epoch_pairs(index, 8, seed=3, epoch=2)
    again = epoch_pairs(index, 8, seed=3, epoch=2)
    other = epoch_pairs(index, 8, seed=3, epoch=1)
    assert all((x == y).all() for x, y in zip(first, again, strict=True))
    assert not all((x == y).all() for x, y in zip(first, other, strict=True))


def test_batch_is_capped_by_the_number_of_clips(train_rows):
    index = ClipIndex.build(train_rows["video_id"], train_rows["patient_id"])
    batches = epoch_pairs(index, batch_size=10_000, seed=0, epoch=0)
    assert all(len(b) == len(index.clips) for b in batches)


def test_a_clip_filed_under_two_patients_is_refused(train_rows):
    rows = train_rows.copy()
    first_clip = rows["video_id"].iloc[0]
    rows.loc[rows.index[rows["video_id"] == first_clip][0], "patient_id"] = "someone-else"
    with pytest.raises(FeaturesError, match="patient"):
        ClipIndex.build(rows["video_id"], rows["patient_id"])
    with pytest.raises(FeaturesError, match="more than one patient"):
        check_training_only(rows)
