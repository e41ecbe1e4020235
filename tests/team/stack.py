"""Session-wide shared services (PostgreSQL, S3 stand-in, MLflow tracking server) and the
team's one micro repro against them, which tests/team reads and tests/cluster compares with.

Each fixture skips with the reason when its service cannot run here, and stops what it started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.pipelines.helpers import micro_repo
from tests.team.helpers import git_commit_all, run, team_env
from tests.team.services import S3, MlflowServer, Postgres, start_mlflow, start_postgres, start_s3

MLFLOW_DB = "mlflow"
MLFLOW_BUCKET = "mlflow"
DVC_BUCKET = "dvc"
TEAM_GENERATOR = "ddpm_all"  # the one generator of the team's micro run
# The services are under test (tests/team, tests/cluster), not the strategies (tests/pipelines
# runs every kind): two plain strategies, a tuned one and a synthetic one log to every experiment
# (generators, tuning, classifiers) with every kind of input. One hold-out fold (+ the final
# split) instead of micro's two: 18 DVC items instead of 24.
TEAM_STRATEGIES = [
    "baseline",
    "class_weights",
    "class_weights_tuned",
    f"synthetic-{TEAM_GENERATOR}",
]


@pytest.fixture(scope="session")
def postgres():
    pg = start_postgres()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def s3():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request otherwise
    server = start_s3()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class TrackingServer:
    """The team's MLflow server and what it stores into."""

    url: str
    backend_uri: str  # PostgreSQL database of runs, experiments, registry
    artifacts: str  # S3 location of every artifact
    server: MlflowServer
    postgres: Postgres
    s3: S3


@pytest.fixture(scope="session")
def tracking_server(postgres, s3, tmp_path_factory):
    backend = postgres.create_database(MLFLOW_DB)
    artifacts = f"{s3.create_bucket(MLFLOW_BUCKET)}/artifacts"
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    server = start_mlflow(backend, artifacts, s3.env, log)
    try:
        yield TrackingServer(server.url, backend, artifacts, server, postgres, s3)
    finally:
        server.stop()


def tracking_server_on(postgres: Postgres, s3: S3, name: str, log: Path) -> TrackingServer:
    """A tracking server of its own (database and bucket ``name``) on the shared services."""
    backend = postgres.create_database(name)
    artifacts = f"{s3.create_bucket(name)}/artifacts"
    server = start_mlflow(backend, artifacts, s3.env, log)
    return TrackingServer(server.url, backend, artifacts, server, postgres, s3)


def team_params(repo: Path, **tune: str) -> None:
    """The team's smaller matrix in ``repo``'s params.yaml (``tune`` keys overridden)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["generate"]["enabled"] = [TEAM_GENERATOR]
    params["train"]["strategies"] = TEAM_STRATEGIES
    # one seed for every setting (no placebo, no matched control: tests/pipelines runs those);
    # the primary must be a pair of the team's own matrix
    params["train"]["overrides"] = []
    params["evaluate"]["primary"] = {
        "strategy": f"synthetic-{TEAM_GENERATOR}",
        "control": "baseline",
        "architecture": "resnet",
        "endpoint": "recall",
    }
    params["split"].update(scheme="holdout", folds=[0], items=[0, "final"])
    params["tune"].update(tune)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def add_s3_remote(repo: Path, s3: S3, env: dict[str, str], prefix: str = "store") -> None:
    """The default DVC remote: ``s3://dvc/<prefix>`` on the S3 stand-in."""
    if not any(b["Name"] == DVC_BUCKET for b in s3.client().list_buckets()["Buckets"]):
        s3.create_bucket(DVC_BUCKET)
    run(["dvc", "remote", "add", "-d", "s3", f"s3://{DVC_BUCKET}/{prefix}"], repo, env)
    run(["dvc", "remote", "modify", "s3", "endpointurl", s3.endpoint], repo, env)


@dataclass
class TeamRepro:
    """The team's micro repo after one ``dvc repro`` against the tracking server. ``lock`` and
    ``metrics`` are as that repro left them (the team tests change the repo afterwards)."""

    repo: Path
    env: dict[str, str]
    server: TrackingServer
    local_remote: Path
    root: Path
    lock: dict
    metrics: dict[str, bytes]


@pytest.fixture(scope="session")
def team_repro(tracking_server, tmp_path_factory) -> TeamRepro:
    """The micro repo with both DVC remotes, reproduced against the team's MLflow server."""
    root = tmp_path_factory.mktemp("team")
    (root / "repo").mkdir()
    repo = micro_repo(root / "repo")
    team_params(repo)
    env = team_env(tracking_server.url)
    add_s3_remote(repo, tracking_server.s3, env)
    local = root / "dvc-local-remote"
    run(["dvc", "remote", "add", "local", str(local)], repo, env)
    git_commit_all(repo, "micro profile, phantom data, DVC remotes")
    run(["dvc", "repro"], repo, env)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    metrics = {
        rel: (repo / rel).read_bytes()
        for rel in ("metrics/test.json", "metrics/comparison.json", "metrics/selection.json")
    }
    return TeamRepro(repo, env, tracking_server, local, root, lock, metrics)
