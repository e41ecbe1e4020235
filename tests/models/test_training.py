"""Training: checkpoint + outputs, exact resume, repeatable seeds, MLflow run with tags, strategies
that need inputs. Real timm nets (micro sized), real accelerate, real MLflow on a SQLite file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from lusaug.config import PROJ_ROOT, Params
from lusaug.models.classifier import load_checkpoint, load_classifier
from lusaug.models.data import DataError
from lusaug.models.train import FILES, parse_run_name, run_name, train_classifier
from tests.helpers.toy import write_toy_synthetic


class Interrupt(Exception):
    """Stands in for a killed process."""


def _stop_after(epoch: int):
    def callback(e: int, _row: dict) -> None:
        if e == epoch:
            raise Interrupt

    return callback


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clf_params: Params, toy_splits: Path):
    """A: 2 epochs, tracked, model logged. B: same run interrupted after epoch 1, then resumed.
    C: another seed."""
    tmp = tmp_path_factory.mktemp("train")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("LUSAUG_DVC_STAGE", "train@baseline-resnet-0")
        mp.setenv("LUSAUG_MLFLOW_GROUP", "test-group")
        logged = dataclasses.replace(
            clf_params, train=dataclasses.replace(clf_params.train, log_model=True)
        )
        a = train_classifier(
            logged, toy_splits, tmp / "a", "baseline", "resnet", 0, root=PROJ_ROOT, progress=False
        )
        with pytest.raises(Interrupt):
            train_classifier(
                clf_params,
                toy_splits,
                tmp / "b",
                "baseline",
                "resnet",
                0,
                on_epoch_end=_stop_after(1),
                root=PROJ_ROOT,
                progress=False,
            )
        interrupted = load_checkpoint(tmp / "b" / FILES["last"])
        b = train_classifier(
            clf_params,
            toy_splits,
            tmp / "b",
            "baseline",
            "resnet",
            0,
            resume=True,
            root=PROJ_ROOT,
            progress=False,
        )
        c = train_classifier(
            clf_params,
            toy_splits,
            tmp / "c",
            "baseline",
            "resnet",
            1,
            tracking=False,
            progress=False,
        )
        yield {"a": a, "b": b, "c": c, "interrupted": interrupted, "tmp": tmp}


def test_run_writes_a_loadable_checkpoint_and_its_files(runs, clf_params):
    a = runs["a"]
    for key, name in FILES.items():
        assert (a.out_dir / name).exists() == (key != "last"), name  # last.pt: only mid-run
    raw = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    assert raw["meta"]["extra"]["strategy"] == "baseline"
    model, meta = load_classifier(a.checkpoint)
    x = torch.zeros(3, 1, meta.image_size, meta.image_size)
    assert model(x).shape == (3, len(clf_params.base.classes))
    hist = pd.read_csv(a.out_dir / FILES["history"])
    assert hist["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_loss", "val_macro_f1", "lr"} <= set(hist.columns)
    preds = pd.read_csv(a.out_dir / FILES["val_predictions"])
    assert {"patient_id", "video_id", "label", "predicted", "prob_viral"} <= set(preds.columns)
    info = json.loads((a.out_dir / FILES["run"]).read_text())
    assert info["mlflow_run_id"] == a.mlflow_run_id and info["checkpoint"] == "model.pt"


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(runs):
    a, b, interrupted = runs["a"], runs["b"], runs["interrupted"]
    assert interrupted["epoch"] == 1 and len(interrupted["history"]) == 1
    assert b.history["epoch"].tolist() == [1, 2]
    assert b.history.iloc[0].to_dict() | {"seconds": 0} == (
        interrupted["history"][0] | {"seconds": 0}
    )  # epoch 1 was not re-run
    wa, wb = _weights(a.checkpoint), _weights(b.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.val_metrics == b.val_metrics


def test_same_seed_same_weights_other_seed_differs(runs):
    wa, wc = _weights(runs["a"].checkpoint), _weights(runs["c"].checkpoint)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_mlflow_run_has_tags_metrics_artifacts_model_and_parent(runs, clf_params):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    exp = client.get_experiment_by_name("lusaug-classifiers")
    found = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.strategy = 'baseline' and tags.architecture = 'resnet'",
    )
    assert {r.info.run_id for r in found} == {runs["a"].mlflow_run_id, runs["b"].mlflow_run_id}
    run = client.get_run(runs["a"].mlflow_run_id)
    tags = run.data.tags
    assert tags["seed"] == "0" and tags["dvc_stage"] == "train@baseline-resnet-0"
    assert tags["git_commit"] and tags["data_hash"]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(clf_params.train.lr)  # flattened params
    assert run.data.params["base.image_size"] == str(clf_params.base.image_size)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")]
    assert steps == [1, 2]
    assert "best_val_f1_macro" in run.data.metrics
    arts = {f.path for f in client.list_artifacts(run.info.run_id, "validation")}
    assert {"validation/val_confusion.png", "validation/classification_report.txt"} <= arts
    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags["lusaug.role"] == "parent"
    assert (
        tags["mlflow.parentRunId"]
        == client.get_run(runs["b"].mlflow_run_id).data.tags["mlflow.parentRunId"]
    )  # one parent groups the matrix
    models = mlflow.search_logged_models(experiment_ids=[exp.experiment_id], output_format="list")
    logged = [m for m in models if m.source_run_id == run.info.run_id]
    assert len(logged) == 1
    net = mlflow.pytorch.load_model(logged[0].model_uri)  # any batch size, not only the example's
    size = clf_params.base.image_size
    assert tuple(net(torch.zeros(3, 1, size, size)).shape) == (3, len(clf_params.base.classes))


def test_resumed_run_continues_its_mlflow_run(runs):
    from mlflow.tracking import MlflowClient

    b = runs["b"]
    assert runs["interrupted"]["mlflow_run_id"] == b.mlflow_run_id
    client = MlflowClient()
    assert client.get_run(b.mlflow_run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(b.mlflow_run_id, "val_macro_f1")]
    assert steps == [1, 2]


def test_changed_params_restart_instead_of_resuming(tmp_path, clf_params, toy_splits):
    with pytest.raises(Interrupt):
        train_classifier(
            clf_params,
            toy_splits,
            tmp_path,
            "oversample",
            "vit",
            0,
            on_epoch_end=_stop_after(1),
            tracking=False,
            progress=False,
        )
    seen: list[int] = []
    other = dataclasses.replace(clf_params, train=dataclasses.replace(clf_params.train, lr=0.01))
    train_classifier(
        other,
        toy_splits,
        tmp_path,
        "oversample",
        "vit",
        0,
        resume=True,
        on_epoch_end=lambda e, _: seen.append(e),
        tracking=False,
        progress=False,
    )
    assert seen == [1, 2]  # started afresh: the checkpoint belonged to other params


def test_synthetic_strategy_adds_the_kept_images(tmp_path, clf_params, toy_splits):
    write_toy_synthetic(tmp_path / "synthetic" / "g1" / "kept", 5, clf_params.base.image_size)
    one = dataclasses.replace(clf_params, train=dataclasses.replace(clf_params.train, epochs=1))
    r = train_classifier(
        one,
        toy_splits,
        tmp_path / "run",
        "synthetic:g1",
        "resnet",
        0,
        synthetic_dir=tmp_path / "synthetic",
        tracking=False,
        progress=False,
    )
    assert r.run == "synthetic-g1-resnet-0"
    summary = json.loads((r.out_dir / FILES["val_metrics"]).read_text())
    real = pd.read_csv(toy_splits).query("split == 'train' and label == 'viral'").shape[0]
    assert summary["synthetic_frames"] == 5 and summary["train_frames"]["viral"] == real + 5


def test_strategies_needing_missing_inputs_fail_clearly(tmp_path, clf_params, toy_splits):
    with pytest.raises(DataError, match=r"class_weights_tuned needs .*tuned.yaml.*dvc repro tune"):
        train_classifier(
            clf_params,
            toy_splits,
            tmp_path / "t",
            "class_weights_tuned",
            "resnet",
            0,
            tuned_path=tmp_path / "params" / "tuned.yaml",
            tracking=False,
        )
    with pytest.raises(DataError, match=r"synthetic images for generator 'ddpm_3mixed'.*kept"):
        train_classifier(
            clf_params,
            toy_splits,
            tmp_path / "s",
            "synthetic-ddpm_3mixed",
            "resnet",
            0,
            synthetic_dir=tmp_path / "synthetic",
            tracking=False,
        )
    with pytest.raises(DataError, match="unknown architecture 'convnext'"):
        train_classifier(clf_params, toy_splits, tmp_path / "s", "baseline", "convnext", 0)


def test_run_names_round_trip():
    assert run_name("synthetic:ddpm_3mixed", "vit", 2) == "synthetic-ddpm_3mixed-vit-2"
    assert parse_run_name("synthetic-ddpm_3mixed-vit-2") == ("synthetic-ddpm_3mixed", "vit", 2)


@pytest.mark.parametrize("fmt", ["pickle", "pt2"])
def test_logged_model_loads_back_in_either_format(fmt, clf_params: Params, tmp_path, monkeypatch):
    """train.log_model_format: both serialisations give a model that runs on any batch size
    and predicts what the trained network predicts."""
    import mlflow
    from lusaug.models.tracking import TrainTracker

    from lusaug.models.classifier import ClassifierMeta, build_classifier

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LUSAUG_MLFLOW_GROUP", "format-test")
    torch.manual_seed(0)
    net = build_classifier(ClassifierMeta.for_architecture(clf_params, "resnet")).eval()
    size = clf_params.base.image_size
    tracker = TrainTracker(clf_params, f"format-{fmt}", {}, root=PROJ_ROOT)
    tracker.log_model(net, torch.rand(2, 1, size, size).numpy(), fmt)
    tracker.finish()

    logged = mlflow.search_logged_models(output_format="list")
    assert [m.source_run_id for m in logged] == [tracker.run_id]
    loaded = mlflow.pytorch.load_model(logged[0].model_uri)
    x = torch.rand(3, 1, size, size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)
