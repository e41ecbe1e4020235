"""Tuning on tiny data with the real training function: the tuned file is a pure function of its
inputs (same bytes on a re-run, from a fresh storage, after an interruption), the fingerprint,
trials nested in MLflow, filter thresholds tuned and applied, two workers on one study."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from lusaug.core.config import params_from_dict, parse_strategy
from lusaug.generators.filters import FilterThresholds, kept_files
from lusaug.models.run_setup import FoldData
from lusaug.models.strategies import FoldInputs, read_tuned
from lusaug.stages.tune import TunePaths, objective_settings, study_for
from lusaug.stages.tune import run as tune_fold
from lusaug.tuning.objective import Objective
from lusaug.tuning.optuna_study import FINISHED, fingerprint, make_storage, optimise
from tests.export.helpers import make_splits
from tests.helpers.matrix import set_strategies

TUNED = "class_weights_tuned"


def _params_dict(micro_params_dict: dict, storage: str, strategies=(TUNED,), **tune_over) -> dict:
    d = copy.deepcopy(micro_params_dict)
    d["train"]["architectures"] = {"resnet": {"model": "test_resnet", "kwargs": {}}}  # tiny & fast
    d["train"].update(epochs=2, patience=0, log_model=False, threads=1)
    set_strategies(d, ["baseline", *strategies])
    d["generate"]["enabled"] = (
        ["g1"] if any("g1" in s for s in strategies) else d["generate"]["enabled"]
    )
    if "g1" in d["generate"]["enabled"]:
        d["generate"]["generators"]["g1"] = {
            "kind": "ddpm",
            "train_set": "all",
            "leaky": False,
            "template": "",
        }
    over = {
        "storage": storage,
        "architecture": "resnet",
        "epochs": 0,
        "n_trials": 3,
        "n_startup_trials": 1,
        "pruner_startup_trials": 1,
        "pruner_warmup_epochs": 0,
    }
    d["tune"].update({**over, **tune_over})
    return d


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    make_splits(tmp_path, {"train": 8, "val": 4, "test": 1})
    return tmp_path


def _paths(workdir, name="fold-0.yaml", synthetic=False) -> TunePaths:
    return TunePaths(
        workdir / "data" / "splits.csv",
        workdir / "params" / "tuned" / name,
        workdir / "plots" / "tune",
        workdir / "data" / "synthetic" if synthetic else None,
        workdir / "metrics" if synthetic else None,
    )


def _tune(params, workdir, name="fold-0.yaml", tracking=True, synthetic=False) -> dict:
    return tune_fold(
        _paths(workdir, name, synthetic),
        params.base,
        params.train,
        params.tune,
        fold=0,
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}" if tracking else None,
        root=workdir,
    )


def _trial_runs(parent_id: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name("lusaug-tuning")
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def test_tune_twice_on_the_same_inputs_writes_the_same_bytes(workdir, micro_params_dict):
    params = params_from_dict(_params_dict(micro_params_dict, "journal:optuna.journal"))
    out = _tune(params, workdir)
    path = workdir / "params" / "tuned" / "fold-0.yaml"
    first = path.read_bytes()
    entry = out[TUNED]
    assert entry["study"]["finished_trials"] == 3 and entry["architecture"] == "resnet"
    tuned = read_tuned(path, TUNED, params.base.classes)  # what class_weights_tuned reads
    assert all(w > 0 for w in tuned.class_weights.values()) and tuned.lr == entry["lr"]
    assert (workdir / "plots" / "tune" / TUNED / "optimization_history.png").stat().st_size > 0
    # a re-run on the same inputs adds no trial and writes the same bytes
    _tune(params, workdir)
    assert path.read_bytes() == first
    study = optuna.load_study(
        study_name=entry["study"]["name"], storage=make_storage("journal:optuna.journal")
    )
    assert len(study.trials) == 3
    _assert_best_trial_recorded(study, entry, tuned, params.base.classes)
    parent = study.user_attrs["mlflow_parent_run_id"]
    runs = _trial_runs(parent)
    assert sorted(r.data.tags["optuna.trial"] for r in runs) == ["0", "1", "2"]
    assert all("val_macro_f1" in r.data.metrics for r in runs)  # per-epoch reports as steps
    assert {r.data.tags["fold"] for r in runs} == {"0"}
    # nothing that changes the result lives only in the storage: a fresh one gives the same file
    (workdir / "optuna.journal").unlink()
    _tune(params, workdir, tracking=False)
    assert path.read_bytes() == first


def test_an_interrupted_study_resumes_to_the_uninterrupted_result(workdir, micro_params_dict):
    """Stop after one trial (as a killed process would), resume in a new process-like
    setting: the per-trial seeded sampler suggests what an uninterrupted study would."""
    params = params_from_dict(_params_dict(micro_params_dict, "journal:whole.journal"))
    whole = _tune(params, workdir, "whole.yaml", tracking=False)
    cut = params_from_dict(_params_dict(micro_params_dict, "journal:cut.journal"))
    strategy = parse_strategy(TUNED)
    splits = workdir / "data" / "splits.csv"
    study = study_for(strategy, _paths(workdir), 0, cut.base, cut.train, cut.tune, workdir)
    data = FoldData.load(splits, cut.base)
    optimise(study, Objective(strategy, data, cut.train, cut.base, cut.tune, FoldInputs()), 1)
    assert len(study.get_trials(states=FINISHED)) == 1
    resumed = _tune(cut, workdir, "cut.yaml", tracking=False)
    assert resumed[TUNED]["class_weights"] == whole[TUNED]["class_weights"]
    assert resumed[TUNED]["lr"] == whole[TUNED]["lr"]
    a = yaml.safe_load((workdir / "params/tuned/whole.yaml").read_text())[TUNED]
    b = yaml.safe_load((workdir / "params/tuned/cut.yaml").read_text())[TUNED]
    assert {k: v for k, v in a.items() if k != "study"} == {
        k: v for k, v in b.items() if k != "study"
    }


def test_study_fingerprint_follows_the_objective_not_the_run_settings(workdir, micro_params_dict):
    """Trial counts, workers, storage and the train matrix leave the study as it is; the split,
    the training settings, the search space, the fold and the strategy start a new one."""
    d = _params_dict(micro_params_dict, "journal:optuna.journal")
    splits = workdir / "data" / "splits.csv"
    strategy = parse_strategy(TUNED)

    def digest(dd: dict, fold: int = 0) -> str:
        p = params_from_dict(dd)
        return fingerprint(objective_settings(strategy, fold, p.train, p.base, p.tune), [splits])

    base = digest(d)

    def changed(section: str, key: str, value) -> str:
        other = copy.deepcopy(d)
        other[section][key] = value
        return digest(other)

    assert changed("tune", "n_trials", 50) == base
    assert changed("tune", "workers", 2) == base
    assert changed("tune", "storage", "sqlite:///elsewhere.db") == base
    assert changed("tune", "study_name", "other") == base  # the name is a prefix, not content
    assert changed("train", "seeds", [0, 1, 2, 3]) == base
    assert changed("train", "epochs", d["train"]["epochs"] + 1) != base
    assert changed("tune", "lr_range", [0.001, 0.01]) != base
    assert changed("tune", "sampler_seed", 7) != base
    assert changed("base", "seed", d["base"]["seed"] + 1) != base
    assert digest(d, fold=1) != base
    table = pd.read_csv(splits)
    table.loc[0, "sha1"] = "0" * 40  # same rows, one frame's content differs
    table.to_csv(splits, index=False)
    assert digest(d) != base


def _synthetic_candidates(root, generator: str, rng) -> pd.DataFrame:
    """Candidates of varied contrast (flat to speckled) + the filter stage's per-candidate table."""
    from lusaug.generators.filters import image_stats
    from tests.export.helpers import SIZE, png_bytes

    folder = root / "data" / "synthetic" / generator / "candidates"
    folder.mkdir(parents=True)
    images = []
    for k, spread in enumerate(np.linspace(2, 120, 12)):
        img = np.clip(rng.normal(110, spread, (SIZE, SIZE)), 0, 255).astype(np.uint8)
        (folder / f"cand_{k:03d}.png").write_bytes(png_bytes(img))
        images.append(img)
    std, entropy = image_stats(np.stack(images))
    table = pd.DataFrame(
        {
            "file": [f"cand_{k:03d}.png" for k in range(len(images))],
            "std": std,
            "entropy": entropy,
            "memorised": [False] * 11 + [True],
        }
    )
    table.to_csv(folder.parent / "filter.csv", index=False)
    metrics = root / "metrics"  # the filter's verdict: the thresholds it used, not blocked
    metrics.mkdir(exist_ok=True)
    thresholds = FilterThresholds(30.0, 4.7, None)
    (metrics / f"synthetic_{generator}.json").write_text(
        json.dumps({"thresholds": thresholds.as_dict(), "blocked": False})
    )
    return table


