"""Strategies: the study's class weights, their variants, and clear errors for missing inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lusaug.config import ConfigError, params_from_dict
from lusaug.models.data import DataError, load_synthetic, synthetic_files
from lusaug.models.strategies import (
    StrategyError,
    inverse_frequency_weights,
    normalise_weights,
    parse_strategy,
    plan_for,
    read_tuned,
    sample_weights,
)
from tests.helpers.toy import write_toy_synthetic

CLASSES = ["regular", "covid", "pneumonia", "viral"]


def test_class_weights_reproduce_the_study():
    """814/571/468/27 training frames (N = 1880) -> 2.31/3.29/4.02/69.63, w_i = N / N_i."""
    w = inverse_frequency_weights([814, 571, 468, 27], CLASSES)
    assert np.round(w, 2).tolist() == [2.31, 3.29, 4.02, 69.63]
    assert np.isclose(w[3], 1880 / 27)


def test_normalised_weights_keep_ratios_and_mean_one():
    w = inverse_frequency_weights([814, 571, 468, 27], CLASSES)
    n = normalise_weights(w)
    assert np.isclose(n.mean(), 1.0) and np.allclose(n / n[0], w / w[0])
    plan = plan_for(parse_strategy("class_weights_norm"), np.array([814, 571, 468, 27]), CLASSES)
    assert np.allclose(plan.loss_weights, n) and not plan.oversample


def test_oversample_weights_balance_classes():
    labels = np.array([0] * 90 + [1] * 10)
    w = sample_weights(labels, 2)
    assert np.isclose(w[labels == 0].sum(), w[labels == 1].sum())
    assert plan_for(parse_strategy("oversample"), np.array([90, 10]), ["a", "b"]).oversample


def test_a_class_without_frames_is_named():
    with pytest.raises(StrategyError, match="viral"):
        inverse_frequency_weights([10, 10, 10, 0], CLASSES)


def test_strategy_names():
    assert parse_strategy("synthetic:ddpm_3mixed").name == "synthetic-ddpm_3mixed"
    s = parse_strategy("synthetic-ti_style")
    assert (s.kind, s.generator) == ("synthetic", "ti_style")
    with pytest.raises(StrategyError, match="unknown strategy 'smote'"):
        parse_strategy("smote")


def test_tuned_weights_missing_file_says_run_tune(tmp_path):
    with pytest.raises(StrategyError, match=r"tune.*dvc repro tune"):
        plan_for(
            parse_strategy("class_weights_tuned"),
            np.array([5, 5, 5, 1]),
            CLASSES,
            tuned_path=tmp_path / "params" / "tuned.yaml",
        )


def test_tuned_weights_file_is_read(tmp_path):
    path = tmp_path / "tuned.yaml"
    path.write_text(
        "class_weights: {regular: 1.0, covid: 2.0, pneumonia: 1.5, viral: 9.0}\n"
        "lr: 0.0005\nfilter: {min_std: 30}\n"
    )
    plan = plan_for(
        parse_strategy("class_weights_tuned"), np.array([5, 5, 5, 1]), CLASSES, tuned_path=path
    )
    assert plan.loss_weights == [1.0, 2.0, 1.5, 9.0] and plan.lr == 0.0005
    path.write_text("class_weights: {regular: 1.0}\n")
    with pytest.raises(StrategyError, match="lacks classes"):
        read_tuned(path, CLASSES)


def test_explicit_weights_override_any_strategy():
    w = {"regular": 1.0, "covid": 2.0, "pneumonia": 1.5, "viral": 9.0}
    counts = np.array([5, 5, 5, 1])
    for name in ("class_weights_tuned", "synthetic-ddpm_all", "baseline"):
        plan = plan_for(parse_strategy(name), counts, CLASSES, tuned_weights=w)
        assert plan.loss_weights == [1.0, 2.0, 1.5, 9.0], name
    with pytest.raises(StrategyError, match="lack classes"):
        plan_for(parse_strategy("baseline"), counts, CLASSES, tuned_weights={"regular": 1.0})


def test_synthetic_folder_missing_or_empty_is_explained(tmp_path):
    with pytest.raises(DataError, match=r"ddpm_all.*not found.*dvc repro filter@ddpm_all"):
        synthetic_files(tmp_path, "ddpm_all")
    (tmp_path / "ddpm_all" / "kept").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no PNG images"):
        synthetic_files(tmp_path, "ddpm_all")


def test_synthetic_stand_in_folder_is_loaded_and_subsampled(tmp_path):
    write_toy_synthetic(tmp_path / "g1" / "kept", 7, size=40)
    all_ = load_synthetic(tmp_path, "g1", 3, "viral", 32, count=0, seed=0)
    assert all_.images.shape == (7, 1, 32, 32) and (all_.labels == 3).all()
    a = load_synthetic(tmp_path, "g1", 3, "viral", 32, count=4, seed=0)
    b = load_synthetic(tmp_path, "g1", 3, "viral", 32, count=4, seed=0)
    assert len(a) == 4 and a.frames["path"].tolist() == b.frames["path"].tolist()


def test_config_rejects_misplaced_strategies(params_dict):
    bad = dict(params_dict, train=dict(params_dict["train"], strategies=["synthetic-ddpm_all"]))
    with pytest.raises(ConfigError, match="train.generators"):
        params_from_dict(bad)
    bad = dict(params_dict, train=dict(params_dict["train"], strategies=["class_weights_tuned"]))
    with pytest.raises(ConfigError, match="tuned_strategies"):
        params_from_dict(bad)
    bad = dict(params_dict, train=dict(params_dict["train"], precision="half"))
    with pytest.raises(ConfigError, match="precision"):
        params_from_dict(bad)


def test_default_matrix_has_three_seeds_and_no_pending_inputs(params):
    """The default profile trains only what exists: no tune file, no synthetic sets yet."""
    assert len(params.train.seeds) >= 3
    assert "class_weights_tuned" not in params.train.strategies
    assert all(not s.startswith("synthetic") for s in params.train.strategies)
    assert dataclasses.asdict(params.evaluate)["ci"] == 0.95
