"""Registry on a temporary SQLite store: register -> export -> promote (gates) -> rollback."""

from __future__ import annotations

import json

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.export.registered import export_registered
from lusaug.serving.preprocess import FrameSpec
from lusaug.serving.session import OnnxClassifier, resolve_model
from lusaug.mlflow_store import setup_experiment
from lusaug.tracking.registry import (
    PromotionRefused,
    RegistryError,
    list_versions,
    promote,
    register_winner,
    rollback,
)
from tests.export.helpers import make_splits, make_validation_runs

NAME = "lus-classifier"
GEOMETRY = {"auto_crop_black": True, "black_threshold": 12}  # the frames stage's trimming


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A temporary 'repository': MLflow SQLite store, data/splits.csv, cwd inside it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LUSAUG_USER", "tester")
    monkeypatch.chdir(tmp_path)
    setup_experiment("classifiers", root=tmp_path)
    make_splits(tmp_path)
    return tmp_path


def _register(repo, params, runs: dict, tag: str) -> dict:
    vr = make_validation_runs(repo / tag, runs)
    return register_winner(
        vr,
        params.register,
        params.export,
        root=repo / tag,
        splits_csv=repo / "data" / "splits.csv",
        frame_geometry=GEOMETRY,
    )


def _export(repo, params, reg: dict) -> dict:
    regfile = repo / f"registered-{reg['version']}.json"
    regfile.write_text(json.dumps(reg))
    return export_registered(
        regfile,
        repo / "data" / "splits.csv",
        repo / "models" / "onnx",
        repo / "reports" / "onnx_parity.json",
        params.export,
        root=repo / reg["_tag"],
    )


def _state(client: MlflowClient) -> dict:
    """Everything a promotion may touch: aliases, every version's tags, the model's tags."""
    rm = client.get_registered_model(NAME)
    versions = {mv.version: dict(mv.tags) for mv in client.search_model_versions(f"name='{NAME}'")}
    return {"aliases": dict(rm.aliases), "model_tags": dict(rm.tags), "versions": versions}


def test_register_selects_by_validation_metric(repo, params):
    runs = {
        "baseline-resnet-0": {"f1": 0.60, "ci": [0.55, 0.65], "strategy": "baseline"},
        "class_weights-resnet-0": {
            "f1": 0.70,
            "ci": [0.64, 0.76],
            "strategy": "class_weights",
            "acc": 0.9,
        },
    }
    reg = _register(repo, params, runs, "a")
    assert reg["run_name"] == "class_weights-resnet-0" and reg["version"] == "1"
    client = MlflowClient()
    mv = client.get_model_version_by_alias(NAME, "candidate")
    assert str(mv.version) == "1"
    t = mv.tags
    assert t["strategy"] == "class_weights" and t["architecture"] == "resnet"
    assert float(t["val_macro_f1"]) == 0.70 and float(t["val_macro_f1_lo"]) == 0.64
    assert t["onnx_parity"] == "pending" and t["git_commit"] and t["data_hash"]
    for section in (
        "## Data",
        "## Metrics",
        "## Intended use",
        "## Limitations",
        "0.700 [0.640, 0.760]",
    ):
        assert section in mv.description
    # The registered artifact is the ONNX pyfunc: it answers base64 images.
    import numpy as np

    from lusaug.serving.preprocess import encode_png_base64
    from tests.export.helpers import frame

    out = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate").predict(
        [encode_png_base64(frame(0, np.random.default_rng(0)))]
    )
    assert out[0]["label"] in params.base.classes
    # Size, normalisation and border trimming travel in the registered ONNX's metadata.
    info = OnnxClassifier(resolve_model(f"models:/{NAME}@candidate", repo / "dl").path).info
    assert info.frame_spec == FrameSpec(32, auto_crop_black=True, black_threshold=12)
    assert info.metadata["run_name"] == "class_weights-resnet-0"
    # Same checkpoint again: the version is reused, not duplicated.
    again = register_winner(
        repo / "a" / "metrics" / "validation_runs.json",
        params.register,
        params.export,
        root=repo / "a",
        frame_geometry=GEOMETRY,
    )
    assert again["reused"] and again["version"] == "1"
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1


