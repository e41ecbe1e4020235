"""Tuning on micro data with the real training function: tuned file, resume, workers, MLflow."""

from __future__ import annotations

import copy

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from lusaug.tuning.study import make_storage, objective_fingerprint, tune
from mlflow import MlflowClient

from lusaug.config import params_from_dict
from lusaug.models.strategies import read_tuned
from tests.export.helpers import make_splits


def _params_dict(micro_params_dict: dict, tmp_path, storage: str, **tune_over) -> dict:
    d = copy.deepcopy(micro_params_dict)
    d["train"]["architectures"] = {"resnet": {"model": "test_resnet", "kwargs": {}}}  # tiny & fast
    d["train"]["epochs"] = 2
    d["train"]["patience"] = 0
    d["train"]["log_model"] = False
    d["train"]["threads"] = 1
    over = {
        "storage": storage,
        "architecture": "resnet",
        "epochs": 0,
        "n_trials": 2,
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


def _trial_runs(parent_id: str) -> list:
    client = MlflowClient()
    exp = client.get_experiment_by_name("lusaug-tuning")
    return client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


def test_tune_writes_tuned_file_and_resumes(workdir, micro_params_dict):
    d = _params_dict(micro_params_dict, workdir, "journal:optuna.journal")
    params = params_from_dict(d)
    (workdir / "params.yaml").write_text(yaml.safe_dump(d))
    splits = workdir / "data" / "splits.csv"

    def run_tune() -> dict:
        return tune(
            params,
            workdir / "params.yaml",
            splits,
            workdir / "params" / "tuned.yaml",
            workdir / "plots" / "tune",
            root=workdir,
        )

    data = run_tune()

    assert data["study"]["trials"] == 2
    weights, lr = read_tuned(
        workdir / "params" / "tuned.yaml", params.base.classes
    )  # issue 3 reads it
    assert weights.shape == (4,) and np.all(weights > 0) and lr == pytest.approx(data["lr"])
    lo, hi = params.tune.lr_range
    assert lo <= lr <= hi
    assert data["filter"]["tuned"] is False  # no filter_generator on micro data
    assert (workdir / "plots" / "tune" / "optimization_history.png").stat().st_size > 0
    assert (workdir / "plots" / "tune" / "param_importances.png").exists() or data["study"][
        "complete"
    ] < 2

    assert data["study"]["name"].startswith(f"{params.tune.study_name}-")
    study = optuna.load_study(
        study_name=data["study"]["name"], storage=make_storage("journal:optuna.journal")
    )
    parent = study.user_attrs["mlflow_parent_run_id"]
    runs = _trial_runs(parent)
    assert sorted(r.data.tags["optuna.trial"] for r in runs) == ["0", "1"]
    assert all("val_macro_f1" in r.data.metrics for r in runs)  # per-epoch reports as steps
    assert MlflowClient().get_run(parent).info.experiment_id == runs[0].info.experiment_id

    # Re-run: the study continues (adds n_trials) under the same parent run.
    again = run_tune()
    assert again["study"]["trials"] == 4
    assert sorted(int(r.data.tags["optuna.trial"]) for r in _trial_runs(parent)) == [0, 1, 2, 3]
    assert again["study"]["name"] == data["study"]["name"]
    study = optuna.load_study(
        study_name=again["study"]["name"], storage=make_storage("journal:optuna.journal")
    )
    assert [t.number for t in study.trials] == [0, 1, 2, 3]

    # New data (one validation frame fewer): a new study, the old one kept as it was.
    table = pd.read_csv(splits)
    table.drop(index=table.index[table["split"] == "val"][0]).to_csv(splits, index=False)
    fresh = run_tune()
    assert fresh["study"]["name"] != data["study"]["name"]
    assert fresh["study"]["trials"] == 2
    storage = make_storage("journal:optuna.journal")
    assert len(optuna.load_study(study_name=data["study"]["name"], storage=storage).trials) == 4


def test_study_fingerprint_follows_the_objective_not_the_run_settings(workdir, micro_params_dict):
    """Trial counts, workers, storage and the train matrix leave the study as it is; the split,
    the training settings and the search space start a new one."""
    d = _params_dict(micro_params_dict, workdir, "journal:optuna.journal")
    splits = workdir / "data" / "splits.csv"
    base = objective_fingerprint(params_from_dict(d), splits)

    def changed(section: str, key: str, value) -> str:
        other = copy.deepcopy(d)
        other[section][key] = value
        return objective_fingerprint(params_from_dict(other), splits)

    assert changed("tune", "n_trials", 50) == base
    assert changed("tune", "workers", 2) == base
    assert changed("tune", "storage", "sqlite:///elsewhere.db") == base
    assert changed("train", "seeds", [0, 1, 2, 3]) == base
    assert changed("train", "generators", []) == base
    assert changed("train", "epochs", d["train"]["epochs"] + 1) != base
    assert changed("tune", "lr_range", [0.001, 0.01]) != base
    assert changed("base", "seed", d["base"]["seed"] + 1) != base
    assert changed("tune", "study_name", "other") == base  # the name is a prefix, not content

    table = pd.read_csv(splits)
    table.loc[0, "sha1"] = "0" * 40  # same rows, one frame's content differs
    table.to_csv(splits, index=False)
    assert objective_fingerprint(params_from_dict(d), splits) != base


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(workdir, micro_params_dict):
    """tune.workers=2: this process plus a pipelines/tune.py worker finish one study together."""
    d = _params_dict(micro_params_dict, workdir, "sqlite:///optuna.db", n_trials=6, workers=2)
    params = params_from_dict(d)
    (workdir / "params.yaml").write_text(yaml.safe_dump(d))
    data = tune(
        params,
        workdir / "params.yaml",
        workdir / "data" / "splits.csv",
        workdir / "params" / "tuned.yaml",
        workdir / "plots" / "tune",
        root=workdir,
    )
    study = optuna.load_study(
        study_name=data["study"]["name"], storage=f"sqlite:///{workdir / 'optuna.db'}"
    )
    states = [t.state.name for t in study.trials]
    assert (
        6 <= len(states) <= 7
    )  # workers stop at the target (one may overshoot by its last trial)
    assert set(states) <= {"COMPLETE", "PRUNED"}  # none lost, none left running or failed
    assert sorted(t.number for t in study.trials) == list(range(len(states)))
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) == 2, workers  # both processes ran trials
    assert data["study"]["trials"] == len(states)
    assert len(_trial_runs(study.user_attrs["mlflow_parent_run_id"])) == len(states)


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
    return table


