"""The registered pyfunc: base64 images in, the ONNX session's probabilities out, via MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from lusaug.core.mlflow_store import setup_experiment
from lusaug.export.mlflow_model import log_onnx_pyfunc
from lusaug.export.model_input import encode_png_base64
from lusaug.export.onnx_export import export_onnx
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.models.classifier import load_classifier
from tests.export.helpers import CLASSES, frame, free_port, make_checkpoint


@pytest.fixture
def registered(tmp_path, params, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    setup_experiment("classifiers", root=tmp_path)
    model, meta = load_classifier(make_checkpoint(tmp_path / "m.pt"))
    onnx_path = export_onnx(model, meta, tmp_path / "onnx" / "classifier.onnx", params.export)
    with mlflow.start_run(run_name="register"):
        info = log_onnx_pyfunc(onnx_path)
    mv = mlflow.register_model(info.model_uri, "lus-test")
    mlflow.MlflowClient().set_registered_model_alias("lus-test", "production", mv.version)
    return uri, onnx_path


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [frame(i % 4, rng, size=48 + 8 * i) for i in range(n)]  # any size; resized inside


def test_pyfunc_matches_the_onnx_session(registered):
    _, onnx_path = registered
    pf = mlflow.pyfunc.load_model("models:/lus-test@production")
    imgs = _images(3)
    out = pf.predict([encode_png_base64(im) for im in imgs])
    clf = OnnxClassifier(onnx_path)
    expected = clf.proba(clf.frames_to_input(imgs))
    assert [o["label"] for o in out] == [CLASSES[i] for i in expected.argmax(1)]
    got = np.array([[o["probs"][c] for c in CLASSES] for o in out])
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.slow
def test_mlflow_models_serve_answers_png_requests(registered, tmp_path):
    """`mlflow models serve -m models:/...@production --env-manager local` on 127.0.0.1."""
    uri, _ = registered
    port = free_port()
    bindir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PATH": bindir + os.pathsep + os.environ["PATH"],
    }
    mlflow_bin = str(Path(bindir) / "mlflow")
    cmd = [
        mlflow_bin,
        "models",
        "serve",
        "-m",
        "models:/lus-test@production",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    # Own session: SIGTERM to the group also stops the uvicorn child that `mlflow` spawns.
    proc = subprocess.Popen(
        cmd,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "mlflow models serve did not start in 90 s"
            time.sleep(0.5)
        payload = {"inputs": [encode_png_base64(im) for im in _images(2)]}
        r = httpx.post(f"{base}/invocations", json=payload, timeout=30)
        assert r.status_code == 200, r.text
        preds = r.json()["predictions"]
        assert len(preds) == 2 and all(p["label"] in CLASSES for p in preds)
        assert all(abs(sum(p["probs"].values()) - 1) < 1e-5 for p in preds)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
