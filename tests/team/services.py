"""Real shared services for the team tests, on 127.0.0.1: PostgreSQL, an S3 stand-in, MLflow.

Each ``start_*`` either returns a running service or calls ``pytest.skip`` with the reason it
cannot run here (no PostgreSQL binaries, no unprivileged user to run them as root, a package
missing, a start that failed: the log's tail is in the reason). Every service is stopped by
its ``stop()``; the fixtures in ``tests/team/stack.py`` call it.

- PostgreSQL 15: ``initdb`` + ``pg_ctl`` in a fresh folder, as the ``postgres`` system user
  when the tests run as root (PostgreSQL refuses root), trust auth for the role ``lus``,
  fsync off (a throw-away cluster).
- S3: moto's ``ThreadedMotoServer`` (fake keys, region us-east-1).
- MLflow: ``mlflow server`` with the PostgreSQL backend store and S3 as the artifact store
  (``--artifacts-destination``: clients reach artifacts through the server, so only the server
  needs ``MLFLOW_S3_ENDPOINT_URL`` and keys), job execution off.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

PG_USER = "lus"  # the database role the services connect as (trust auth on loopback)
PG_SYSTEM_USER = "postgres"  # the unprivileged system user PostgreSQL runs as under root
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
START_S = 120  # a cold mlflow server on PostgreSQL creates its tables first (~20-40 s)
STOP_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def wait_http(url: str, proc: subprocess.Popen | None, timeout_s: float, log: Path) -> None:
    """Wait until ``url`` answers 200; fail with the log's tail if the process dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited {proc.returncode}\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer in {timeout_s:.0f} s\n{_tail(log)}")
        time.sleep(0.5)


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group a ``start_new_session`` process leads, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_S)
    except ProcessLookupError:
        pass


# --- PostgreSQL -----------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    """Where initdb/pg_ctl live: PATH, ``pg_config --bindir``, Debian's /usr/lib/postgresql/N."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if shutil.which("pg_config"):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        )
        candidates.insert(0, Path(out.stdout.strip()))
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None


@dataclass
class Postgres:
    """A throw-away PostgreSQL cluster; :meth:`url` gives SQLAlchemy URLs for its databases."""

    port: int
    folder: Path
    bindir: Path
    run_as: str | None  # the system user the server runs as (None: this user)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, capture_output=True, text=True, timeout=timeout, user=self.run_as, check=False,
            cwd=self.folder, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, database: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database)) as conn:
            return conn.execute(sql).fetchall()

    def stop(self) -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.folder / "db"), "-m", "fast",
                   "-w", "stop"])  # fmt: skip
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb + pg_ctl start on a free port, or ``pytest.skip`` with the reason."""
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's driver for postgresql:// URLs)
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or pg_config")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            pytest.skip(f"running as root and no '{PG_SYSTEM_USER}' user to run PostgreSQL as")
        run_as = PG_SYSTEM_USER
    # Not under pytest's tmp_path: its parents are private to root, the server user must
    # reach this folder.
    folder = Path(tempfile.mkdtemp(prefix="lusaug-pg-"))
    if run_as:
        shutil.chown(folder, user=run_as)
    pg = Postgres(free_port(), folder, bindir, run_as)
    server_opts = (
        f"-p {pg.port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c max_connections=100"
    )
    steps = [
        [str(bindir / "initdb"), "-D", str(folder / "db"), "-U", PG_USER, "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        [str(bindir / "pg_ctl"), "-D", str(folder / "db"), "-l", str(pg.log), "-w", "-t", "60",
         "-o", server_opts, "start"],
    ]  # fmt: skip
    for args in steps:
        proc = pg._run(args)
        if proc.returncode != 0:
            detail = (proc.stdout + proc.stderr)[-1200:] + _tail(pg.log, 800)
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(f"PostgreSQL could not be started ({Path(args[0]).name}): {detail}")
    return pg


# --- S3 (moto) ------------------------------------------------------------------------------


@dataclass
class S3:
    """moto's S3 server; ``env`` is what a client needs to reach it."""

    server: object
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        return {**FAKE_AWS, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        self.server.stop()


def start_s3() -> S3:
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.skip(f"moto[server] and boto3 are needed for the S3 stand-in ({exc})")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return S3(server, f"http://127.0.0.1:{port}")


# --- MLflow tracking server -----------------------------------------------------------------


@dataclass
class MlflowServer:
    """``mlflow server`` (or ``mlflow ui``) as a process group on a free port."""

    url: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        stop_group(self.proc)


def start_mlflow(
    backend_uri: str,
    artifacts: str,
    env: dict[str, str],
    log: Path,
    command: str = "server",
) -> MlflowServer:
    """``mlflow server|ui --backend-store-uri B --artifacts-destination A`` on 127.0.0.1."""
    port = free_port()
    cli = Path(sys.executable).with_name("mlflow")
    args = [str(cli), command, "--backend-store-uri", backend_uri, "--artifacts-destination",
            artifacts, "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    if command == "server":
        args += ["--workers", "1"]
    fh = log.open("w")
    proc = subprocess.Popen(
        args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, **env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    fh.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc, START_S, log)
    except RuntimeError as exc:
        stop_group(proc)
        raise RuntimeError(f"mlflow {command} did not start: {exc}") from None
    return MlflowServer(url, proc, log)
