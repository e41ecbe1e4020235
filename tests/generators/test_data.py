"""Training-set builders: train split only unless leaky; 3mixed = one frame per patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lusaug.core.config import GeneratorSpec
from lusaug.generators.frame_io import (
    GeneratorDataError,
    build_training_set,
    check_validation,
    load_frames,
    read_splits,
)

CLASSES = ["regular", "covid", "pneumonia", "viral"]


def spec(kind="ddpm", train_set="all", leaky=False) -> GeneratorSpec:
    return GeneratorSpec(kind=kind, train_set=train_set, leaky=leaky, template="")


def test_all_uses_every_train_frame_of_the_class_only(splits_csv):
    splits = read_splits(splits_csv)
    ts = build_training_set(splits, spec(), "viral", CLASSES, 3, seed=0)
    expected = splits[(splits.label == "viral") & (splits.split == "train")]
    assert sorted(ts.frames["path"]) == sorted(expected["path"])
    assert ts.splits_used == ["train"] and not ts.leaky


def test_3mixed_takes_one_frame_from_each_of_n_distinct_train_patients(splits_csv):
    splits = read_splits(splits_csv)
    ts = build_training_set(splits, spec(train_set="3mixed"), "viral", CLASSES, 3, seed=1)
    assert len(ts.frames) == 3
    assert ts.frames["patient_id"].nunique() == 3
    assert set(ts.frames["split"]) == {"train"}
    assert set(ts.frames["label"]) == {"viral"}
    again = build_training_set(splits, spec(train_set="3mixed"), "viral", CLASSES, 3, seed=1)
    assert list(again.frames["path"]) == list(ts.frames["path"])  # seeded


def test_3mixed_with_too_few_patients_uses_all_and_says_so(splits_csv):
    splits = read_splits(splits_csv)
    n_train = splits[(splits.label == "viral") & (splits.split == "train")].patient_id.nunique()
    ts = build_training_set(splits, spec(train_set="3mixed"), "viral", CLASSES, n_train + 2, 0)
    assert ts.frames["patient_id"].nunique() == n_train
    assert any("only" in n and str(n_train) in n for n in ts.notes)


def test_leaky_adds_val_and_test_frames_and_is_marked(splits_csv):
    splits = read_splits(splits_csv)
    ts = build_training_set(splits, spec(leaky=True), "viral", CLASSES, 3, seed=0)
    assert ts.splits_used == ["test", "train", "val"]
    assert ts.leaky and any("LEAKY" in n for n in ts.notes)
    assert len(ts.frames) == (splits.label == "viral").sum()


def test_conditional_trains_on_every_class_of_the_train_split(splits_csv):
    splits = read_splits(splits_csv)
    ts = build_training_set(splits, spec(kind="ddpm_conditional"), "viral", CLASSES, 3, 0)
    assert set(ts.frames["label"]) == set(CLASSES)
    assert set(ts.frames["split"]) == {"train"}
    assert len(ts.frames) == (splits.split == "train").sum()


@settings(max_examples=40, deadline=None)
@given(
    splits=st.lists(st.sampled_from(["train", "val", "test"]), min_size=4, max_size=40),
    kind=st.sampled_from(["ddpm", "ddpm_conditional", "textual_inversion"]),
    train_set=st.sampled_from(["3mixed", "all"]),
    leaky=st.booleans(),
    n_mixed=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_builders_never_take_val_or_test_unless_leaky(
    splits, kind, train_set, leaky, n_mixed, seed
):
    rng = np.random.default_rng(seed)
    n = len(splits)
    df = pd.DataFrame(
        {
            "path": [f"frames/x/{i}.png" for i in range(n)],
            "label": rng.choice(CLASSES, n).tolist(),
            "patient_id": [f"p{rng.integers(6)}" for _ in range(n)],
            "split": splits,
        }
    )
    df.loc[0, ["label", "split"]] = ["viral", "train"]  # the class exists in the train split
    ts = build_training_set(df, spec(kind, train_set, leaky), "viral", CLASSES, n_mixed, seed)
    if not leaky:
        assert set(ts.frames["split"]) == {"train"}
    if kind != "ddpm_conditional":
        assert set(ts.frames["label"]) == {"viral"}
    if train_set == "3mixed":
        per_class = ts.frames.groupby("label")["patient_id"]
        assert (per_class.nunique() == per_class.size()).all()  # one frame per patient


def test_no_frame_of_the_class_is_a_clear_error(splits_csv):
    splits = read_splits(splits_csv)
    no_viral = splits[~((splits.label == "viral") & (splits.split == "train"))]
    with pytest.raises(GeneratorDataError, match="viral"):
        build_training_set(no_viral, spec(), "viral", CLASSES, 3, 0)


def test_failed_validation_stops_generators(tmp_path):
    bad = tmp_path / "validation.json"
    bad.write_text('{"success": false}')
    with pytest.raises(GeneratorDataError, match="failed validation"):
        check_validation(bad)
    with pytest.raises(GeneratorDataError, match="not found"):
        check_validation(tmp_path / "missing.json")
    good = tmp_path / "ok.json"
    good.write_text('{"success": true}')
    check_validation(good)


def test_load_frames_resizes(splits_csv):
    splits = read_splits(splits_csv)
    imgs = load_frames(splits.head(3), splits_csv, 16)
    assert imgs.shape == (3, 16, 16) and imgs.dtype == np.uint8
