"""Pooled out-of-fold evaluation: real tiny runs on real CV folds give files and numbers that a
recomputation by hand reproduces; the verdicts on constructed predictions; the stage scripts run
standalone with exactly the argv that dvc.yaml gives them, and log to a real MLflow store."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from lusaug.core.config import FINAL_FOLD, PROJ_ROOT, Params, PrimaryParams, SplitParams
from lusaug.core.utils import read_execution
from lusaug.data.manifest import read_manifest, write_manifest
from lusaug.data.split import fold_file, make_splits, relocate
from lusaug.models import comparison as cmp
from lusaug.models import verdicts as vd
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
        summary=m / "summary.json",
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
    primary = PrimaryParams("class_weights", "baseline", "resnet", "recall")
    return dataclasses.replace(
        clf_params,
        train=train,
        split=CV,
        evaluate=dataclasses.replace(clf_params.evaluate, bootstrap=200, primary=primary),
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
    return RunOOF(f"{name}-resnet-{seed}", strategy, "resnet", seed, prob, None)


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


# strategy names for constructed behaviour (any parseable name will do)
FIXES, SAME, COSTLY = "class_weights", "oversample", "class_weights_norm"


def _calls(y: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probabilities: the true class where ``right``, another class otherwise; a little noise
    so that seeds differ."""
    wrong = (y + 1 + (y == 3).astype(int)) % 4  # the rare class is never called by mistake
    called = np.where(right, y, wrong)
    prob = np.eye(4)[called] * 0.85 + 0.0375 + rng.uniform(0, 0.01, (len(y), 4))
    return prob / prob.sum(1, keepdims=True)


@pytest.mark.parametrize("n_rare", [8, 4])
def test_the_verdicts_on_constructed_predictions(n_rare, cv_params):
    """8 rare patients: a strategy that recognises every rare patient the baseline misses helps
    (exact p = 2/2^8, interval above 0, macro-F1 non-inferior); one that also breaks a common
    class hurts (macro-F1 beyond the margin); one that changes nothing has no evidence; the
    placebo says no difference. 4 rare patients: the same help cannot be shown (2/2^4 > alpha)."""
    frames, y = _constructed(n_rare)
    rng = np.random.default_rng(0)
    rare = y == 3
    runs = []
    for seed in (0, 1):
        runs += [
            _run("baseline", "baseline", _calls(y, ~rare, rng), seed),
            _run("class_weights", "class_weights", _calls(y, np.ones_like(rare), rng), seed),
            _run("oversample", "oversample", _calls(y, ~rare, rng), seed),
            _run(
                "class_weights_norm", "class_weights_norm", _calls(y, (y == 0) | rare, rng), seed
            ),
        ]
    cfg = dataclasses.replace(
        cv_params.evaluate,
        bootstrap=100,
        primary=PrimaryParams("class_weights", "baseline", "resnet", "recall"),
    )
    settings = vd.build_settings(runs, y, frames["patient_id"].to_numpy(), 3)
    primary = vd.primary_spec(cfg)
    pairs = vd.comparison_pairs(settings, "baseline", primary)
    assert set(pairs) == {f"{s} vs baseline (resnet)" for s in (FIXES, SAME, COSTLY)}
    comparisons, skipped = vd.run_comparisons(settings, pairs, cfg, seed=1)
    assert skipped == {}
    family = vd.decide_all(comparisons, primary, cfg)
    d = family["decisions"]
    fixes, same, costly = (d[f"{s} vs baseline (resnet)"] for s in (FIXES, SAME, COSTLY))
    assert fixes.role == "primary" and fixes.p_adjusted == fixes.p_value
    assert fixes.p_value == pytest.approx(2 / 2**n_rare)
    assert fixes.estimate == pytest.approx(1.0) and fixes.lo > 0
    if n_rare == 8:
        assert fixes.verdict == "helps", fixes.reason
        assert costly.verdict == "hurts" and costly.non_inferiority.inferior, costly.reason
    else:
        assert fixes.verdict == "cannot be shown", fixes.reason
        assert "6 patients all moving the same way" in fixes.reason
    assert same.verdict in ("no evidence of help", "cannot be shown") and same.p_value == 1.0
    holm = family["holm"]["recall"]
    assert set(holm) == {f"{SAME} vs baseline (resnet)", f"{COSTLY} vs baseline (resnet)"}
    assert all(holm[n] >= comparisons[n].rare["recall"].test.p_value for n in holm)
    placebo = vd.placebos(settings, "baseline", "recall", cfg, seed=1)["resnet"]
    assert placebo.verdict == "no difference" and placebo.seeds == [[0], [1]]
    mdd, size = vd.design_limits(placebo, settings, primary, cfg)
    assert mdd["seeds"] == [2, 2] and mdd["n_patients"] == n_rare
    assert mdd["detectable_by_exact_test"] is (n_rare >= 6)
    assert size is None or size["target"] == cfg.target_effect
    one_seed = vd.build_settings([r for r in runs if r.seed == 0], y, frames["patient_id"], 3)
    not_run = vd.placebos(one_seed, "baseline", "recall", cfg, seed=1)["resnet"]
    assert "no placebo can be run" in not_run["not_run"]
    assert "not_run" in vd.design_limits(not_run, one_seed, primary, cfg)[0]


