"""A real Dask scheduler and worker processes on 127.0.0.1, beside the team stack.

The team services (PostgreSQL, moto's S3, ``mlflow server``) and the team's micro repro are the
session fixtures of tests/team/stack.py (registered once in tests/conftest.py). Each worker is a ``dask worker`` process
with its own working and local directory, started without a nanny so a ``kill -9`` leaves it dead
(a machine that went away), and the tests can start another.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.team.services import free_port

START_S = 120  # a cold dask process on 2 busy cores imports for a while


@dataclass
class Worker:
    name: str
    address: str
    proc: subprocess.Popen
    folder: Path

    def kill(self) -> None:
        """``kill -9`` of the worker process only (its guarded items must die with it)."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class DaskCluster:
    scheduler: str
    folder: Path
    env: dict[str, str]
    procs: list[subprocess.Popen] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, name: str) -> Worker:
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        dask = Path(sys.executable).with_name("dask")
        log = (folder / "worker.log").open("w")
        proc = subprocess.Popen(
            [str(dask), "worker", self.scheduler, "--name", name, "--nthreads", "1",
             "--no-nanny", "--host", "127.0.0.1", "--worker-port", str(port),
             "--local-directory", str(folder / "local"), "--no-dashboard"],
            cwd=folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        worker = Worker(name, f"tcp://127.0.0.1:{port}", proc, folder)
        self.procs.append(proc)
        self.workers.append(worker)
        self.wait_for(worker)
        return worker

    def wait_for(self, worker: Worker) -> None:
        from distributed import Client

        deadline = time.monotonic() + START_S
        with Client(self.scheduler, timeout=START_S) as client:
            while worker.address not in client.scheduler_info(n_workers=-1)["workers"]:
                if worker.proc.poll() is not None or time.monotonic() > deadline:
                    log = (worker.folder / "worker.log").read_text()[-2000:]
                    raise RuntimeError(f"dask worker {worker.name} did not join:\n{log}")
                time.sleep(0.5)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(proc.pid, signal.SIGKILL)


def start_dask(folder: Path, env: dict[str, str], workers: int) -> DaskCluster:
    """``dask scheduler`` + ``workers`` × ``dask worker`` (one thread, own folder each)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    dask = Path(sys.executable).with_name("dask")
    log = (folder / "scheduler.log").open("w")
    proc = subprocess.Popen(
        [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--dashboard-address", f"127.0.0.1:{free_port()}"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    log.close()
    cluster = DaskCluster(f"tcp://127.0.0.1:{port}", folder, env, [proc])
    try:
        for k in range(workers):
            cluster.start_worker(f"w{k}")
    except Exception:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def dask_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dask")