def _assert_best_trial_recorded(study, entry: dict, tuned, classes: list[str]) -> None:
    """The tuned file holds the best completed trial's values (not merely values in range)."""
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(done, key=lambda t: (t.value, -t.number))
    assert entry["study"]["best_trial"] == best.number
    assert tuned.lr == pytest.approx(best.params["lr"], rel=1e-5)
    weights = {c: best.params[f"w_{c}"] for c in classes}
    assert tuned.class_weights == pytest.approx(weights, rel=1e-5)
    if "min_std" in best.params:
        f = entry["filter"]
        assert f["min_std"] == pytest.approx(best.params["min_std"], rel=1e-5)
        assert f["min_entropy"] == pytest.approx(best.params["min_entropy"], rel=1e-5)


def _at(table, min_std: float, min_entropy: float) -> list[str]:
    return sorted(kept_files(table, FilterThresholds(min_std, min_entropy, None)))


def test_tuned_thresholds_are_recorded_with_what_they_keep(workdir, micro_params_dict):
    """synthetic_tuned-<G>: each trial trains on the candidates its thresholds keep (never
    memorised ones); the tuned file records the best thresholds AND those files, which is what
    the strategy then trains on (tests/models/test_training.py checks that end)."""
    table = _synthetic_candidates(workdir, "g1", np.random.default_rng(0))
    d = _params_dict(
        micro_params_dict,
        "journal:optuna.journal",
        strategies=("synthetic_tuned-g1",),
        n_trials=3,
        min_std_range=[5.0, 60.0],
        min_entropy_range=[2.0, 6.0],
    )
    params = params_from_dict(d)
    out = _tune(params, workdir, synthetic=True)["synthetic_tuned-g1"]
    f = out["filter"]
    assert f["kept"] == _at(table, f["min_std"], f["min_entropy"])
    assert "cand_011.png" not in f["kept"]  # the memorised one
    study = optuna.load_study(
        study_name=out["study"]["name"], storage=make_storage("journal:optuna.journal")
    )
    kept_sets = set()
    for t in study.trials:
        expected = _at(table, t.params["min_std"], t.params["min_entropy"])
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.user_attrs["kept_files"] == expected and expected
            kept_sets.add(tuple(expected))
    tuned = read_tuned(
        workdir / "params/tuned/fold-0.yaml", "synthetic_tuned-g1", params.base.classes
    )
    assert tuned.kept == f["kept"]
    _assert_best_trial_recorded(study, out, tuned, params.base.classes)
    # other thresholds, other training set: the threshold really decides what is trained on
    assert _at(table, 5.0, 2.0) != _at(table, 60.0, 2.0)


