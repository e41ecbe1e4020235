"""pipelines/{encoder,generate,filter}.py run standalone (subprocess) on a tiny fixture."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lusaug.config import PROJ_ROOT
from tests.generators.helpers import make_frames_fixture

G = "ddpm_3mixed"


def run(script: str, *args: str, cwd: Path, env: dict, ok: bool = True):
    proc = subprocess.run(
        [sys.executable, str(PROJ_ROOT / "pipelines" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if ok and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, micro_params_dict):
    root = tmp_path_factory.mktemp("pipe")
    make_frames_fixture(root, size=micro_params_dict["base"]["image_size"])
    params = copy.deepcopy(micro_params_dict)
    params["generate"]["enabled"] = [G]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(
        os.environ,
        LUSAUG_PARAMS=str(root / "params.yaml"),
        HF_HUB_OFFLINE="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
    )
    return root, env


def test_encoder_generate_filter_scripts(workspace):
    root, env = workspace
    common = ["data/splits.csv", "metrics/validation.json"]
    run("encoder.py", *common, "models/encoder", "metrics/encoder.json", cwd=root, env=env)
    gen = run(
        "generate.py",
        G,
        *common,
        f"models/generators/{G}",
        f"data/synthetic/{G}/candidates",
        "--checkpoints",
        f"models/checkpoints/{G}",
        "--resume",
        cwd=root,
        env=env,
    )
    assert f"generate@{G}" in gen.stdout
    flt = run(
        "filter.py",
        G,
        *common,
        f"models/generators/{G}",
        f"data/synthetic/{G}/candidates",
        "models/encoder",
        f"data/synthetic/{G}/kept",
        f"data/synthetic/{G}/filter.csv",
        f"metrics/synthetic_{G}.json",
        f"plots/synthetic/{G}",
        cwd=root,
        env=env,
    )
    assert f"filter@{G}" in flt.stdout
    m = json.loads((root / f"metrics/synthetic_{G}.json").read_text())
    assert m["kept"] == len(list((root / f"data/synthetic/{G}/kept").glob("*.png")))
    assert (root / f"models/generators/{G}/model_index.json").exists()
    assert (root / f"plots/synthetic/{G}/filter_scatter.png").exists()
    assert (root / "models/checkpoints/.gitignore").read_text() == "*\n"


def test_enabling_ti_without_a_checkpoint_fails_with_instructions(workspace):
    root, env = workspace
    proc = run(
        "generate.py",
        "ti_object",
        "data/splits.csv",
        "metrics/validation.json",
        "models/generators/ti_object",
        "data/synthetic/ti_object/candidates",
        cwd=root,
        env=env,
        ok=False,
    )
    assert proc.returncode != 0
    assert "generate.ti.checkpoint" in proc.stderr and "generate.enabled" in proc.stderr
    assert not (root / "models/generators/ti_object").exists()


def test_filter_script_usage_error():
    import runpy

    main = runpy.run_path(str(PROJ_ROOT / "pipelines" / "filter.py"))["main"]
    with pytest.raises(SystemExit, match="usage"):
        main([G])
