"""Pooled out-of-fold evaluation: real tiny runs on real CV folds give files and numbers that a
recomputation by hand reproduces; the decision rule on constructed predictions; the stage
scripts run standalone with exactly the argv that dvc.yaml gives them."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lusaug.core.config import FINAL_FOLD, PROJ_ROOT, Params, SplitParams
from lusaug.core.utils import read_execution
from lusaug.data.manifest import read_manifest, write_manifest
from lusaug.data.split import fold_file, make_splits, relocate
from lusaug.models import comparison as cmp
from lusaug.models.classifier import load_classifier
from lusaug.models.frame_sets import load_split, predict_proba
from lusaug.models.oof import HeldOutFrames, RunOOF, fold_dir
from lusaug.models.statistics import point_metrics
from lusaug.stages import evaluate, train
from tests.helpers.toy import write_toy_dataset

CV = SplitParams(
    scheme="cv",
    folds=[0, 1, 2, 3],
    items=[0, 1, 2, 3, FINAL_FOLD],
    max_folds=5,
    val_fraction=0.34,
    fractions={"train": 0.6, "val": 0.2, "test": 0.2},
)


def _paths(root: Path, splits: Path, models: Path) -> evaluate.EvaluatePaths:
    m = root / "metrics"
    return evaluate.EvaluatePaths(
        splits=splits,
        models=models,
        metrics=m / "test.json",
        runs=m / "test_runs.json",
        comparison=m / "comparison.json",
        validation=m / "validation_runs.json",
        selection=m / "selection.json",
        rare=m / "rare_patients.json",
        predictions=root / "reports" / "predictions",
        plots=root / "plots" / "evaluate",
        report=root / "reports" / "comparison.md",
    )


def write_cv_folds(root: Path, params: Params) -> Path:
    """A toy data set (4 viral patients) split into real CV folds: root/splits/fold-<k>.csv."""
    manifest = read_manifest(write_toy_dataset(root, params.base.classes, params.base.image_size))
    folds, _ = make_splits(manifest.drop(columns="split"), params.base.classes, CV, 0)
    for f in folds:
        write_manifest(relocate(f.frames), root / "splits" / fold_file(f.fold))
    return root / "splits"


@pytest.fixture(scope="module")
def cv_params(clf_params: Params) -> Params:
    train = dataclasses.replace(
        clf_params.train,
        strategies=["baseline", "class_weights"],
        architectures={"resnet": clf_params.train.architectures["resnet"]},
        seeds=[0, 1],
        epochs=2,
    )
    return dataclasses.replace(
        clf_params,
        train=train,
        split=CV,
        evaluate=dataclasses.replace(clf_params.evaluate, bootstrap=200),
    )


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, cv_params: Params):
    root = tmp_path_factory.mktemp("cv")
    splits = write_cv_folds(root / "data", cv_params)
    models = root / "models" / "classifiers"
    p = cv_params
    for k in CV.folds:
        paths = train.TrainPaths(splits / fold_file(k), fold_dir(models, k))
        train.run(paths, p.base, p.train, fold=k, progress=False)
    out = _paths(root, splits, models)
    summary = evaluate.run(
        out, p.base, p.train, p.evaluate, folds=CV.folds, select_metric="val_f1_macro"
    )
    return {"root": root, "splits": splits, "models": models, "out": out, "summary": summary}


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_every_rare_patient_is_tested_once_and_every_frame_predicted_once(evaluated, cv_params):
    test = HeldOutFrames.load(evaluated["splits"], CV.folds, cv_params.base)
    viral = test.frames[test.frames["label"] == "viral"]
    assert viral.groupby("patient_id")["fold"].nunique().eq(1).all()
    assert viral["patient_id"].nunique() == len(CV.folds) == viral["fold"].nunique()
    all_frames = read_manifest(evaluated["splits"] / fold_file(0))
    preds = pd.read_csv(evaluated["out"].predictions / "baseline-resnet-0.csv")
    assert sorted(preds["path"]) == sorted(all_frames["path"])  # each frame exactly once
    for rel in (
        "metrics/test.json",
        "reports/comparison.html",
        "plots/evaluate/figures/rare_patient_recall.png",
    ):
        assert (evaluated["root"] / rel).exists(), rel


def test_pooled_metrics_equal_a_recomputation_from_each_folds_predictions(evaluated, cv_params):
    """Load every fold's model, predict its test frames by hand, pool, compare."""
    classes, size = cv_params.base.classes, cv_params.base.image_size
    runs = _json(evaluated["out"].runs)
    for name in ("baseline-resnet-0", "class_weights-resnet-1"):
        probs, labels, videos = [], [], []
        for k in CV.folds:
            test = load_split(evaluated["splits"] / fold_file(k), "test", classes, size)
            model, meta = load_classifier(fold_dir(evaluated["models"], k) / name / "model.pt")
            probs.append(predict_proba(model, test.images, meta.mean, meta.std, 64))
            labels.append(test.labels.numpy())
            videos.append(test.frames["video_id"].to_numpy())
        prob, y, v = np.concatenate(probs), np.concatenate(labels), np.concatenate(videos)
        by_hand = point_metrics(y, prob, classes, v)
        for m in ("accuracy", "f1_macro", "precision_macro", "video_accuracy"):
            assert runs[name][m]["value"] == pytest.approx(by_hand[m], abs=1e-6), (name, m)
        table = pd.read_csv(evaluated["out"].predictions / f"{name}.csv")
        assert table[[f"prob_{c}" for c in classes]].to_numpy() == pytest.approx(prob, abs=1e-6)
        # per-fold values beside the pooled ones
        fold0 = point_metrics(labels[0], probs[0], classes, videos[0])
        assert runs[name]["per_fold"]["0"]["accuracy"] == pytest.approx(
            fold0["accuracy"], abs=1e-6
        )
    settings = _json(evaluated["out"].metrics)["settings"]
    mean = np.mean([runs[f"baseline-resnet-{s}"]["f1_macro"]["value"] for s in (0, 1)])
    assert settings["baseline-resnet"]["f1_macro"] == pytest.approx(mean, abs=1e-6)


