"""Evaluation: fixed fake predictions give the expected files and numbers; the stage scripts run
standalone with exactly the argv that dvc.yaml gives them."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lusaug.config import PROJ_ROOT, Params
from lusaug.models.data import load_split
from lusaug.models.evaluate import EvaluateOutputs, RunRecord, evaluate_records, planned_runs
from lusaug.models.metrics import point_metrics


def _outputs(root: Path) -> EvaluateOutputs:
    return EvaluateOutputs(
        metrics=root / "metrics" / "test.json",
        runs=root / "metrics" / "test_runs.json",
        comparison=root / "metrics" / "comparison.json",
        validation=root / "metrics" / "validation_runs.json",
        plots=root / "plots" / "evaluate",
        report=root / "reports" / "comparison.md",
    )


def _val_frame(splits: Path, classes: list[str], prob_fn) -> pd.DataFrame:
    df = pd.read_csv(splits, dtype=str).query("split == 'val'").reset_index(drop=True)
    y = df["label"].map(classes.index).to_numpy()
    prob = prob_fn(y)
    out = df[["path", "video_id", "patient_id", "label"]].copy()
    out["predicted"] = [classes[i] for i in prob.argmax(1)]
    for k, c in enumerate(classes):
        out[f"prob_{c}"] = prob[:, k]
    return out


def _random(seed: int):
    def fn(y: np.ndarray) -> np.ndarray:
        p = np.random.default_rng(seed).random((len(y), 4))
        return p / p.sum(1, keepdims=True)

    return fn


def _perfect(y: np.ndarray) -> np.ndarray:
    return np.eye(4)[y] * 0.9 + 0.025


def _records(clf_params: Params, splits: Path, test, spec: dict[str, object]) -> list[RunRecord]:
    classes = clf_params.base.classes
    y = test.labels.numpy()
    out = []
    for (strategy, seed), fn in spec.items():
        hist = pd.DataFrame(
            {
                "epoch": [1, 2],
                "train_loss": [1.3, 1.1],
                "val_loss": [1.2, 1.1],
                "val_accuracy": [0.3, 0.4],
                "val_macro_f1": [0.2, 0.3],
            }
        )
        out.append(
            RunRecord(
                name=f"{strategy}-resnet-{seed}",
                strategy=strategy,
                arch="resnet",
                seed=seed,
                test_prob=fn(y),
                val=_val_frame(splits, classes, fn),
                history=hist,
                info={"mlflow_run_id": None, "best_epoch": 2, "model": "resnet18"},
                checkpoint=f"models/classifiers/{strategy}-resnet-{seed}/model.pt",
            )
        )
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, clf_params, toy_splits):
    root = tmp_path_factory.mktemp("evaluate")
    test = load_split(toy_splits, "test", clf_params.base.classes, clf_params.base.image_size)
    spec = {
        ("baseline", 0): _random(0),
        ("baseline", 1): _random(1),
        ("class_weights", 0): _perfect,
        ("class_weights", 1): _perfect,
        ("oversample", 0): _random(0),
        ("oversample", 1): _random(1),
    }
    runs = _records(clf_params, toy_splits, test, spec)
    summary = evaluate_records(clf_params, test, runs, _outputs(root), tracking=False)
    return {"root": root, "summary": summary, "runs": runs, "test": test}


def test_expected_files_are_written(evaluated):
    root = evaluated["root"]
    out = _outputs(root)
    for path in (
        out.metrics,
        out.runs,
        out.comparison,
        out.validation,
        out.report,
        out.report.with_suffix(".html"),
    ):
        assert path.exists() and path.stat().st_size > 0, path
    figures = {p.name for p in (out.plots / "figures").iterdir()}
    assert {
        "confusion_grid.png",
        "recall_bars.png",
        "curves_val_macro_f1.png",
        "differences_f1_macro.png",
        "confusion_baseline-resnet-0.png",
    } <= figures
    n_test = len(evaluated["test"])
    for r in evaluated["runs"]:
        cm = pd.read_csv(out.plots / "confusion" / f"{r.name}.csv")
        assert list(cm.columns) == ["actual", "predicted"] and len(cm) == n_test
        assert (out.plots / "curves" / f"{r.name}.csv").exists()
    md = out.report.read_text()
    assert "| Strategy | resnet Acc | resnet F1 | resnet Prec |" in md
    assert all(s in md for s in ("baseline", "class_weights", "oversample"))
    assert "data:image/png;base64," in out.report.with_suffix(".html").read_text()


def test_numbers_equal_sklearn_and_seed_means(evaluated, clf_params):
    out = _outputs(evaluated["root"])
    test, classes = evaluated["test"], clf_params.base.classes
    per_run = json.loads(out.runs.read_text())
    points = []
    for r in evaluated["runs"][:2]:  # the two baseline seeds
        pt = point_metrics(
            test.labels.numpy(), r.test_prob, classes, test.frames["video_id"].to_numpy()
        )
        assert np.isclose(per_run[r.name]["f1_macro"]["value"], pt["f1_macro"], atol=1e-6)
        points.append(pt["accuracy"])
    agg = json.loads(out.metrics.read_text())["settings"]
    assert np.isclose(agg["baseline-resnet"]["accuracy"], np.mean(points), atol=1e-6)
    perfect = agg["class_weights-resnet"]
    assert perfect["accuracy"] == perfect["accuracy_lo"] == perfect["accuracy_hi"] == 1.0
    lo, hi = agg["baseline-resnet"]["accuracy_lo"], agg["baseline-resnet"]["accuracy_hi"]
    assert lo <= agg["baseline-resnet"]["accuracy"] <= hi and lo < hi


def test_paired_comparison_verdicts(evaluated):
    comp = json.loads(_outputs(evaluated["root"]).comparison.read_text())
    assert set(comp) == {"class_weights-resnet", "oversample-resnet"}  # not the baseline itself
    assert comp["class_weights-resnet"]["f1_macro"]["verdict"] == "better"
    assert comp["class_weights-resnet"]["f1_macro"]["lo"] > 0
    same = comp["oversample-resnet"]["accuracy"]  # identical predictions to the baseline
    assert same["diff"] == same["lo"] == same["hi"] == 0.0
    assert same["verdict"] == "not significant"


def test_validation_runs_carry_what_register_needs(evaluated):
    val = json.loads(_outputs(evaluated["root"]).validation.read_text())
    assert set(val) == {r.name for r in evaluated["runs"]}
    entry = val["class_weights-resnet-0"]
    assert entry["val_macro_f1"] == 1.0
    assert entry["val_macro_f1_lo"] <= entry["val_macro_f1"] <= entry["val_macro_f1_hi"]
    assert entry["checkpoint"] == "models/classifiers/class_weights-resnet-0/model.pt"
    assert {
        "strategy",
        "architecture",
        "seed",
        "mlflow_run_id",
        "val_accuracy",
        "val_recall_viral",
    } <= set(entry)


# ---- the stage scripts, with dvc.yaml's own argv ----


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"pipeline_{name}", PROJ_ROOT / "pipelines" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _argv(stage: str, item: dict[str, object] | None = None) -> list[str]:
    cmd = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    for k, v in (item or {}).items():
        cmd = cmd.replace(f"${{item.{k}}}", str(v))
    assert "${" not in cmd
    return cmd.split()[2:]


def test_stage_scripts_run_standalone_with_dvc_argv(
    tmp_path, monkeypatch, micro_params_dict, toy_splits
):
    params = json.loads(json.dumps(micro_params_dict))
    params["train"].update(
        strategies=["baseline", "class_weights"], seeds=[0], epochs=1, threads=1, log_model=False
    )
    # no tune / filter stage here: plain strategies only
    params["train"].update(tuned_strategies=[], generators=[])
    params["train"]["architectures"] = {"resnet": params["train"]["architectures"]["resnet"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(toy_splits.parent, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LUSAUG_MLFLOW_GROUP", "cli-test")
    train, evaluate = _load_script("train"), _load_script("evaluate")
    from lusaug.config import load_params

    for s, a, seed in planned_runs(load_params()):
        train.main(_argv("train", {"strategy": s, "arch": a, "seed": seed}))
    assert (tmp_path / "models/classifiers/class_weights-resnet-0/model.pt").exists()
    evaluate.main(_argv("evaluate"))
    for rel in (
        "metrics/test.json",
        "metrics/validation_runs.json",
        "reports/comparison.html",
        "plots/evaluate/confusion/baseline-resnet-0.csv",
    ):
        assert (tmp_path / rel).exists(), rel

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    val = json.loads((tmp_path / "metrics/validation_runs.json").read_text())
    child = client.get_run(val["baseline-resnet-0"]["mlflow_run_id"])
    assert "test_accuracy" in child.data.metrics
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert "test.baseline-resnet.accuracy" in parent.data.metrics
    assert "evaluation/comparison.md" in {
        f.path for f in client.list_artifacts(parent.info.run_id, "evaluation")
    }

    # a strategy whose input is missing stops with a message, not a traceback
    with pytest.raises(SystemExit, match=r"class_weights_tuned needs params/tuned.yaml"):
        train.main(
            _argv("train_tuned", {"strategy": "class_weights_tuned", "arch": "resnet", "seed": 0})
        )
    with pytest.raises(SystemExit, match=r"data/synthetic/ddpm_3mixed/kept not found"):
        train.main(
            _argv("train_synthetic", {"generator": "ddpm_3mixed", "arch": "resnet", "seed": 0})
        )


def test_rare_class_with_one_test_patient_is_not_estimable(tmp_path, clf_params, evaluated):
    """One viral test patient gives a degenerate interval: never a 'better'/'worse' verdict."""
    target = clf_params.base.target_class
    test = evaluated["test"]
    frames = test.frames.copy()
    rare = frames.index[frames["label"] == target]
    assert frames.loc[rare, "patient_id"].nunique() == 1  # the toy split has one viral patient
    one = json.loads(_outputs(evaluated["root"]).comparison.read_text())
    verdict = one["class_weights-resnet"][f"recall_{target}"]["verdict"]
    assert verdict.startswith("not estimable (1 test patient")
    assert one["class_weights-resnet"]["f1_macro"]["verdict"] == "better"  # others unaffected
    # recall_macro averages over classes: it is not the recall of a class called "macro"
    assert not one["class_weights-resnet"]["recall_macro"]["verdict"].startswith("not estimable")
    # give the class a second test patient: the verdict comes from the interval again
    frames.loc[rare[: len(rare) // 2], "patient_id"] = "second-viral-patient"
    two = dataclasses.replace(test, frames=frames)
    evaluate_records(clf_params, two, evaluated["runs"], _outputs(tmp_path), tracking=False)
    comp = json.loads(_outputs(tmp_path).comparison.read_text())
    assert comp["class_weights-resnet"][f"recall_{target}"]["verdict"] in {
        "better",
        "worse",
        "not significant",
    }
