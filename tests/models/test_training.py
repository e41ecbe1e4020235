"""Training: checkpoint + outputs, exact resume, repeatable seeds, MLflow run with tags, strategies
that need inputs, a fold's matrix in one process. Real timm nets (micro sized), real accelerate,
real MLflow on a SQLite file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from lusaug.core.config import PROJ_ROOT, Params
from lusaug.core.utils import read_execution
from lusaug.models.classifier import (
    ClassifierMeta,
    build_classifier,
    load_checkpoint,
    load_classifier,
)
from lusaug.models.epochs import seed_epoch
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import TrainTracker
from lusaug.models.run_files import FILES
from lusaug.models.run_setup import FoldData, RunSpec, parse_run_name, planned_runs, prepare_run
from lusaug.models.strategies import FoldInputs, SkipRun, StrategyError
from lusaug.models.train_loop import build_loop
from lusaug.stages import train as train_stage
from tests.helpers.outputs import hashed_bytes
from tests.helpers.toy import write_toy_synthetic
from tests.models.conftest import run_once, tracking_for

EPOCHS = 3  # interrupted after epoch 1, resumed for epochs 2 and 3


class Interrupt(Exception):
    """Stands in for a killed process."""


def _stop_after(epoch: int):
    def callback(e: int, _row: dict) -> None:
        if e == epoch:
            raise Interrupt

    return callback


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["state_dict"]


def _epochs(params: Params, n: int, **train) -> Params:
    return dataclasses.replace(params, train=dataclasses.replace(params.train, epochs=n, **train))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, clf_params: Params, toy_splits: Path):
    """A: tracked, model logged. B: the same run interrupted after epoch 1, then resumed (the
    epochs the resumed process ran are recorded). C: another seed."""
    tmp = tmp_path_factory.mktemp("train")
    params = _epochs(clf_params, EPOCHS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        mp.setenv("LUSAUG_DVC_STAGE", "train@0")
        mp.setenv("LUSAUG_MLFLOW_GROUP", "test-group")
        tracking = tracking_for(params)
        logged = _epochs(clf_params, EPOCHS, log_model=True)
        a = run_once(logged, toy_splits, tmp / "a", "baseline", "resnet", 0, tracking=tracking)
        with pytest.raises(Interrupt):
            run_once(
                params, toy_splits, tmp / "b", "baseline", "resnet", 0,
                tracking=tracking, on_epoch_end=_stop_after(1),
            )  # fmt: skip
        interrupted = load_checkpoint(tmp / "b" / FILES["last"])
        resumed: list[int] = []
        b = run_once(
            params, toy_splits, tmp / "b", "baseline", "resnet", 0, tracking=tracking,
            resume=True, on_epoch_end=lambda e, _: resumed.append(e),
        )  # fmt: skip
        c = run_once(params, toy_splits, tmp / "c", "baseline", "resnet", 1)
        yield {"a": a, "b": b, "c": c, "interrupted": interrupted, "resumed": resumed, "tmp": tmp}


def test_run_writes_a_loadable_checkpoint_and_its_files(runs, clf_params):
    a = runs["a"]
    for key, name in FILES.items():
        assert (a.out_dir / name).exists() == (key not in ("last", "skipped")), name
    raw = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
    assert raw["meta"]["extra"]["strategy"] == "baseline"
    model, meta = load_classifier(a.checkpoint)
    x = torch.zeros(3, 1, meta.image_size, meta.image_size)
    assert model(x).shape == (3, len(clf_params.base.classes))
    hist = pd.read_csv(a.out_dir / FILES["history"])
    assert hist["epoch"].tolist() == list(range(1, EPOCHS + 1))
    assert {"train_loss", "val_loss", "val_macro_f1", "lr"} <= set(hist.columns)
    preds = pd.read_csv(a.out_dir / FILES["val_predictions"])
    assert {"patient_id", "video_id", "label", "predicted", "prob_viral"} <= set(preds.columns)
    info = json.loads((a.out_dir / FILES["run"]).read_text())
    assert info["checkpoint"] == "model.pt" and "mlflow_run_id" not in info  # byte-stable
    execution = read_execution(a.out_dir)  # what differs between identical runs
    assert execution["mlflow_run_id"] == a.mlflow_run_id and execution["seconds"] > 0
    assert len(execution["epoch_seconds"]) == EPOCHS and "seconds" not in hist.columns


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(runs):
    """Fails if resume restarts from scratch: the resumed process must run only the remaining
    epochs, and give the uninterrupted run's whole history and weights, whose best epoch comes
    after the interruption (so the weights it keeps were learnt after resuming)."""
    a, b, interrupted = runs["a"], runs["b"], runs["interrupted"]
    assert interrupted["epoch"] == 1 and len(interrupted["history"]) == 1
    assert runs["resumed"] == list(range(2, EPOCHS + 1))
    assert a.best_epoch > 1, "pick a toy set whose best epoch comes after the interruption"
    assert b.best_epoch == a.best_epoch
    pd.testing.assert_frame_equal(a.history, b.history)
    wa, wb = _weights(a.checkpoint), _weights(b.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.val_metrics == b.val_metrics


def test_same_seed_same_weights_other_seed_differs(runs):
    wa, wc = _weights(runs["a"].checkpoint), _weights(runs["c"].checkpoint)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_mlflow_run_has_tags_metrics_artifacts_model_and_parent(runs, clf_params):
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{runs['tmp'] / 'mlflow.db'}")
    exp = client.get_experiment_by_name("lusaug-classifiers")
    found = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.strategy = 'baseline' and tags.architecture = 'resnet'",
    )
    assert {r.info.run_id for r in found} == {runs["a"].mlflow_run_id, runs["b"].mlflow_run_id}
    run = client.get_run(runs["a"].mlflow_run_id)
    tags = run.data.tags
    assert tags["seed"] == "0" and tags["dvc_stage"] == "train@0"
    assert tags["git_commit"] and tags["data_hash"]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == str(clf_params.train.lr)  # flattened params
    assert run.data.params["base.image_size"] == str(clf_params.base.image_size)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_macro_f1")]
    assert steps == list(range(1, EPOCHS + 1))
    assert "best_val_f1_macro" in run.data.metrics
    arts = {f.path for f in client.list_artifacts(run.info.run_id, "validation")}
    assert {"validation/val_confusion.png", "validation/classification_report.txt"} <= arts
    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags["lusaug.role"] == "parent"
    assert (
        tags["mlflow.parentRunId"]
        == client.get_run(runs["b"].mlflow_run_id).data.tags["mlflow.parentRunId"]
    )  # one parent groups the matrix
    mlflow.set_tracking_uri(f"sqlite:///{runs['tmp'] / 'mlflow.db'}")
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
    client = MlflowClient(tracking_uri=f"sqlite:///{runs['tmp'] / 'mlflow.db'}")
    assert client.get_run(b.mlflow_run_id).info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(b.mlflow_run_id, "val_macro_f1")]
    assert steps == list(range(1, EPOCHS + 1))


def test_changed_params_restart_instead_of_resuming(tmp_path, clf_params, toy_splits):
    with pytest.raises(Interrupt):
        run_once(
            clf_params, toy_splits, tmp_path, "oversample", "vit", 0, on_epoch_end=_stop_after(1)
        )
    seen: list[int] = []
    other = dataclasses.replace(clf_params, train=dataclasses.replace(clf_params.train, lr=0.01))
    run_once(
        other, toy_splits, tmp_path, "oversample", "vit", 0, resume=True,
        on_epoch_end=lambda e, _: seen.append(e),
    )  # fmt: skip
    assert seen == [1, 2]  # started afresh: the checkpoint belonged to other params


def _synthetic_fold(root: Path, size: int, blocked: bool = False) -> FoldInputs:
    """A fold's synthetic folder with generator g1 (5 kept, 3 more candidates) and its verdict."""
    write_toy_synthetic(root / "synthetic" / "g1" / "kept", 5, size)
    write_toy_synthetic(root / "synthetic" / "g1" / "candidates", 8, size)
    metrics = root / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    verdict = {"kept": 5, "blocked": blocked, "blocked_reason": "memorisation 0.40 > 0.05"}
    (metrics / "synthetic_g1.json").write_text(json.dumps(verdict))
    return FoldInputs(root / "synthetic", root / "tuned.yaml", metrics)


