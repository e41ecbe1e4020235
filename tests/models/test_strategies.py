"""Strategies: the study's class weights, their variants, and clear errors for missing inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lusaug.core.config import CONDITIONAL_KIND, ConfigError, params_from_dict, parse_strategy
from lusaug.models.frame_sets import DataError, load_synthetic
from lusaug.models.strategies import (
    FoldInputs,
    SkipRun,
    StrategyError,
    Tuned,
    inverse_frequency_weights,
    normalise_weights,
    plan_for,
    read_tuned,
    sample_weights,
    synthetic_files,
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
    with pytest.raises(ConfigError, match="unknown strategy 'smote'"):
        parse_strategy("smote")


def test_tuned_weights_missing_file_says_run_tune(tmp_path):
    with pytest.raises(StrategyError, match=r"tuned file .*tune.*dvc repro"):
        read_tuned(tmp_path / "params" / "tuned" / "fold-0.yaml", "class_weights_tuned", CLASSES)


def test_tuned_section_is_read_per_strategy(tmp_path):
    path = tmp_path / "fold-0.yaml"
    path.write_text(
        "class_weights_tuned:\n"
        "  architecture: resnet\n"
        "  class_weights: {regular: 1.0, covid: 2.0, pneumonia: 1.5, viral: 9.0}\n"
        "  lr: 0.0005\n"
        "synthetic_tuned-g1:\n"
        "  architecture: resnet\n"
        "  class_weights: {regular: 1.0, covid: 1.0, pneumonia: 1.0, viral: 3.0}\n"
        "  filter: {min_std: 30, min_entropy: 4.7, kept: [cand_00001.png]}\n"
    )
    tuned = read_tuned(path, "class_weights_tuned", CLASSES)
    plan = plan_for(parse_strategy("class_weights_tuned"), np.array([5, 5, 5, 1]), CLASSES, tuned)
    assert plan.loss_weights == [1.0, 2.0, 1.5, 9.0] and plan.lr == 0.0005
    assert tuned.architecture == "resnet" and tuned.kept is None
    synth = read_tuned(path, "synthetic_tuned-g1", CLASSES)
    assert synth.kept == ["cand_00001.png"] and synth.lr is None
    with pytest.raises(StrategyError, match=r"no section 'synthetic_tuned-g2'"):
        read_tuned(path, "synthetic_tuned-g2", CLASSES)
    path.write_text("class_weights_tuned: {class_weights: {regular: 1.0}}\n")
    with pytest.raises(StrategyError, match="every class"):
        read_tuned(path, "class_weights_tuned", CLASSES)


def test_only_tuned_strategies_take_tuned_values():
    tuned = Tuned({"regular": 1.0, "covid": 2.0, "pneumonia": 1.5, "viral": 9.0}, 0.001, "resnet")
    counts = np.array([5, 5, 5, 1])
    assert plan_for(parse_strategy("synthetic_tuned-g1"), counts, CLASSES, tuned).loss_weights
    assert plan_for(parse_strategy("synthetic-g1"), counts, CLASSES, tuned).loss_weights is None
    with pytest.raises(StrategyError, match="needs its tuned values"):
        plan_for(parse_strategy("class_weights_tuned"), counts, CLASSES)


def test_synthetic_folder_missing_or_empty_is_explained(tmp_path):
    inputs = FoldInputs(synthetic_dir=tmp_path)
    strategy = parse_strategy("synthetic-ddpm_all")
    with pytest.raises(DataError, match=r"ddpm_all.*no .*kept.*dvc repro"):
        synthetic_files(inputs, strategy)
    (tmp_path / "ddpm_all" / "kept").mkdir(parents=True)
    with pytest.raises(SkipRun, match="no synthetic image passed the filter"):  # skipped, with why
        synthetic_files(inputs, strategy)


def test_synthetic_stand_in_folder_is_loaded_and_subsampled(tmp_path):
    write_toy_synthetic(tmp_path / "g1" / "kept", 7, size=40)
    files = synthetic_files(FoldInputs(synthetic_dir=tmp_path), parse_strategy("synthetic-g1"))
    all_ = load_synthetic(files, 3, "viral", 32, count=0, seed=0, source="g1")
    assert all_.images.shape == (7, 1, 32, 32) and (all_.labels == 3).all()
    assert set(all_.frames["patient_id"]) == {"synthetic-g1"}
    a = load_synthetic(files, 3, "viral", 32, count=4, seed=0, source="g1")
    b = load_synthetic(files, 3, "viral", 32, count=4, seed=0, source="g1")
    assert len(a) == 4 and a.frames["path"].tolist() == b.frames["path"].tolist()


def test_config_rejects_unknown_or_unwired_strategies(params_dict):
    gen = params_dict["generate"]

    def with_strategies(names, enabled=None):
        """``names`` alone (no train.overrides), the primary their last vs their first."""
        train = dict(params_dict["train"], strategies=names, overrides=[])
        primary = dict(params_dict["evaluate"]["primary"], strategy=names[-1], control=names[0])
        primary["architecture"] = next(iter(train["architectures"]))
        return dict(
            params_dict,
            train=train,
            evaluate=dict(params_dict["evaluate"], primary=primary),
            generate=dict(gen, enabled=enabled or gen["enabled"]),
        )

    with pytest.raises(ConfigError, match="unknown strategy 'smote'"):
        params_from_dict(with_strategies(["baseline", "smote"]))
    with pytest.raises(ConfigError, match="needs generator 'ti_nowhere' in generate.enabled"):
        params_from_dict(with_strategies(["baseline", "synthetic-ti_nowhere"]))
    with pytest.raises(ConfigError, match="evaluate.baseline 'baseline' is not in"):
        params_from_dict(with_strategies(["class_weights"]))
    uncond = next(g for g, s in gen["generators"].items() if s["kind"] == "ddpm")
    cond = next(g for g, s in gen["generators"].items() if s["kind"] == CONDITIONAL_KIND)
    with pytest.raises(ConfigError, match="needs a class-conditional generator"):
        params_from_dict(with_strategies(["baseline", f"synthetic_only-{uncond}"], [uncond, cond]))
    both = with_strategies(["baseline", f"synthetic_only-{cond}"], [uncond, cond])
    assert params_from_dict(both).train.strategies[1] == f"synthetic_only-{cond}"
    bad = dict(params_dict, train=dict(params_dict["train"], precision="half"))
    with pytest.raises(ConfigError, match="precision"):
        params_from_dict(bad)


def test_every_generator_strategy_names_its_generator():
    for name, kind in [("synthetic-g", "synthetic"), ("synthetic_replace-g", "replace"),
                       ("synthetic_tuned-g", "synthetic_tuned"), ("synthetic_only-g", "only")]:  # fmt: skip
        s = parse_strategy(name)
        assert (s.kind, s.generator, s.name) == (kind, "g", name)
    assert (
        parse_strategy("synthetic_tuned-g").tuned and parse_strategy("class_weights_tuned").tuned
    )
    assert not parse_strategy("synthetic-g").tuned
    assert dataclasses.asdict(parse_strategy("oversample"))["kind"] == "plain"
