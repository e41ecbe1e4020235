"""Registry on a temporary SQLite store: register -> export -> promote (gates) -> rollback.

The real path: a checkpoint becomes an ONNX pyfunc version (lusaug.stages.register), the export
stage tags its parity, promotions follow the alias order with gates, every move lands in the
append-only history.
"""

from __future__ import annotations

import json
from dataclasses import replace

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.core.mlflow_store import setup_experiment
from lusaug.export.model_input import FrameSpec, encode_png_base64
from lusaug.export.model_source import resolve_model
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.stages import export, register
from lusaug.tracking.errors import PromotionRefused, RegistryError
from lusaug.tracking.moves import history
from lusaug.tracking.promotion import promote, rollback
from lusaug.tracking.versions import list_versions
from tests.export.helpers import frame, make_splits, make_validation_runs
from tests.tracking.helpers import NAME, snapshot

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


def _register_file(repo, params, runs_file, tag: str) -> dict:
    """The register stage on ``runs_file``, with the frames stage's trimming of GEOMETRY."""
    regfile = repo / tag / "registered.json"
    paths = register.RegisterPaths(runs_file, repo / "data" / "splits.csv", regfile)
    frames = replace(params.frames, **GEOMETRY)
    p = params
    return register.run(paths, p.base, frames, p.register, p.export, p.mlflow, root=repo / tag)


def _register(repo, params, runs: dict, tag: str) -> dict:
    vr = make_validation_runs(repo / tag, runs)
    return {**_register_file(repo, params, vr, tag), "_tag": tag}


def _export(repo, params, reg: dict) -> dict:
    regfile = repo / f"registered-{reg['version']}.json"
    regfile.write_text(json.dumps(reg))
    paths = export.ExportPaths(
        regfile,
        repo / "data" / "splits.csv",
        repo / "models" / "onnx",
        repo / "reports" / "onnx_parity.json",
    )
    return export.run(paths, params.export, params.mlflow, root=repo / reg["_tag"])


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
    assert reg["value"] == 0.70 and reg["interval"] == [0.64, 0.76] and not reg["reused"]
    client = MlflowClient()
    mv = client.get_model_version_by_alias(NAME, "candidate")
    assert str(mv.version) == "1"
    t = mv.tags
    assert t["strategy"] == "class_weights" and t["architecture"] == "resnet"
    assert float(t["val_f1_macro"]) == 0.70 and float(t["val_f1_macro_lo"]) == 0.64
    assert t["onnx_parity"] == "pending" and t["git_commit"] and t["data_hash"]
    assert t["onnx_sha256"] == reg["onnx_sha256"] and t["export_key"]
    for section in (
        "## Data",
        "## Metrics",
        "## Promotion history",
        "lusaug models --history",
        "MLflow UI's own alias and promote buttons bypass lusaug's gates",
        "## Intended use",
        "## Limitations",
        "0.700 [0.640, 0.760]",
    ):
        assert section in mv.description
    # Giving it `candidate` is the first entry of the model's history.
    (entry,) = history(client, NAME)
    assert (entry.kind, entry.alias, entry.version, entry.previous_holder) == (
        "register",
        "candidate",
        "1",
        None,
    )
    assert entry.reason == "registered class_weights-resnet-0" and entry.who == "tester"
    # The registered artifact is the ONNX pyfunc: it answers base64 images.
    out = mlflow.pyfunc.load_model(f"models:/{NAME}@candidate").predict(
        [encode_png_base64(frame(0, np.random.default_rng(0)))]
    )
    assert out[0]["label"] in params.base.classes
    # Size, normalisation and border trimming travel in the registered ONNX's metadata.
    info = OnnxClassifier(resolve_model(f"models:/{NAME}@candidate", repo / "dl").path).info
    assert info.frame_spec == FrameSpec(32, auto_crop_black=True, black_threshold=12)
    assert info.metadata["run_name"] == "class_weights-resnet-0"
    # Same checkpoint again: the version is reused, not duplicated, and no alias moves.
    again = _register_file(repo, params, repo / "a" / "metrics" / "validation_runs.json", "a")
    assert again["reused"] and again["version"] == "1"
    assert len(client.search_model_versions(f"name='{NAME}'")) == 1
    assert len(history(client, NAME)) == 1


