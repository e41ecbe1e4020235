"""The typed config: params.yaml loads strictly, profiles switch cleanly, dvc.yaml is consistent."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import shutil
from pathlib import Path

import pytest
import yaml

from lusaug.core.config import (
    PROJ_ROOT,
    ConfigError,
    as_flat_dict,
    deep_merge,
    load_params,
    params_from_dict,
)
from lusaug.core.profiles import apply_profile, available_profiles


def test_committed_params_load(params):
    assert params.base.target_class in params.base.classes
    assert params.import_.prefixes["pneu"] == "pneumonia"


def test_unknown_key_is_rejected(params_dict):
    bad = deep_merge(params_dict, {"frames": {"max_per_vidoe": 3}})
    with pytest.raises(ConfigError, match="max_per_vidoe"):
        params_from_dict(bad)


def test_missing_key_is_rejected(params_dict):
    bad = deep_merge(params_dict, {})
    bad["split"] = {k: v for k, v in bad["split"].items() if k != "max_folds"}
    with pytest.raises(ConfigError, match=r"params.split: missing key\(s\) \['max_folds'\]"):
        params_from_dict(bad)


def test_removed_split_key_is_rejected(params_dict):
    """split.kfold / split.fold are gone (split.scheme, split.folds): an old params.yaml fails."""
    bad = deep_merge(params_dict, {"split": {"kfold": 5}})
    with pytest.raises(ConfigError, match=r"params.split: unknown key\(s\) \['kfold'\]"):
        params_from_dict(bad)


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"scheme": "kfold"}, "split.scheme must be cv or holdout, got 'kfold'"),
        ({"folds": [1, 2]}, r"split.folds must be \[0, 1, ..., k-1\], got \[1, 2\]"),
        (
            {"scheme": "holdout"},
            r"split.folds must be \[0\] with split.scheme holdout .*got \[0, 1",
        ),
        ({"folds": [0]}, r"split.folds must list 2 or more folds with cv, got \[0\]"),
        ({"max_folds": 1}, "split.max_folds must be >= 2 with cv, got 1"),
        ({"val_fraction": 1.0}, r"split.val_fraction must be in \(0, 1\), got 1.0"),
        ({"items": [0, 1]}, r"split.items must be split.folds \+ \[final\]: \[0, 1, final\]"),
        ({"folds": [0, 1, 2]}, r"split.items .*: \[0, 1, 2, final\], got \[0, 1, final\]"),
    ],
)
def test_split_section_is_checked(params_dict, split, message):
    with pytest.raises(ConfigError, match=message):
        params_from_dict(deep_merge(params_dict, {"split": split}))


@pytest.mark.parametrize("section", ["base_model", "generate.ddpm"])
def test_unet_widths_must_fit_the_groupnorm_groups(params_dict, section):
    """Refused when params.yaml loads, not by torch minutes into a run (32 groups, width 8)."""
    keys = section.split(".")
    change: dict = {"block_out_channels": [8, 16], "norm_num_groups": 32}
    for key in reversed(keys):
        change = {key: change}
    with pytest.raises(
        ConfigError, match=rf"{section}.norm_num_groups 32 must divide .*\[8, 16\]"
    ):
        params_from_dict(deep_merge(params_dict, change))


def test_micro_on_top_of_pocus_loads(tmp_path):
    """The shrunk real-data test puts micro's sizes over pocus: the result must be a valid config."""
    params = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", params)
    apply_profile("pocus", params)
    apply_profile("micro", params)
    loaded = load_params(params)
    assert loaded.base_model.block_out_channels == [8, 16]
    assert loaded.base_model.norm_num_groups == 8


def test_unknown_top_level_section_is_rejected(params_dict):
    """A misspelt section is an error, not a section nobody reads."""
    bad = {**params_dict, "trian": {"epochs": 3}}
    with pytest.raises(
        ConfigError, match=r"params: unknown key\(s\) \['trian'\]; known: .*'train'"
    ):
        params_from_dict(bad)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"epochs": 0}}, "train.epochs: must be >= 1, got 0"),
        ({"train": {"batch_size": -2}}, "train.batch_size: must be >= 1, got -2"),
        ({"train": {"eval_batch_size": 0}}, "train.eval_batch_size: must be >= 1, got 0"),
        ({"train": {"precision": "fp8"}}, "train.precision: must be one of .*, got 'fp8'"),
        (
            {"train": {"strategies": ["baseline", "magic"]}},
            "train.strategies: unknown strategy 'magic'",
        ),
        ({"evaluate": {"ci": 1.5}}, r"evaluate.ci: must be in \(0, 1\), got 1.5"),
        ({"evaluate": {"bootstrap": 0}}, "evaluate.bootstrap: must be >= 1, got 0"),
        ({"evaluate": {"target_effect": 0}}, "evaluate.target_effect: must be > 0, got 0"),
        ({"evaluate": {"mc_draws": 0}}, "evaluate.mc_draws: must be >= 1, got 0"),
        (
            {"generate": {"sampling": {"sampler": "euler"}}},
            "generate.sampling.sampler .*got 'euler'",
        ),
        ({"base_model": {"caption_dropout": 1.0}}, r"base_model.caption_dropout .*got 1.0"),
        ({"base": {"image_size": "big"}}, "params.base.image_size: expected int, got 'big'"),
        (
            {"generate": {"enabled": ["ddpm_al"]}},
            r"generate.enabled names unknown .*\['ddpm_al'\]",
        ),
    ],
)
def test_a_config_error_names_the_key_and_the_value_in_one_line(params_dict, change, message):
    with pytest.raises(ConfigError, match=message) as err:
        params_from_dict(deep_merge(params_dict, change))
    assert "\n" not in str(err.value)