def test_a_generator_pair_is_compared_with_its_same_share_control(cv_params):
    """synthetic-<G> is compared with the baseline and with oversample_matched-<G>; a setting
    a fold skipped leaves its comparisons not evaluated, with the reason."""
    frames, y = _constructed(6)
    rng = np.random.default_rng(1)
    runs = [
        _run(name, name, _calls(y, y != 3, rng))
        for name in ("baseline", "synthetic-g", "oversample_matched-g")
    ]
    blocked = RunOOF("synthetic-h-resnet-0", "synthetic-h", "resnet", 0, None, None,
                     skipped={1: "generator h is blocked in this fold"})  # fmt: skip
    settings = vd.build_settings([*runs, blocked], y, frames["patient_id"].to_numpy(), 3)
    primary = vd.primary_spec(
        dataclasses.replace(
            cv_params.evaluate,
            primary=PrimaryParams("synthetic-g", "oversample_matched-g", "resnet", "auroc"),
        )
    )
    pairs = vd.comparison_pairs(settings, "baseline", primary)
    assert pairs["synthetic-g vs oversample_matched-g (resnet)"][3] == vd.SAME_SHARE
    assert pairs["oversample_matched-g vs baseline (resnet)"][3] == vd.VS_BASELINE
    done, skipped = vd.run_comparisons(settings, pairs, cv_params.evaluate, seed=0)
    assert skipped == {
        "synthetic-h vs baseline (resnet)": settings["synthetic-h-resnet"].unavailable
    }
    one_run = done["synthetic-g vs oversample_matched-g (resnet)"].rare["recall"]
    assert "seed variance NOT estimable" in one_run.interval.method  # 1 vs 1, no 2-run setting


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


