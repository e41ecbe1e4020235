"""pipelines/{encoder,base_model,generate,filter}.py run standalone (subprocess) on a fixture."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lusaug.core.config import PROJ_ROOT
from tests.generators.helpers import make_frames_fixture
from tests.helpers.matrix import set_strategies

G = "ti_object"  # needs the base: all four scripts in a chain


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
    set_strategies(params, ["baseline", f"synthetic-{G}"])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = dict(
        os.environ,
        LUSAUG_PARAMS=str(root / "params.yaml"),
        HF_HUB_OFFLINE="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
    )
    return root, env


def test_encoder_base_generate_filter_scripts(workspace):
    root, env = workspace
    common = ["data/splits.csv", "metrics/validation.json"]
    fold = ["--fold", "0"]
    run("encoder.py", *common, "models/encoder", "metrics/encoder.json", *fold, cwd=root, env=env)
    base = run(
        "base_model.py",
        *common,
        "models/base_model",
        "--checkpoints",
        "models/checkpoints/base_model",
        "--resume",
        *fold,
        cwd=root,
        env=env,
    )
    assert "base_model:" in base.stdout
    gen = run(
        "generate.py",
        G,
        *common,
        "models/base_model",
        f"models/generators/{G}",
        f"data/synthetic/{G}/candidates",
        "--checkpoints",
        f"models/checkpoints/{G}",
        "--resume",
        *fold,
        cwd=root,
        env=env,
    )
    assert f"generate@{G}" in gen.stdout
    flt = run(
        "filter.py",
        G,
        "data/splits.csv",
        f"models/generators/{G}",
        f"data/synthetic/{G}/candidates",
        "models/encoder",
        f"data/synthetic/{G}/kept",
        f"data/synthetic/{G}/filter.csv",
        f"metrics/synthetic_{G}.json",
        f"plots/synthetic/{G}",
        *fold,
        cwd=root,
        env=env,
    )
    assert f"filter@{G}" in flt.stdout
    m = json.loads((root / f"metrics/synthetic_{G}.json").read_text())
    assert m["kept"] == len(list((root / f"data/synthetic/{G}/kept").glob("*.png")))
    limit = yaml.safe_load((root / "params.yaml").read_text())["filter"]["max_memorisation_rate"]
    assert m["fold"] == 0 and m["blocked"] == (m["memorisation"]["rate"] > limit)
    assert (root / "models/base_model/model_index.json").exists()
    assert (root / f"plots/synthetic/{G}/beside_real.png").exists()
    assert (root / "models/checkpoints/.gitignore").read_text() == "*\n"


def test_a_text_generator_without_a_base_fails_with_instructions(workspace):
    root, env = workspace
    proc = run(
        "generate.py",
        "ti_style",
        "data/splits.csv",
        "metrics/validation.json",
        "models/no_base",
        "models/generators/ti_style",
        "data/synthetic/ti_style/candidates",
        cwd=root,
        env=env,
        ok=False,
    )
    assert proc.returncode != 0
    assert "generate.base" in proc.stderr and "base_model" in proc.stderr
    assert not (root / "models/generators/ti_style").exists()


def test_filter_script_usage_error():
    import runpy

    main = runpy.run_path(str(PROJ_ROOT / "pipelines" / "filter.py"))["main"]
    with pytest.raises(SystemExit):
        main([G])
