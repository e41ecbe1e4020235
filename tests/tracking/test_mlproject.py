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

from lusaug.core.config import PROJ_ROOT
from lusaug.data.manifest import read_manifest, write_manifest
from lusaug.data.split import relocate
from tests.export.helpers import make_splits, make_validation_runs


def test_mlproject_runs_every_dvc_stage_with_its_argv():
    """One entry point per DVC stage (same name), plus `main`; with its defaults (fold 0, the
    first enabled generator) an entry point runs exactly the command dvc.yaml runs."""
    project = yaml.safe_load((PROJ_ROOT / "MLproject").read_text())["entry_points"]
    stages = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"]
    assert "dvc repro" in project["main"]["command"]
    for name, stage in stages.items():
        cmd = " ".join(stage.get("do", stage)["cmd"].split())
        assert name in project, f"dvc stage {name} has no MLproject entry point"
        entry = project[name]
        values = {k: str(v.get("default", "")) for k, v in entry["parameters"].items()}
        command = " ".join(entry["command"].split())
        for key, value in values.items():
            command = command.replace(f"{{{key}}}", value)
        expected = cmd.replace("${item}", values.get("fold", ""))
        expected = expected.replace("${item.fold}", values.get("fold", ""))
        expected = expected.replace("${item.generator}", values.get("generator", ""))
        assert command.endswith(expected), (name, command, expected)


@pytest.mark.slow
def test_mlflow_run_register_and_export(tmp_path):
    """`mlflow run . -e register` then `-e export --env-manager local` on micro-sized inputs."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("MLproject", "python_env.yaml", "params.yaml"):
        shutil.copy(PROJ_ROOT / name, proj / name)
    shutil.copytree(PROJ_ROOT / "pipelines", proj / "pipelines")
    splits = read_manifest(make_splits(proj))
    write_manifest(relocate(splits), proj / "data" / "splits" / "fold-final.csv")
    runs = make_validation_runs(proj, {"class_weights-resnet-0": {"f1": 0.7}})
    candidate = proj / "models" / "final" / "candidate.json"
    candidate.parent.mkdir(parents=True, exist_ok=True)
    candidate.write_text(runs.read_text())  # the final stage's output has this layout
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