def test_comparison_summary_and_report_lead_with_the_primary_and_the_placebo(evaluated):
    """comparison.json holds the primary (read from params) with its verdict, the placebo (2
    seeds: 1 vs 1), the MDD and study size from it, the family; summary.json the headline."""
    document = _json(evaluated["out"].comparison)
    primary = document["primary"]
    assert (primary["strategy"], primary["control"], primary["architecture"]) == (
        "class_weights", "baseline", "resnet",
    )  # fmt: skip
    assert primary["name"] == "class_weights vs baseline (resnet)"
    d = primary["decision"]
    assert d["role"] == "primary" and d["n_patients"] == 4
    assert d["verdict"] in ("cannot be shown", "hurts")  # 4 patients: 2/2^4 > 0.05
    paired = document["comparisons"][primary["name"]]["rare"]["recall"]
    n = paired["test"]["n_nonzero"]
    assert paired["test"]["min_p"] == (2 / 2**n if n else 1.0)
    rare = _json(evaluated["out"].rare)["patients"]
    assert sorted(paired["per_patient"]) == sorted(r["patient_id"] for r in rare)
    assert "Welch-Satterthwaite" in paired["interval"]["method"]
    placebo = document["placebo"]
    assert placebo["seeds"] == [[0], [1]] and placebo["verdict"] == "no difference"
    assert document["mdd"]["seeds"] == [2, 2] and document["mdd"]["assumptions"]
    assert document["mdd"]["detectable_by_exact_test"] is False  # 4 patients
    assert document["family"]["m"] == 0 and document["family"]["endpoint"] == "recall"
    assert set(document["settings"]) == {"baseline-resnet", "class_weights-resnet"}
    summary = _json(evaluated["out"].summary)
    assert summary["primary"]["spec"] == ["class_weights", "baseline", "resnet", "recall"]
    assert summary["primary"]["verdict"] == d["verdict"]
    assert summary["primary"]["p"] == pytest.approx(d["p_value"], abs=1e-3)
    assert summary["placebo"] == "no difference"
    test = _json(evaluated["out"].metrics)
    base = test["settings"]["baseline-resnet"]
    assert summary["baseline"]["recall"] == pytest.approx(base["rare_recall"], abs=1e-3)
    assert base["rare_recall_lo"] <= base["rare_recall"] <= base["rare_recall_hi"]
    chosen = _json(evaluated["out"].selection)["chosen"]["setting"]
    assert summary["final"]["f1"] == pytest.approx(test["settings"][chosen]["f1_macro"], abs=1e-3)
    report = evaluated["out"].report.read_text()
    assert report.index("**Primary comparison**") < report.index("**Placebo**")
    assert report.index("**Placebo**") < report.index("## Every comparison")
    assert "What this design can detect" in report and "Holm" in report
    assert "patients needed for" not in report and "reference_gain" not in report


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
                           threads=1, log_model=False, overrides=[])  # fmt: skip
    params["evaluate"]["primary"] = {"strategy": "class_weights", "control": "baseline",
                                     "architecture": "resnet", "endpoint": "auroc"}  # fmt: skip
    params["train"]["architectures"] = {"resnet": params["train"]["architectures"]["resnet"]}
    params["split"].update(
        folds=CV.folds, items=[*CV.folds, FINAL_FOLD], val_fraction=CV.val_fraction
    )
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
    train_parent = client.get_run(child.data.tags["mlflow.parentRunId"])
    group = train_parent.data.tags["lusaug.group"]
    # the evaluation: a parent of the same group, one child per setting with intervals
    (parent,) = client.search_runs(
        [child.info.experiment_id],
        f"tags.`lusaug.group` = '{group}' and tags.`lusaug.role` = 'evaluation'",
    )
    assert parent.data.tags["primary"] == "class_weights vs baseline (resnet)"
    assert parent.data.tags["placebo"] == "not run"  # one seed: no placebo
    files = {f.path for f in client.list_artifacts(parent.info.run_id, "evaluation")}
    assert {"evaluation/comparison.md", "evaluation/comparison.json"} <= files
    assert "evaluation/summary.json" in files
    children = client.search_runs(
        [child.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {"baseline-resnet", "class_weights-resnet"}
    test = json.loads((tmp_path / "metrics/test.json").read_text())["settings"]
    for name, r in by_name.items():
        assert r.data.tags["lusaug.role"] == "setting"
        assert (r.data.tags["strategy"], r.data.tags["architecture"]) == tuple(name.split("-"))
        for m in ("accuracy", "f1_macro", "rare_recall", "rare_auroc", "rare_ap"):
            assert r.data.metrics[f"test.{m}"] == pytest.approx(test[name][m], abs=1e-6)
            assert f"test.{m}_lo" in r.data.metrics and f"test.{m}_hi" in r.data.metrics
    cw = by_name["class_weights-resnet"]
    comparison = json.loads((tmp_path / "metrics/comparison.json").read_text())
    entry = comparison["comparisons"]["class_weights vs baseline (resnet)"]
    for e in ("recall", "auroc", "ap"):
        assert cw.data.metrics[f"vs_baseline.p_exact.{e}"] == pytest.approx(
            entry["rare"][e]["test"]["p_value"]
        )
        assert f"vs_baseline.p_holm.{e}" in cw.data.metrics
        assert f"vs_baseline.diff.{e}_lo" in cw.data.metrics
    assert cw.data.tags["verdict.vs_baseline"] == entry["decision"]["verdict"]
    # a strategy whose input is missing stops with a message, not a traceback
    params["train"]["strategies"] = ["baseline", "class_weights_tuned"]
    params["evaluate"]["primary"]["strategy"] = "class_weights_tuned"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(
        SystemExit, match=r"train@0 failed: .*class_weights_tuned needs .*fold-0.yaml"
    ):
        train.main(_argv("train", 0))
