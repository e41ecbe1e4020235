"""The same guarantees through a real `mlflow server` (REST store) instead of a SQLite file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from lusaug.core.config import PROJ_ROOT
from lusaug.tracking.faults import CRASH_ENV
from tests.export.helpers import free_port
from tests.tracking.helpers import (
    NAME,
    build_registry,
    history_of,
    intents_of,
    race_two_promotions,
    run_cli,
    use_store,
)

pytestmark = pytest.mark.slow  # starts a tracking server (~10 s, ~300 MB)
SERVER_START_S = 90
SERVER_STOP_S = 30


@pytest.fixture
def server(tmp_path, monkeypatch):
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its workers go down with the process group
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("LUSAUG_USER", "tester")
    use_store(url)
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=SERVER_STOP_S)


def test_race_and_crash_repair_through_a_tracking_server(server, tmp_path):
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    build_registry()
    client = MlflowClient()
    winner = race_two_promotions(client, tmp_path, ("2", "3"))

    r = run_cli(["promote", winner, "--to", "production"], tmp_path, **{CRASH_ENV: "alias.moved"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert (
        intents_of(client)
        and str(client.get_registered_model(NAME).aliases["production"]) == winner
    )
    r = run_cli(["models", "--history"], tmp_path, COLUMNS="250")
    assert r.returncode == 0 and "(repaired)" in r.stdout, r.stderr
    assert intents_of(client) == []
    last = history_of(client)[-1]
    assert (last.kind, last.alias, last.version, last.repaired) == (
        "promotion", "production", winner, True,
    )  # fmt: skip
    r = run_cli(["rollback", "staging"], tmp_path)  # and the registry is usable at once
    assert r.returncode == 1 and "no previous holder" in r.stderr
