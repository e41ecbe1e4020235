"""Session-wide shared services (PostgreSQL, S3 stand-in, MLflow tracking server).

Each fixture skips with the reason when its service cannot run here, and stops what it started.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from tests.team.services import S3, MlflowServer, Postgres, start_mlflow, start_postgres, start_s3

MLFLOW_DB = "mlflow"
MLFLOW_BUCKET = "mlflow"


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