def test_stratified_draws_always_hold_every_class(evaluated, cv_params):
    test = HeldOutFrames.load(evaluated["splits"], CV.folds, cv_params.base)
    classes = cv_params.base.classes
    for stratify in (True, False):
        cfg = dataclasses.replace(cv_params.evaluate, stratify=stratify, bootstrap=300)
        design = cmp.design_for(test.frames, classes, cfg, seed=3)
        w = design.frame_weights(test.frames["patient_id"].astype(str).to_numpy())
        present = np.stack([(w[:, test.labels == k] > 0).any(1) for k in range(len(classes))], 1)
        if stratify:
            assert present.all(), "a stratified draw lacks a class"
        else:  # 4 viral patients of 30: some plain draws miss the class altogether
            assert not present.all()


def _run(name: str, strategy: str, prob: np.ndarray, seed: int = 0) -> RunOOF:
    return RunOOF(name, strategy, "resnet", seed, prob, None)


def _constructed(n_rare_patients: int):
    """Frames of 8 patients per class (4 classes); rare = class 3 with ``n_rare_patients``."""
    rows, y = [], []
    for k, n in enumerate((8, 8, 8, n_rare_patients)):
        for p in range(n):
            for f in range(5):
                rows.append({"patient_id": f"c{k}p{p}", "video_id": f"c{k}p{p}v", "fold": p % 4,
                             "label": ["regular", "covid", "pneumonia", "viral"][k]})  # fmt: skip
                y.append(k)
    return pd.DataFrame(rows), np.array(y)


@pytest.mark.parametrize(("n_rare", "helps_expected"), [(4, cmp.HELPS), (1, cmp.NOT_ESTIMABLE)])
def test_the_decision_rule_on_constructed_predictions(n_rare, helps_expected, cv_params):
    frames, y = _constructed(n_rare)
    classes = cv_params.base.classes
    right = np.eye(4)[y] * 0.9 + 0.025
    never_rare = right.copy()
    never_rare[y == 3] = np.eye(4)[0] * 0.9 + 0.025  # the rare class called regular
    worse = never_rare.copy()
    worse[y == 1] = np.eye(4)[2] * 0.9 + 0.025  # and covid called pneumonia
    rare_but_worse = right.copy()
    rare_but_worse[(y == 0) | (y == 1) | (y == 2)] = np.eye(4)[3] * 0.9 + 0.025
    runs = [
        _run("baseline-resnet-0", "baseline", never_rare),
        _run("fixes-resnet-0", "fixes", right),
        _run("same-resnet-0", "same", never_rare),
        _run("hurts-resnet-0", "hurts", worse),
        _run("costly-resnet-0", "costly", rare_but_worse),
    ]
    cfg = dataclasses.replace(cv_params.evaluate, bootstrap=300)
    design = cmp.design_for(frames, classes, cfg, seed=0)
    scored = cmp.score_runs(runs, y, frames, design, classes)
    out = cmp.compare(cmp.settings_of(runs), scored, cfg, "viral", n_rare)
    assert out["fixes-resnet"]["decision"] == helps_expected
    assert out["same-resnet"]["decision"] in (cmp.NO_HELP, cmp.NOT_ESTIMABLE)
    assert out["hurts-resnet"]["decision"] in (cmp.NO_HELP, cmp.NOT_ESTIMABLE)
    if n_rare > 1:
        assert out["same-resnet"]["decision"] == cmp.NO_HELP
        assert out["hurts-resnet"]["f1_macro"]["verdict"] == "worse"
        # better on the rare class, but macro-F1 significantly worse: does not help
        assert out["costly-resnet"]["recall_viral"]["lo"] > 0
        assert out["costly-resnet"]["f1_macro"]["hi"] < 0
        assert out["costly-resnet"]["decision"] == cmp.NO_HELP
    else:
        assert out["fixes-resnet"]["recall_viral"]["verdict"].startswith("not estimable")
    rows = cmp.rare_patients(cmp.settings_of(runs), frames, y, classes, "viral")
    assert [r["frames"] for r in rows] == [5] * n_rare
    assert all(
        r["recall"]["fixes-resnet"] == 1.0 and r["recall"]["baseline-resnet"] == 0.0 for r in rows
    )