def test_promote_gates_order_history_and_rollback(repo, params):
    cfg = params.register
    client = MlflowClient()
    good = _register(repo, params, {"cw-resnet-0": {"f1": 0.70, "ci": [0.64, 0.76]}}, "a")
    with pytest.raises(PromotionRefused, match="parity is 'pending'"):
        promote(NAME, good["version"], "staging", cfg)

    report = _export(repo, params, good)  # the export stage: parity on the test frames
    assert report["parity"]["passed"] and (repo / "models" / "onnx" / "classifier.onnx").exists()
    saved = json.loads((repo / "reports" / "onnx_parity.json").read_text())
    assert saved["registry"]["version"] == "1"
    assert client.get_model_version(NAME, "1").tags["onnx_parity"] == "passed"

    with pytest.raises(PromotionRefused, match="has not held staging"):
        promote(NAME, "1", "production", cfg)  # candidate -> production skips staging
    promote(NAME, "1", "staging", cfg)
    res = promote(NAME, "1", "production", cfg)
    assert res.previous is None and res.entry.gates[0].name == "alias_order"
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"

    worse = _register(
        repo, params, {"bl-vit-0": {"f1": 0.50, "ci": [0.45, 0.55], "arch": "vit"}}, "b"
    )
    _export(repo, params, worse)
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == "2"
    before = snapshot(client)
    with pytest.raises(PromotionRefused, match="worse beyond the holder's interval"):
        promote(NAME, "2", "production", cfg)
    assert snapshot(client) == before  # a refusal changes nothing
    with pytest.raises(RegistryError, match="--reason"):
        promote(NAME, "2", "production", cfg, force=True)
    with pytest.raises(RegistryError, match="must be one of"):
        promote(NAME, "2", "prod", cfg)

    forced = promote(NAME, "2", "production", cfg, force=True, reason="ViT for latency test")
    assert forced.forced
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "2"
    e = history(client, NAME)[-1]
    assert (e.kind, e.alias, e.version, e.previous_holder) == ("promotion", "production", "2", "1")
    assert e.from_aliases == ("candidate",) and e.reason == "ViT for latency test"
    assert e.who == "tester" and e.forced and e.when
    failed = {g.name for g in e.gates if not g.passed}
    assert failed == {"alias_order", "val_f1_macro"}

    back = rollback(NAME, "production", "ViT was slower")
    assert back.version == "1" and back.previous == "2"
    assert str(client.get_model_version_by_alias(NAME, "production").version) == "1"
    e = history(client, NAME)[-1]
    assert (e.kind, e.version, e.previous_holder) == ("rollback", "1", "2")
    assert "ViT was slower" in e.reason
    with pytest.raises(RegistryError, match="no previous holder"):
        rollback(NAME, "production")

    kinds = [(e.kind, e.alias, e.version) for e in history(client, NAME)]
    assert kinds == [
        ("register", "candidate", "1"),
        ("promotion", "staging", "1"),
        ("promotion", "production", "1"),
        ("register", "candidate", "2"),
        ("promotion", "production", "2"),
        ("rollback", "production", "1"),
    ]
    rows = {r["version"]: r for r in list_versions(NAME, cfg.gate_metric)}
    assert rows["1"]["aliases"] == ["production", "staging"]
    assert rows["2"]["aliases"] == ["candidate"]
    assert rows["2"]["val_f1_macro"] == 0.5 and rows["1"]["onnx_parity"] == "passed"


def test_promotion_is_all_or_nothing(repo, params):
    """A final check that fails after the intent is written undoes every change."""
    cfg = params.register
    client = MlflowClient()
    _export(repo, params, _register(repo, params, {"cw-resnet-0": {"f1": 0.70}}, "a"))
    promote(NAME, "1", "staging", cfg)
    _export(repo, params, _register(repo, params, {"cw-resnet-1": {"f1": 0.72, "seed": 1}}, "b"))
    before = snapshot(client)
    seen = []

    def exploding_check(entry):
        seen.append(snapshot(client))  # the intent is in place when final checks run
        raise RuntimeError("deployment target unreachable")

    with pytest.raises(RuntimeError, match="unreachable"):
        promote(NAME, "2", "staging", cfg, final_checks=[exploding_check])
    assert any(k.startswith("lusaug.intent.") for k in seen[0]["model_tags"])
    assert snapshot(client) == before
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "1"
    promote(NAME, "2", "staging", cfg)  # and it works once the check passes
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == "2"


def test_cli_promote_refusal_and_models_table(repo, params, monkeypatch):
    import shutil

    from lusaug.core.config import PROJ_ROOT

    shutil.copy(PROJ_ROOT / "params.yaml", repo / "params.yaml")
    reg = _register(repo, params, {"cw-resnet-0": {"f1": 0.70}}, "a")
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps the table at 80 columns otherwise
    runner = CliRunner()
    r = runner.invoke(app, ["promote", reg["version"], "--to", "staging"])
    assert r.exit_code == 1 and "parity" in r.output
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "candidate" in r.output and "cw-resnet-0" in r.output
    assert "1 alias move recorded; `lusaug models --history` lists them" in r.output
    # An 80-column terminal (or a pipe): the table fits, wrapping cells rather than cutting them.
    monkeypatch.setenv("COLUMNS", "80")
    for args in (["models"], ["models", "--history"]):
        r = runner.invoke(app, args)
        assert r.exit_code == 0 and "…" not in r.output, r.output
        assert max(len(line) for line in r.output.splitlines()) <= 80, r.output
