"""Lineage on a local store: experiment kind tags, DVC-hashed dataset inputs, the model card."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from mlflow import MlflowClient

from lusaug.core.mlflow_store import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    EXPERIMENTS,
    data_inputs,
    setup_experiment,
)
from lusaug.models.mlflow_runs import RunTracking, TrainTracker
from lusaug.tracking.card import INTENDED_USE, cv_record, model_card
from lusaug.tracking.selection import RunSummary
from tests.pipelines.helpers import BIN

SPLIT_ROWS = [
    "path,label,video_id,patient_id,split",
    "../frames/a.png,viral,v1,p1,train",
    "../frames/b.png,regular,v2,p2,val",
    "../frames/c.png,covid,v3,p3,test",
]


def _sh(args: list[str], cwd: Path) -> str:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd), "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=True
    ).stdout


def _dvc_repo(root: Path) -> Path:
    """A git + DVC repo with data/raw tracked by a top-level data.dvc and one split file."""
    root.mkdir()
    _sh(["git", "init", "-q"], root)
    _sh(["dvc", "init", "-q"], root)
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "clip.txt").write_text("a lung\n")
    (raw / "metadata.csv").write_text("Filename,Patient\nclip.txt,p1\n")
    (root / "data.dvc").write_text(yaml.safe_dump({"outs": [{"path": "data/raw"}]}))
    _sh(["dvc", "commit", "-q", "-f", "data.dvc"], root)
    (root / "data" / "splits").mkdir()
    (root / "data" / "splits" / "fold-0.csv").write_text("\n".join(SPLIT_ROWS) + "\n")
    ident = ["-c", "user.email=t@t", "-c", "user.name=t"]
    _sh(["git", *ident, "add", "-A"], root)
    _sh(["git", *ident, "commit", "-qm", "data"], root)
    return root


def _dvc_md5(root: Path, rel: str) -> str:
    """What DVC itself records for a file (`dvc add` in a scratch copy of the repo)."""
    scratch = root.parent / "scratch"
    subprocess.run(["cp", "-a", str(root), str(scratch)], check=True)
    _sh(["git", "rm", "-q", "--cached", rel], scratch)  # DVC refuses files git tracks
    _sh(["dvc", "add", "-q", rel], scratch)
    return yaml.safe_load((scratch / f"{rel}.dvc").read_text())["outs"][0]["md5"]


def test_setup_experiment_tags_new_and_existing_experiments_as_model_training(
    tmp_path, monkeypatch
):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    old = client.create_experiment(EXPERIMENTS["classifiers"])  # made before the tag existed
    assert setup_experiment("classifiers", root=tmp_path) == old
    new = setup_experiment("generators", root=tmp_path)
    for exp_id in (old, new):
        assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


def test_a_training_run_logs_data_raw_and_its_split_file_with_their_dvc_hashes(
    tmp_path, monkeypatch
):
    repo = _dvc_repo(tmp_path / "repo")
    raw_md5 = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    split_md5 = _dvc_md5(repo, "data/splits/fold-0.csv")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking = RunTracking(
        uri, {"train.epochs": 1}, root=repo, splits_csv=Path("data/splits/fold-0.csv")
    )
    tracker = TrainTracker(tracking, "baseline-resnet-0", {"strategy": "baseline", "fold": 0})
    tracker.finish()

    run = MlflowClient(uri).get_run(tracker.run_id)
    found = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(found) == {"data/raw", "data/splits/fold-0.csv"}
    raw, split = found["data/raw"], found["data/splits/fold-0.csv"]
    assert raw.dataset.digest == raw_md5 and raw_md5.endswith(".dir")
    assert split.dataset.digest == split_md5
    assert {t.key: t.value for t in split.tags} == {"mlflow.data.context": "training"}
    assert raw.dataset.source_type == split.dataset.source_type == "dvc"
    source = json.loads(split.dataset.source)
    head = _sh(["git", "rev-parse", "HEAD"], repo).strip()
    assert source == {"path": "data/splits/fold-0.csv", "repo": str(repo.resolve()),
                      "rev": head, "remote": ""}  # fmt: skip
    profile = json.loads(split.dataset.profile)
    assert profile["frames"] == 3 and profile["train_patients"] == 1
    assert [c["name"] for c in json.loads(split.dataset.schema)["mlflow_colspec"]] == (
        SPLIT_ROWS[0].split(",")
    )
    assert run.data.tags["data_hash"] == raw_md5 and run.data.tags["split_hash"] == split_md5

    # A resumed run logs the same inputs again: nothing is duplicated.
    again = TrainTracker(tracking, "baseline-resnet-0", {}, resume_run_id=tracker.run_id)
    again.finish()
    assert len(MlflowClient(uri).get_run(tracker.run_id).inputs.dataset_inputs) == 2


def test_data_inputs_name_the_default_dvc_remote(tmp_path):
    repo = _dvc_repo(tmp_path / "repo")
    _sh(["dvc", "remote", "add", "-d", "team", "s3://bucket/store"], repo)
    (raw,) = data_inputs(repo)
    assert raw.source["remote"] == "s3://bucket/store" and raw.path == "data/raw"


def test_the_model_card_covers_data_cv_estimate_decision_lineage_use_and_limits(params):
    entry = {
        "strategy": "class_weights", "architecture": "resnet", "model": "resnet18", "seed": 0,
        "val_f1_macro": 0.61, "val_f1_macro_lo": 0.5, "val_f1_macro_hi": 0.7,
    }  # fmt: skip
    test = {
        "settings": {"class_weights-resnet": {
            "strategy": "class_weights", "architecture": "resnet",
            "f1_macro": 0.55, "f1_macro_lo": 0.41, "f1_macro_hi": 0.66,
            "rare_auroc": 0.8, "rare_auroc_lo": 0.6, "rare_auroc_hi": 0.95,
        }},
        "test": {"folds": 3, "frames": 50, "patients": 15, "ci": 0.95},
    }  # fmt: skip
    decision = {"verdict": "cannot be shown", "reason": "cannot be shown with 3 patients",
                "estimate": 0.1, "lo": -0.2, "hi": 0.4, "p_value": 0.25}  # fmt: skip
    comparison = {
        "primary": {"name": "synthetic-g vs oversample_matched-g (resnet)", "endpoint": "recall",
                    "decision": decision},
        "placebos": {"resnet": {"verdict": "no difference"}},
        "comparisons": {"class_weights vs baseline (resnet)": {
            "strategy": "class_weights", "architecture": "resnet",
            "decision": {"verdict": "no evidence of help", "reason": "exact p = 0.5 > alpha"},
        }},
    }  # fmt: skip
    cv = cv_record("class_weights-resnet", test, comparison)
    tags = {
        "data_hash": "0" * 32 + ".dir", "split_file": "data/splits/fold-final.csv",
        "split_hash": "1" * 32, "git_commit": "abc123", "register_run_id": "r" * 32,
        "train_run_id": "t" * 32,
    }  # fmt: skip
    card = model_card(
        RunSummary("final-class_weights-resnet-0", entry), params.register,
        {"train": {"viral": 3}, "val": {"viral": 1}}, params.base.classes, tags, cv,
    )  # fmt: skip
    for text in (
        "## Data", "data/splits/fold-final.csv", "## Cross-validated estimate", "f1_macro: 55.0 [41.0, 66.0]",
        "rare_auroc: 80.0 [60.0, 95.0]", "## Decision record",
        ("primary comparison `synthetic-g vs oversample_matched-g (resnet)` (recall): **cannot be "
        "shown** (+10.0 [-20.0, 40.0] points, exact p = 0.2500)"),
        "Placebo (baseline vs baseline, disjoint seeds): no difference.",
        "`class_weights vs baseline (resnet)`: no evidence of help (exact p = 0.5 > alpha)",
        "## Lineage", *tags.values(), "## Intended use", INTENDED_USE, "## Limitations",
    ):  # fmt: skip
        assert text in card, text
    assert "\n\n\n" not in card


def test_a_synthetic_run_logs_the_images_it_trained_on_as_a_dataset(tmp_path, monkeypatch):
    repo = _dvc_repo(tmp_path / "repo")
    kept = repo / "data" / "synthetic" / "fold-0" / "g1" / "kept"
    (kept / "covid").mkdir(parents=True)
    files = [kept / "a.png", kept / "b.png", kept / "covid" / "c.png"]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 10)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking = RunTracking(uri, {}, root=repo, splits_csv=Path("data/splits/fold-0.csv"))

    def logged(paths: list[Path]):
        tracker = TrainTracker(tracking, "synthetic_only-g1-resnet-0", {"fold": 0})
        labels = ["covid" if p.parent.name == "covid" else "viral" for p in paths]
        tracker.log_synthetic(repo, [str(p) for p in paths], "g1", labels)
        tracker.finish()
        run = MlflowClient(uri).get_run(tracker.run_id)
        return {d.dataset.name: d for d in run.inputs.dataset_inputs}, run

    found, run = logged(files)
    synth = found["data/synthetic/fold-0/g1/kept"]
    assert {t.key: t.value for t in synth.tags} == {"mlflow.data.context": "synthetic"}
    profile = json.loads(synth.dataset.profile)
    assert profile == {"images": 3, "generator": "g1", "covid_images": 1, "viral_images": 2}
    assert json.loads(synth.dataset.source)["path"] == "data/synthetic/fold-0/g1/kept"
    assert run.data.tags["split_file"] == "data/splits/fold-0.csv"  # not replaced by the set
    subset, _ = logged(files[:2])  # another subset, or changed bytes: another digest
    files[0].write_bytes(b"changed")
    changed, _ = logged(files)
    digests = {d["data/synthetic/fold-0/g1/kept"].dataset.digest for d in (found, changed)} | {
        subset["data/synthetic/fold-0/g1/kept"].dataset.digest
    }
    assert len(digests) == 3