def test_selection_reads_validation_only(evaluated):
    sel = _json(evaluated["out"].selection)
    val = _json(evaluated["out"].validation)
    means = {
        s: np.mean([val[f"{s}-{seed}"]["val_f1_macro"] for seed in (0, 1)])
        for s in ("baseline-resnet", "class_weights-resnet")
    }
    assert sel["chosen"]["setting"] == max(means, key=means.get)
    assert sel["value"] == pytest.approx(max(means.values()), abs=1e-6)
    assert set(val["baseline-resnet-0"]) >= {"val_f1_macro", "val_f1_macro_lo", "val_recall_viral"}


def test_minimum_detectable_difference_and_study_size(evaluated):
    mdd = _json(evaluated["out"].comparison)["mdd"]
    assert mdd["viral_patients"] == 4 and mdd["patients"] > 4
    needed = mdd["patients_needed_for_reference_gain"]
    assert mdd["f1_macro"] is None or mdd["f1_macro"] > 0
    if mdd["accuracy"] is not None:
        assert needed == int(np.ceil(mdd["patients"] * (mdd["accuracy"] / 0.0225) ** 2))
    report = (evaluated["out"].report).read_text()
    assert "What this design can rule out" in report and "per viral patient" in report


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, PROJ_ROOT / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _argv(stage: str, item: object = None) -> list[str]:
    """The argv dvc.yaml gives ``stage`` (foreach item substituted)."""
    spec = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"][stage]
    cmd = (spec.get("do") or spec)["cmd"]
    cmd = " ".join(cmd.split()).replace("${item}", str(item))
    assert "${" not in cmd
    return cmd.split()[2:]


def test_stage_scripts_run_standalone_with_dvc_argv(
    tmp_path, monkeypatch, micro_params_dict, cv_params
):
    params = json.loads(json.dumps(micro_params_dict))
    params["train"].update(strategies=["baseline", "class_weights"], seeds=[0], epochs=1,
                           threads=1, log_model=False)  # fmt: skip
    params["train"]["architectures"] = {"resnet": params["train"]["architectures"]["resnet"]}
    params["split"].update(folds=CV.folds, val_fraction=CV.val_fraction)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    write_cv_folds(tmp_path / "data", cv_params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LUSAUG_MLFLOW_GROUP", "cli-test")
    train, evaluate = _load_script("train"), _load_script("evaluate")
    for k in CV.folds:
        train.main(_argv("train", k))
    assert (tmp_path / "models/classifiers/fold-3/class_weights-resnet-0/model.pt").exists()
    evaluate.main(_argv("evaluate"))
    for rel in ("metrics/test.json", "metrics/selection.json", "reports/comparison.html",
                "plots/evaluate/confusion/baseline-resnet-0.csv"):  # fmt: skip
        assert (tmp_path / rel).exists(), rel

    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    info = read_execution(tmp_path / "models/classifiers/fold-2/baseline-resnet-0")
    child = client.get_run(info["mlflow_run_id"])
    assert child.data.tags["fold"] == "2" and "test_fold_accuracy" in child.data.metrics
    parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    assert "test.baseline-resnet.accuracy" in parent.data.metrics
    assert "evaluation/comparison.md" in {
        f.path for f in client.list_artifacts(parent.info.run_id, "evaluation")
    }
    # a strategy whose input is missing stops with a message, not a traceback
    params["train"]["strategies"] = ["baseline", "class_weights_tuned"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        SystemExit, match=r"train@0 failed: .*class_weights_tuned needs .*fold-0.yaml"
    ):
        train.main(_argv("train", 0))
