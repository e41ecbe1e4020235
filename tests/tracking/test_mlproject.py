"""MLproject: entry points run the stage scripts through `mlflow run` (register -> export)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from lusaug.config import PROJ_ROOT
from tests.export.helpers import make_splits, make_validation_runs


def test_mlproject_lists_every_dvc_stage():
    """One entry point per DVC stage (same name), plus `main`."""
    project = yaml.safe_load((PROJ_ROOT / "MLproject").read_text())
    stages = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"]
    entry = set(project["entry_points"])
    assert "main" in entry and "dvc repro" in project["entry_points"]["main"]["command"]
    for name, stage in stages.items():
        script = Path(stage.get("cmd", stage.get("do", {}).get("cmd", "")).split()[1]).stem
        assert script in entry, f"dvc stage {name} ({script}.py) has no MLproject entry point"


@pytest.mark.slow
def test_mlflow_run_register_and_export(tmp_path):
    """`mlflow run . -e register` then `-e export --env-manager local` on micro-sized inputs."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("MLproject", "python_env.yaml", "params.yaml"):
        shutil.copy(PROJ_ROOT / name, proj / name)
    shutil.copytree(PROJ_ROOT / "pipelines", proj / "pipelines")
    make_splits(proj)
    make_validation_runs(
        proj, {"class_weights-resnet-0": {"f1": 0.7}, "baseline-resnet-0": {"f1": 0.6}}
    )
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    bindir = str(Path(sys.executable).parent)
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")
    }
    env.update(MLFLOW_TRACKING_URI=uri, PATH=bindir + os.pathsep + os.environ["PATH"])
    for entry in ("register", "export"):
        proc = subprocess.run(
            [str(Path(bindir) / "mlflow"), "run", ".", "-e", entry, "--env-manager", "local"],
            cwd=proj,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    mv = MlflowClient(tracking_uri=uri).get_model_version_by_alias("lus-classifier", "candidate")
    assert mv.tags["run_name"] == "class_weights-resnet-0" and mv.tags["onnx_parity"] == "passed"
    assert (proj / "models" / "onnx" / "classifier.onnx").exists()
    assert (proj / "reports" / "onnx_parity.json").exists()
