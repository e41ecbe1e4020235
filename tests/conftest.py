"""Shared fixtures: the real params.yaml, shrunk to the micro profile; the real POCUS folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from lusaug.core.config import PROJ_ROOT, Params, deep_merge, params_from_dict

# Session services and the team's micro repro, shared by tests/team and tests/cluster: defined
# once here, so a session starts one of each (a fixture imported into two conftests is two).
from tests.team.stack import postgres, s3, team_repro, tracking_server  # noqa: F401

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _load_yaml(path: Path) -> dict:
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


@pytest.fixture(autouse=True)
def _isolated_mlflow_env(monkeypatch):
    """mlflow.set_experiment() exports MLFLOW_EXPERIMENT_ID into os.environ: undo it after every
    test so neither later tests nor their subprocesses (`mlflow run`, dvc) inherit another
    store's experiment or run id."""
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)


@pytest.fixture(scope="session")
def params_dict() -> dict:
    """The committed params.yaml as a dict (the default profile)."""
    return _load_yaml(PROJ_ROOT / "params.yaml")


@pytest.fixture(scope="session")
def params(params_dict) -> Params:
    return params_from_dict(params_dict)


@pytest.fixture(scope="session")
def micro_params_dict(params_dict) -> dict:
    """params.yaml with the micro profile applied: 32 px, a handful of patients, tiny nets."""
    merged = deep_merge(params_dict, _load_yaml(PROJ_ROOT / "profiles" / "micro.yaml"))
    merged["base"]["profile"] = "micro"
    return merged


@pytest.fixture(scope="session")
def micro_params(micro_params_dict) -> Params:
    return params_from_dict(micro_params_dict)


@pytest.fixture(scope="session")
def pocus_dir() -> Path:
    """The real POCUS folder (LUSAUG_POCUS_DIR, default ../shared/pocus); skip when absent."""
    path = Path(os.environ.get("LUSAUG_POCUS_DIR", PROJ_ROOT.parent / "shared" / "pocus"))
    if not (path / "pocus_videos").is_dir():
        pytest.skip(f"real POCUS data not found at {path} (set LUSAUG_POCUS_DIR to run this test)")
    return path


# --- pytest-xdist (make test: -n 2 --dist loadfile) ------------------------------------------
# A test module is one unit of work (its end-to-end repro is a module fixture, made once). Modules
# that read one session fixture run in one unit too: a session fixture is made once per worker,
# and the team's micro repro takes minutes. The longest units start first, so that the two
# workers end together instead of one starting the cluster test when the other is done.
SHARED_UNITS = {
    "tests/cluster/test_cluster_repro.py": "tests/team",  # both read team_repro
    "tests/team/test_team_stack.py": "tests/team",
}
LONGEST_FIRST = [
    "tests/team",
    "tests/pipelines/test_dvc_repro.py",
    "tests/pipelines/test_pocus_repro.py",
    "tests/data/test_real_pocus_pipeline.py",
]


def pytest_configure(config):
    """Under xdist two workers share the cores: one thread each (torch and the BLAS of this
    process and of the stages it starts), as oversubscribed OpenMP threads spin and slow both."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")
        import torch

        torch.set_num_threads(1)


def _unit(nodeid: str) -> str:
    path = nodeid.split("::", 1)[0]
    return SHARED_UNITS.get(path, path)


def pytest_collection_modifyitems(config, items):
    rank = {unit: k for k, unit in enumerate(LONGEST_FIRST)}
    order = {id(item): k for k, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(_unit(item.nodeid), len(rank)), order[id(item)]))


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    if config.getoption("dist") != "loadfile":
        return None  # xdist's own scheduler for any other mode

    class SharedUnits(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False  # keep the longest-first collection order
    return SharedUnits(config, log)