def _real_viral(splits: Path) -> int:
    return pd.read_csv(splits).query("split == 'train' and label == 'viral'").shape[0]


def test_synthetic_strategies_add_or_replace_the_kept_images(tmp_path, clf_params, toy_splits):
    one = _epochs(clf_params, 1)
    inputs = _synthetic_fold(tmp_path, clf_params.base.image_size)
    real = _real_viral(toy_splits)
    add = run_once(one, toy_splits, tmp_path / "add", "synthetic:g1", "resnet", 0, inputs)
    assert add.run == "synthetic-g1-resnet-0"
    summary = json.loads((add.out_dir / FILES["val_metrics"]).read_text())
    assert summary["synthetic_frames"] == 5 and summary["train_frames"]["viral"] == real + 5
    rep = run_once(one, toy_splits, tmp_path / "rep", "synthetic_replace-g1", "resnet", 0, inputs)
    summary = json.loads((rep.out_dir / FILES["val_metrics"]).read_text())
    assert summary["train_frames"]["viral"] == 5  # the real rare-class frames are gone
    others = {c: n for c, n in summary["train_frames"].items() if c != "viral"}
    assert others == {c: n for c, n in add_frames(add).items() if c != "viral"}


def _rare_per_epoch(setup, params: Params, epoch: int) -> tuple[int, list[int]]:
    """Rare-class images one epoch of the real training loader draws, and every class's count."""
    loop = build_loop(setup, params.train, params.base.classes)
    seed_epoch(setup.spec.seed, epoch, loop.loader, loop.aug_gen)
    labels = torch.cat([y for _, y in loop.loader])
    counts = torch.bincount(labels, minlength=len(params.base.classes)).tolist()
    return counts[params.base.classes.index(params.base.target_class)], counts