def test_broken_yaml_is_one_line_naming_the_file_and_line(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("base:\n  seed: 1\n image_size: [64\n")
    with pytest.raises(ConfigError, match=r"params.yaml is not valid YAML at line \d+") as err:
        load_params(params_file)
    assert "\n" not in str(err.value)


def test_wrong_type_is_rejected(params_dict):
    bad = deep_merge(params_dict, {"base": {"image_size": "big"}})
    with pytest.raises(ConfigError, match="image_size"):
        params_from_dict(bad)


def test_flat_dict_has_dotted_keys(params):
    flat = as_flat_dict(params)
    assert flat["base.image_size"] == params.base.image_size
    assert flat["import.prefixes.Vir"] == "viral"


@pytest.mark.parametrize("name", [p for p in available_profiles() if p != "default"])
def test_profile_round_trip_restores_defaults(tmp_path, name):
    """Applying any profile then `default` gives back the committed params.yaml values."""
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", params_file)
    original = yaml.safe_load(params_file.read_text())
    changed = apply_profile(name, params_file)
    assert changed["base"]["profile"] == name
    load_params(params_file)
    restored = apply_profile("default", params_file)
    assert restored == original
    assert "# lusaug parameters" in params_file.read_text()  # comments survive


def test_default_profile_is_a_no_op(tmp_path):
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", params_file)
    before = yaml.safe_load(params_file.read_text())
    assert apply_profile("default", params_file) == before


def test_unknown_profile_names_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="available"):
        apply_profile("nope", tmp_path / "params.yaml")


def _stages():
    """Stage name -> definition, with foreach stages' ``do`` body flattened in."""
    with (PROJ_ROOT / "dvc.yaml").open() as fh:
        stages = yaml.safe_load(fh)["stages"]
    return {name: {**stage, **stage.get("do", {})} for name, stage in stages.items()}


def test_dvc_stage_scripts_and_params_exist(params_dict):
    """Every stage runs an existing pipelines/<stage>.py and reads params that exist."""
    flat = as_flat_dict(params_dict)
    sections = set(params_dict)
    for name, stage in _stages().items():
        script = stage["cmd"].split()[1]
        assert (PROJ_ROOT / script).exists() or "${" in script, f"{name}: {script} missing"
        for key in stage.get("params", []):
            key = key if isinstance(key, str) else next(iter(key))
            if "${" in key:
                continue
            assert key in sections or key in flat or any(k.startswith(key + ".") for k in flat), (
                f"stage {name} reads unknown param {key}"
            )


def test_a_stage_has_one_name_at_every_level():
    """A newcomer finds a stage's code from its name: dvc.yaml stage <s> -> pipelines/<s>.py ->
    lusaug.stages.<s> (its ``run`` and frozen ``<S>Paths``), and every stage module is a stage."""
    stages = _stages()
    modules = {p.stem for p in (PROJ_ROOT / "src/lusaug/stages").glob("*.py")} - {"__init__"}
    assert modules == set(stages), "src/lusaug/stages/ holds one module per dvc.yaml stage"
    for name, stage in stages.items():
        script = Path(stage["cmd"].split()[1])
        assert (script.parent.name, script.stem) == ("pipelines", name), (name, script)
        calls = re.search(
            rf"^from lusaug\.stages import {name}\b",
            (PROJ_ROOT / script).read_text(),
            re.MULTILINE,
        )
        assert calls, f"{script} does not call lusaug.stages.{name}"
        module = importlib.import_module(f"lusaug.stages.{name}")
        paths = getattr(module, "".join(w.title() for w in name.split("_")) + "Paths", None)
        assert paths is not None and dataclasses.is_dataclass(paths), name
        assert paths.__dataclass_params__.frozen, f"{paths.__name__} is not frozen"
        first = next(iter(inspect.signature(module.run).parameters.values()))
        assert first.name == "paths" and first.annotation in (paths, paths.__name__), name