def test_promote_gates_audit_and_rollback(repo, params):
    cfg = params.register
    client = MlflowClient()
    good = _register(repo, params, {"cw-resnet-0": {"f1": 0.70, "ci": [0.64, 0.76]}}, "a")
    good["_tag"] = "a"
    with pytest.raises(PromotionRefused, match="parity is 'pending'"):
        promote(NAME, good["version"], "production", cfg)

    report = _export(repo, params, good)  # the export stage: parity on the test frames
    assert report["parity"]["passed"] and (repo / "models" / "onnx" / "classifier.onnx").exists()
    assert (
        json.loads((repo / "reports" / "onnx_parity.json").read_text())["registry"]["version"]
        == "1"
    )
    assert client.get_model_version(NAME, "1").tags["onnx_parity"] == "passed"

    promote(NAME, "1", "staging", cfg)
    res = promote(NAME, "1", "production", cfg)
    assert (
        res.previous is None
        and str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    )

    worse = _register(
        repo, params, {"bl-vit-0": {"f1": 0.50, "ci": [0.45, 0.55], "arch": "vit"}}, "b"
    )
    worse["_tag"] = "b"
    _export(repo, params, worse)
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "2"
    before = _state(client)
    with pytest.raises(PromotionRefused, match="worse beyond the holder's interval"):
        promote(NAME, "2", "production", cfg)
    assert _state(client) == before  # a refusal changes nothing
    with pytest.raises(RegistryError, match="--reason"):
        promote(NAME, "2", "production", cfg, force=True)
    with pytest.raises(RegistryError, match="must be one of"):
        promote(NAME, "2", "prod", cfg)

    forced = promote(NAME, "2", "production", cfg, force=True, reason="ViT for latency test")
    assert (
        forced.forced and str(client.get_model_version_by_alias(NAME, "production").version) == "2"
    )
    audit = {
        k.split(".", 2)[2]: v
        for k, v in client.get_model_version(NAME, "2").tags.items()
        if k.startswith("audit.production.")
    }
    assert audit["to"] == "production" and audit["from"] == "candidate"
    assert audit["previous_holder"] == "1" and audit["reason"] == "ViT for latency test"
    assert audit["who"] == "tester" and audit["forced"] == "true" and audit["when"]
    assert "FAIL" in audit["gates"]

    back = rollback(NAME, "production", "ViT was slower")
    assert back.version == "1" and back.previous == "2"
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    v1 = client.get_model_version(NAME, "1").tags
    assert (
        v1["audit.production.kind"] == "rollback" and v1["audit.production.previous_holder"] == "2"
    )
    assert "ViT was slower" in v1["audit.production.reason"]
    with pytest.raises(RegistryError, match="no previous holder"):
        rollback(NAME, "production")

    rows = {r["version"]: r for r in list_versions(NAME, cfg.gate_metric)}
    assert rows["1"]["aliases"] == ["production", "staging"] and rows["2"]["aliases"] == [
        "candidate"
    ]
    assert rows["2"]["val_macro_f1"] == 0.5 and rows["1"]["onnx_parity"] == "passed"


def test_promotion_is_all_or_nothing(repo, params):
    """A check that fails after the audit tags are written undoes every change."""
    cfg = params.register
    client = MlflowClient()
    reg = _register(repo, params, {"cw-resnet-0": {"f1": 0.70}}, "a")
    reg["_tag"] = "a"
    _export(repo, params, reg)
    promote(NAME, "1", "production", cfg)
    reg2 = _register(repo, params, {"cw-resnet-1": {"f1": 0.72, "seed": 1}}, "b")
    reg2["_tag"] = "b"
    _export(repo, params, reg2)
    before = _state(client)

    def exploding_check(*_):
        raise RuntimeError("deployment target unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        promote(NAME, "2", "production", cfg, final_checks=[exploding_check])
    assert _state(client) == before
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    promote(NAME, "2", "production", cfg)  # and it works once the check passes
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "2"


def test_cli_promote_refusal_and_models_table(repo, params, monkeypatch):
    import shutil

    from lusaug.config import PROJ_ROOT

    shutil.copy(PROJ_ROOT / "params.yaml", repo / "params.yaml")
    reg = _register(repo, params, {"cw-resnet-0": {"f1": 0.70}}, "a")
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table at 80 columns otherwise
    runner = CliRunner()
    r = runner.invoke(app, ["promote", reg["version"], "--to", "production"])
    assert r.exit_code == 1 and "parity" in r.output
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "candidate" in r.output and "cw-resnet-0" in r.output