@pytest.mark.parametrize("per_class", [0, 3])
def test_oversample_matched_trains_on_as_many_rare_images_per_epoch_as_synthetic(
    tmp_path, clf_params, toy_splits, per_class
):
    """oversample_matched-<G>: per epoch of the real loader, exactly as many rare-class images as
    synthetic-<G> (real + G's kept images it uses, after train.synthetic_per_class), all real;
    every other class as in synthetic-<G>; and skipped with G's reason when G is blocked."""
    one = _epochs(clf_params, 1, synthetic_per_class=per_class)
    inputs = _synthetic_fold(tmp_path, one.base.image_size)
    data = FoldData.load(toy_splits, one.base)
    real = _real_viral(toy_splits)
    synth = prepare_run(RunSpec("synthetic-g1", "resnet", 0), data, one.train, one.base, inputs)
    matched = prepare_run(
        RunSpec("oversample_matched-g1", "resnet", 0), data, one.train, one.base, inputs
    )
    used = per_class or 5
    assert synth.n_synthetic == used and matched.n_synthetic == 0
    for epoch in (1, 2):
        rare_s, counts_s = _rare_per_epoch(synth, one, epoch)
        rare_m, counts_m = _rare_per_epoch(matched, one, epoch)
        assert rare_s == rare_m == real + used
        assert counts_s == counts_m
    target = one.base.target_class
    rare_rows = matched.train.frames[matched.train.frames["label"] == target]
    assert not rare_rows["patient_id"].str.startswith("synthetic").any()  # real frames only
    copies = rare_rows["path"].value_counts()
    assert set(copies.index) == set(
        data.train.frames.loc[data.train.frames["label"] == target, "path"]
    )
    assert copies.max() - copies.min() <= 1  # spread evenly over the real frames
    assert not matched.plan.oversample and matched.plan.loss_weights is None  # plain loss
    r = run_once(one, toy_splits, tmp_path / "m", "oversample_matched-g1", "resnet", 0, inputs)
    summary = json.loads((r.out_dir / FILES["val_metrics"]).read_text())
    assert summary["train_frames"][target] == real + used and summary["synthetic_frames"] == 0
    blocked = _synthetic_fold(tmp_path / "blocked", one.base.image_size, blocked=True)
    for name in ("synthetic-g1", "oversample_matched-g1"):
        with pytest.raises(SkipRun, match="g1 is blocked in this fold: memorisation"):
            prepare_run(RunSpec(name, "resnet", 0), data, one.train, one.base, blocked)
    empty = _synthetic_fold(tmp_path / "empty", one.base.image_size)
    for f in (empty.synthetic_dir / "g1" / "kept").iterdir():
        f.unlink()
    for name in ("synthetic-g1", "oversample_matched-g1"):
        with pytest.raises(SkipRun, match="no synthetic image passed the filter"):
            prepare_run(RunSpec(name, "resnet", 0), data, one.train, one.base, empty)