def test_tune_filter_thresholds_with_class_weights(workdir, micro_params_dict):
    """tune.filter_generator: each trial trains synthetic-<G> on the candidates its thresholds
    keep (never memorised ones), and params/tuned.yaml gets the best thresholds."""
    from lusaug.generators.filters import quality_mask

    table = _synthetic_candidates(workdir, "ddpm_3mixed", np.random.default_rng(0))
    d = _params_dict(
        micro_params_dict,
        workdir,
        "journal:optuna.journal",
        filter_generator="ddpm_3mixed",
        n_trials=3,
        min_std_range=[5.0, 60.0],
        min_entropy_range=[2.0, 6.0],
    )
    params = params_from_dict(d)
    (workdir / "params.yaml").write_text(yaml.safe_dump(d))
    data = tune(
        params,
        workdir / "params.yaml",
        workdir / "data" / "splits.csv",
        workdir / "params" / "tuned.yaml",
        workdir / "plots" / "tune",
        root=workdir,
        synthetic_dir=workdir / "data" / "synthetic",
    )

    assert data["filter"]["tuned"] is True
    assert 5.0 <= data["filter"]["min_std"] <= 60.0
    assert 2.0 <= data["filter"]["min_entropy"] <= 6.0
    study = optuna.load_study(
        study_name=data["study"]["name"], storage=make_storage("journal:optuna.journal")
    )
    assert len(study.trials) == 3
    for t in study.trials:
        expected = quality_mask(
            table["std"].to_numpy(),
            table["entropy"].to_numpy(),
            t.params["min_std"],
            t.params["min_entropy"],
        )
        expected &= ~table["memorised"].to_numpy()
        if t.state == optuna.trial.TrialState.COMPLETE:
            assert t.user_attrs["synthetic_kept"] == int(expected.sum()) > 0
        else:  # pruned: nothing passed, or the median pruner stopped it
            assert t.state == optuna.trial.TrialState.PRUNED
    written = yaml.safe_load((workdir / "params" / "tuned.yaml").read_text())
    assert written["filter"] == data["filter"]
