"""/reload and the poll loop under failure: the old model stays (409/503 with the reason), a
non-local peer gets 403 (a real peer in another network namespace), the cache is pruned."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from lusaug.serving.app import create_app
from tests.export.helpers import frame, png_bytes
from tests.serving.helpers import LiveServer, serve_cfg, video_sampling

NAME = "lus-reload"
POLL_S = 0.2  # registry poll interval of the polling server (fast, for the test)
ALIAS = "production"


def _add_version(onnx_bytes: bytes, work: Path) -> str:
    """A registry version whose artifacts are one classifier.onnx (good or broken)."""
    src = work / uuid.uuid4().hex
    src.mkdir()
    (src / "classifier.onnx").write_bytes(onnx_bytes)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(src), "model")
    client = MlflowClient()
    if not client.search_registered_models(f"name='{NAME}'"):
        client.create_registered_model(NAME)
    mv = client.create_model_version(NAME, f"{run.info.artifact_uri}/model", run.info.run_id)
    return str(mv.version)


def _use_store(uri: str, monkeypatch) -> None:
    """Point the process at ``uri`` (env and mlflow's own setting: other tests set the latter)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    previous = mlflow.get_tracking_uri()
    _use_store(f"sqlite:///{tmp_path / 'mlflow.db'}", monkeypatch)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_experiment("reload-failures")
    yield tmp_path
    mlflow.set_tracking_uri(previous)


def _predict(url: str) -> httpx.Response:
    blob = png_bytes(frame(1, np.random.default_rng(0)))
    return httpx.post(url + "/predict", files={"files": ("a.png", blob, "image/png")})


def test_failed_reloads_keep_the_old_model_and_say_why(registry, onnx_file, params, monkeypatch):
    good = onnx_file.read_bytes()
    v1 = _add_version(good, registry)
    client = MlflowClient()
    client.set_registered_model_alias(NAME, ALIAS, v1)
    cache = registry / "cache"
    app = create_app(f"models:/{NAME}@{ALIAS}", serve_cfg(params), video_sampling(params), cache)
    live = LiveServer(app).start()
    polling = LiveServer(
        create_app(
            f"models:/{NAME}@{ALIAS}",
            serve_cfg(params, reload_poll_s=POLL_S),
            video_sampling(params),
            registry / "cache-poll",
        )
    ).start()
    try:
        # 1. The alias moves to a broken version: 409, version 1 keeps serving.
        v2 = _add_version(b"not an onnx file", registry)
        client.set_registered_model_alias(NAME, ALIAS, v2)
        r = httpx.post(live.url + "/reload")
        assert r.status_code == 409, r.text
        assert f"version {v2} cannot serve" in r.json()["detail"]
        assert f"still serving version {v1}" in r.json()["detail"]
        assert _predict(live.url).json()["model"]["version"] == v1
        meta = httpx.get(live.url + "/metadata").json()
        assert meta["version"] == v1 and "cannot serve" in meta["last_reload_error"]
        assert sorted(p.name for p in cache.iterdir()) == [f"{NAME}-v{v1}"]  # v2's download gone
        # The poll loop meets the same failure the same way: logged, version 1 still serving.
        deadline = time.monotonic() + 20 * POLL_S
        while not httpx.get(polling.url + "/metadata").json()["last_reload_error"]:
            assert time.monotonic() < deadline, "the poller never tried version 2"
            time.sleep(POLL_S / 2)
        meta = httpx.get(polling.url + "/metadata").json()
        assert meta["version"] == v1 and f"version {v2} cannot serve" in meta["last_reload_error"]
        assert _predict(polling.url).json()["model"]["version"] == v1
        # 2. The alias is deleted: 409 again, still version 1.
        client.delete_registered_model_alias(NAME, ALIAS)
        r = httpx.post(live.url + "/reload")
        assert r.status_code == 409 and "still serving version 1" in r.json()["detail"], r.text
        # 3. The registry cannot be reached: 503, still version 1.
        _use_store("http://127.0.0.1:9", monkeypatch)  # the discard port: connection refused
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        r = httpx.post(live.url + "/reload", timeout=60)
        assert r.status_code == 503 and "still serving version 1" in r.json()["detail"], r.text
        assert _predict(live.url).status_code == 200
        # 4. Back online, the alias on a good version: swapped, cache pruned to it.
        _use_store(f"sqlite:///{registry / 'mlflow.db'}", monkeypatch)
        v3 = _add_version(good, registry)
        client.set_registered_model_alias(NAME, ALIAS, v3)
        r = httpx.post(live.url + "/reload")
        assert r.status_code == 200 and r.json() == {
            "reloaded": True,
            "version": v3,
            "previous": v1,
        }
        assert sorted(p.name for p in cache.iterdir()) == [f"{NAME}-v{v3}"]
        assert _predict(live.url).json()["model"]["version"] == v3
        assert 'outcome="failed"' in httpx.get(live.url + "/metrics").text
    finally:
        live.stop()
        polling.stop()


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def peer_namespace():
    """A network namespace joined to this one by a veth pair: a real non-loopback peer.

    Yields (server address here, the namespace's name); the peer's address is .2 of a /30.
    """
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.skip("needs iproute2 and root to create a network namespace")
    tag = f"{os.getpid() % 100000}"
    ns, here, there = f"lusaug{tag}", f"lusv{tag}", f"lusp{tag}"
    created = _ip("netns", "add", ns)
    if created.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {created.stderr.strip()}")
    subnet = f"198.18.{os.getpid() % 250}"  # RFC 2544 benchmark range: never routed
    try:
        steps = [
            ("link", "add", here, "type", "veth", "peer", "name", there),
            ("link", "set", there, "netns", ns),
            ("addr", "add", f"{subnet}.1/30", "dev", here),
            ("link", "set", here, "up"),
            ("-n", ns, "addr", "add", f"{subnet}.2/30", "dev", there),
            ("-n", ns, "link", "set", there, "up"),
            ("-n", ns, "link", "set", "lo", "up"),
        ]
        for step in steps:
            out = _ip(*step)
            if out.returncode != 0:
                pytest.skip(f"cannot wire the namespace (ip {' '.join(step)}): {out.stderr}")
        yield f"{subnet}.1", ns
    finally:
        _ip("link", "del", here)
        _ip("netns", "del", ns)


def test_reload_from_a_non_local_peer_is_403(peer_namespace, onnx_file, params):
    address, ns = peer_namespace
    app = create_app(str(onnx_file), serve_cfg(params), video_sampling(params))
    live = LiveServer(app, host=address).start()
    try:

        def from_peer(method: str, path: str) -> tuple[str, str]:
            out = subprocess.run(
                ["ip", "netns", "exec", ns, "curl", "-sS", "-X", method, "-w", "\n%{http_code}"]
                + ["--max-time", "20", f"{live.url}{path}"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
            body, status = out.rsplit("\n", 1)
            return status, body

        assert from_peer("GET", "/health")[0] == "200"  # the peer reaches the server ...
        status, body = from_peer("POST", "/reload")  # ... but may not reload it
        assert status == "403", body
        assert "localhost only" in body and address.rsplit(".", 1)[0] + ".2" in body
    finally:
        live.stop()