def test_synthetic_only_trains_on_a_conditional_generators_images_of_every_class(
    tmp_path, clf_params, toy_splits
):
    """synthetic_only-<G>: no real frame; each class's kept images, labelled as their class."""
    one = _epochs(clf_params, 1)
    classes, target = one.base.classes, one.base.target_class
    inputs = _synthetic_fold(tmp_path, one.base.image_size)
    with pytest.raises(StrategyError, match="only a class-conditional generator"):
        run_once(one, toy_splits, tmp_path / "uncond", "synthetic_only-g1", "resnet", 0, inputs)
    kept = inputs.synthetic_dir / "g1" / "kept"
    for i, label in enumerate(c for c in classes if c != target):
        write_toy_synthetic(kept / label, 2 + i, one.base.image_size, label=classes.index(label))
    setup = prepare_run(
        RunSpec("synthetic_only-g1", "resnet", 0), FoldData.load(toy_splits, one.base),
        one.train, one.base, inputs,
    )  # fmt: skip
    assert set(setup.train.frames["patient_id"]) == {"synthetic-g1"}
    expected = {c: 2 + i for i, c in enumerate(c for c in classes if c != target)} | {target: 5}
    assert dict(zip(classes, setup.counts.tolist(), strict=True)) == expected
    by_folder = {Path(p).parent.name: classes[int(y)]
                 for p, y in zip(setup.train.frames["path"], setup.train.labels, strict=True)}  # fmt: skip
    assert by_folder == {"kept": target} | {c: c for c in classes if c != target}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("LUSAUG_MLFLOW_GROUP", "only")
        r = run_once(one, toy_splits, tmp_path / "only", "synthetic_only-g1", "resnet", 0,
                     inputs, tracking=tracking_for(one, tmp_path))  # fmt: skip
    summary = json.loads((r.out_dir / FILES["val_metrics"]).read_text())
    n_synth = sum(expected.values())
    assert summary["train_frames"] == expected and summary["synthetic_frames"] == n_synth
    from mlflow import MlflowClient

    logged = MlflowClient(uri).get_run(r.mlflow_run_id).inputs.dataset_inputs
    (synth,) = [d for d in logged if d.tags[0].value == "synthetic"]  # beside data and split
    assert json.loads(synth.dataset.profile)["images"] == n_synth
    assert synth.dataset.name.endswith("g1/kept")
    for f in (kept / classes[0]).iterdir():  # a class the filter emptied skips the run, with why
        f.unlink()
    with pytest.raises(SkipRun, match=f"no synthetic {classes[0]} image passed"):
        run_once(one, toy_splits, tmp_path / "empty", "synthetic_only-g1", "resnet", 0, inputs)


def add_frames(result) -> dict[str, int]:
    return json.loads((result.out_dir / FILES["val_metrics"]).read_text())["train_frames"]


def test_tuned_synthetic_strategy_trains_on_the_tuned_thresholds_kept_files(
    tmp_path, clf_params, toy_splits
):
    """synthetic_tuned-<G> uses the candidates the tuned file lists, with the tuned weights."""
    one = _epochs(clf_params, 1)
    inputs = _synthetic_fold(tmp_path, clf_params.base.image_size)
    candidates = sorted(p.name for p in (inputs.synthetic_dir / "g1" / "candidates").iterdir())
    weights = {"regular": 1.0, "covid": 2.0, "pneumonia": 1.5, "viral": 7.0}
    trained = {}
    for chosen in (candidates[:2], candidates[:6]):
        tuned = {"synthetic_tuned-g1": {"architecture": "resnet", "class_weights": weights,
                                        "lr": 0.001, "filter": {"kept": chosen}}}  # fmt: skip
        inputs.tuned.write_text(yaml.safe_dump(tuned))
        out = tmp_path / f"run{len(chosen)}"
        r = run_once(one, toy_splits, out, "synthetic_tuned-g1", "resnet", 0, inputs)
        trained[len(chosen)] = json.loads((r.out_dir / FILES["val_metrics"]).read_text())
    assert trained[2]["synthetic_frames"] == 2 and trained[6]["synthetic_frames"] == 6
    assert trained[2]["loss_weights"] == [1.0, 2.0, 1.5, 7.0] and trained[2]["lr"] == 0.001