def test_nothing_to_tune_when_no_candidate_passes_even_the_loosest_thresholds(
    workdir, micro_params_dict
):
    """Every candidate flat (or memorised): no trial could train, so the tuned file says why
    instead of failing the stage, and the strategy's runs are skipped with that reason."""
    from lusaug.models.strategies import SkipRun

    table = _synthetic_candidates(workdir, "g1", np.random.default_rng(0))
    table["std"] = 1.0  # below the loosest min_std of the range
    table.to_csv(workdir / "data/synthetic/g1/filter.csv", index=False)
    d = _params_dict(
        micro_params_dict,
        "journal:optuna.journal",
        strategies=(TUNED, "synthetic_tuned-g1"),
        n_trials=2,
        min_std_range=[5.0, 60.0],
    )
    params = params_from_dict(d)
    out = _tune(params, workdir, synthetic=True, tracking=False)
    assert "no candidate of g1 passes" in out["synthetic_tuned-g1"]["skipped"]
    assert "class_weights" in out[TUNED]  # the other study still ran
    written = yaml.safe_load((workdir / "params/tuned/fold-0.yaml").read_text())
    assert written["synthetic_tuned-g1"] == out["synthetic_tuned-g1"]
    with pytest.raises(SkipRun, match="no candidate of g1"):
        read_tuned(workdir / "params/tuned/fold-0.yaml", "synthetic_tuned-g1", params.base.classes)


def test_with_nothing_to_tune_the_stage_still_writes_its_outputs(workdir, micro_params_dict):
    """No tuned strategy in train.strategies: an empty tuned file and an empty plots folder
    (both are DVC outputs of tune@k, so `dvc repro` would fail without them)."""
    d = _params_dict(micro_params_dict, "journal:optuna.journal", strategies=("class_weights",))
    assert _tune(params_from_dict(d), workdir, tracking=False) == {}
    assert (workdir / "params/tuned/fold-0.yaml").is_file()
    assert (workdir / "plots/tune").is_dir() and not any((workdir / "plots/tune").iterdir())


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(workdir, micro_params_dict):
    """tune.workers=2: this process plus a pipelines/tune.py worker finish one study together."""
    d = _params_dict(micro_params_dict, "sqlite:///optuna.db", n_trials=6, workers=2)
    params = params_from_dict(d)
    (workdir / "params.yaml").write_text(yaml.safe_dump(d))
    out = tune_fold(
        _paths(workdir),
        params.base,
        params.train,
        params.tune,
        fold=0,
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        worker_argv=[str(workdir / "data" / "splits.csv"), "--fold", "0"],
        params_file=workdir / "params.yaml",
        root=workdir,
    )[TUNED]
    study = optuna.load_study(
        study_name=out["study"]["name"], storage=f"sqlite:///{workdir / 'optuna.db'}"
    )
    finished = study.get_trials(states=FINISHED)
    assert 6 <= len(finished) <= 7  # workers stop at the target (one may overshoot by a trial)
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers  # both processes ran trials
    assert len(_trial_runs(study.user_attrs["mlflow_parent_run_id"])) == len(study.trials)
    assert dataclasses.asdict(params.tune)["workers"] == 2