def test_blocked_generator_is_never_trained_on(tmp_path, clf_params, toy_splits):
    inputs = _synthetic_fold(tmp_path, clf_params.base.image_size, blocked=True)
    with pytest.raises(SkipRun, match="g1 is blocked.*memorisation 0.40"):
        run_once(clf_params, toy_splits, tmp_path / "s", "synthetic-g1", "resnet", 0, inputs)


def test_strategies_needing_missing_inputs_fail_clearly(tmp_path, clf_params, toy_splits):
    inputs = FoldInputs(tmp_path / "synthetic", tmp_path / "tuned.yaml", tmp_path / "metrics")
    with pytest.raises(DataError, match=r"class_weights_tuned needs .*tuned.yaml.*dvc repro"):
        run_once(
            clf_params, toy_splits, tmp_path / "t", "class_weights_tuned", "resnet", 0, inputs
        )
    with pytest.raises(DataError, match=r"synthetic_g1.json not found.*filter@<fold>-g1"):
        run_once(clf_params, toy_splits, tmp_path / "s", "synthetic-g1", "resnet", 0, inputs)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "synthetic_g1.json").write_text('{"blocked": false}')
    with pytest.raises(DataError, match=r"synthetic images of 'g1'.*kept"):
        run_once(clf_params, toy_splits, tmp_path / "s", "synthetic-g1", "resnet", 0, inputs)
    with pytest.raises(DataError, match="unknown architecture 'convnext'"):
        run_once(clf_params, toy_splits, tmp_path / "s", "baseline", "convnext", 0)


def test_run_names_round_trip():
    assert RunSpec("synthetic:ddpm_3mixed", "vit", 2).name == "synthetic-ddpm_3mixed-vit-2"
    assert parse_run_name("synthetic_replace-ddpm_3mixed-vit-2") == (
        "synthetic_replace-ddpm_3mixed",
        "vit",
        2,
    )


def test_a_fold_trains_only_what_changed(tmp_path, clf_params, toy_splits):
    """train@<fold>: finished runs are kept, a new seed trains only its runs, a blocked
    generator's run records why, runs no longer planned are removed."""
    inputs = _synthetic_fold(tmp_path, clf_params.base.image_size, blocked=True)
    train = dataclasses.replace(
        clf_params.train,
        epochs=1,
        strategies=["baseline", "synthetic-g1"],
        architectures={"resnet": clf_params.train.architectures["resnet"]},
        seeds=[0],
    )
    out = tmp_path / "fold-0"
    paths = train_stage.TrainPaths(
        toy_splits, out, inputs.synthetic_dir, inputs.tuned, inputs.generator_metrics
    )

    def train_fold(cfg) -> list:
        return train_stage.run(paths, clf_params.base, cfg, fold=0, progress=False)

    first = {o.run: o.status for o in train_fold(train)}
    assert first == {"baseline-resnet-0": "trained", "synthetic-g1-resnet-0": "skipped"}
    skipped = json.loads((out / "synthetic-g1-resnet-0" / FILES["skipped"]).read_text())
    assert "memorisation 0.40" in skipped["reason"] and skipped["fold"] == 0
    weights = _weights(out / "baseline-resnet-0" / FILES["checkpoint"])
    more = dataclasses.replace(train, seeds=[0, 1])
    again = {o.run: o.status for o in train_fold(more)}
    assert again["baseline-resnet-0"] == "kept" and again["baseline-resnet-1"] == "trained"
    kept = _weights(out / "baseline-resnet-0" / FILES["checkpoint"])
    assert all(torch.equal(weights[k], kept[k]) for k in weights)
    fewer = dataclasses.replace(train, strategies=["baseline"], seeds=[1])
    train_fold(fewer)
    assert sorted(p.name for p in out.iterdir()) == ["baseline-resnet-1"]
    assert [s.name for s in planned_runs(more)][:2] == ["baseline-resnet-0", "baseline-resnet-1"]


@pytest.mark.parametrize("fmt", ["pickle", "pt2"])
def test_logged_model_loads_back_in_either_format(fmt, clf_params: Params, tmp_path, monkeypatch):
    """train.log_model_format: both serialisations give a model that runs on any batch size
    and predicts what the trained network predicts."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LUSAUG_MLFLOW_GROUP", "format-test")
    torch.manual_seed(0)
    arch = clf_params.train.architectures["resnet"]
    size = clf_params.base.image_size
    net = build_classifier(
        ClassifierMeta.for_architecture(arch, clf_params.base.classes, size)
    ).eval()
    tracker = TrainTracker(tracking_for(clf_params, PROJ_ROOT), f"format-{fmt}", {})
    tracker.log_model(net, torch.rand(2, 1, size, size).numpy(), fmt)
    tracker.finish()

    logged = mlflow.search_logged_models(output_format="list")
    assert [m.source_run_id for m in logged] == [tracker.run_id]
    loaded = mlflow.pytorch.load_model(logged[0].model_uri)
    x = torch.rand(3, 1, size, size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), net(x), atol=1e-5)


def test_two_runs_of_the_train_stage_write_the_same_bytes(tmp_path, toy_splits, clf_params):
    """Identical inputs give identical outputs, so DVC's hashes do not change on a re-run and
    nothing downstream re-runs: the checkpoint is saved under a fixed archive name, and the wall
    times and MLflow ids (which do differ) live only in each run's execution record."""
    train = dataclasses.replace(
        clf_params.train,
        epochs=2,
        strategies=["baseline"],
        architectures={"resnet": clf_params.train.architectures["resnet"]},
        seeds=[0],
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        for name in ("a", "b"):
            paths = train_stage.TrainPaths(toy_splits, tmp_path / name)
            tracking = tracking_for(clf_params, tmp_path)
            train_stage.run(
                paths, clf_params.base, train, fold=0, tracking=tracking, progress=False
            )
    a, b = hashed_bytes(tmp_path / "a"), hashed_bytes(tmp_path / "b")
    assert set(a) == set(b) and "baseline-resnet-0/model.pt" in a
    assert [f for f in a if a[f] != b[f]] == []
    ids = [read_execution(tmp_path / n / "baseline-resnet-0")["mlflow_run_id"] for n in "ab"]
    assert ids[0] != ids[1]  # two MLflow runs, recorded where DVC does not look


def test_final_refit_run_is_named_apart_and_outside_the_fold_groups(
    clf_params: Params, tmp_path, monkeypatch
):
    """The final refit of baseline-resnet is `final-baseline-resnet`, role=final, no parent:
    the UI never lists it among the fold runs of the same setting."""
    from mlflow.tracking import MlflowClient

    from lusaug.stages.final import final_tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LUSAUG_MLFLOW_GROUP", "final-test")
    tracking = tracking_for(clf_params, PROJ_ROOT)
    spec = RunSpec("baseline", "resnet", 0, fold=0)
    fold_run = TrainTracker(tracking, spec.name, {"fold": 0})
    final_run = TrainTracker(final_tracking(tracking, "baseline", "resnet"), spec.name, {})
    for tracker in (fold_run, final_run):
        tracker.finish()
    client = MlflowClient(tracking_uri=uri)
    fold, final = client.get_run(fold_run.run_id), client.get_run(final_run.run_id)
    assert (fold.info.run_name, final.info.run_name) == (
        "baseline-resnet-0",
        "final-baseline-resnet",
    )
    assert final.data.tags["lusaug.role"] == "final" and fold.data.tags["lusaug.role"] == "train"
    assert "mlflow.parentRunId" not in final.data.tags and fold_run.parent_run_id
    siblings = client.search_runs(
        [fold.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{fold_run.parent_run_id}'",
    )
    assert [r.info.run_id for r in siblings] == [fold_run.run_id]
    assert final_tracking(None, "baseline", "resnet") is None
