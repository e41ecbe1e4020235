"""Hot reload: the server follows models:/lus-classifier@production across a promotion/rollback."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import httpx
import numpy as np

from lusaug.core.mlflow_store import setup_experiment
from lusaug.export.model_source import resolve_model
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.serving.app import create_app
from lusaug.serving.preprocess import VideoSampling
from lusaug.tracking.promotion import promote, rollback
from tests.export.helpers import CLASSES, frame, make_splits, png_bytes, register_and_export
from tests.serving.helpers import LiveServer

NAME = "lus-classifier"


def test_hot_reload_after_promotion_without_dropping_requests(
    tmp_path, params, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="lusaug")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    setup_experiment("classifiers", root=tmp_path)
    make_splits(tmp_path)
    register_and_export(tmp_path, params, {"a-resnet-0": {"f1": 0.60, "seed": 0}}, "a")
    promote(NAME, "1", "staging", params.register)
    promote(NAME, "1", "production", params.register)

    cfg = dataclasses.replace(params.serve, reload_poll_s=0.3)
    app = create_app(f"models:/{NAME}@production", cfg, VideoSampling(), tmp_path / "cache")
    v1_sha = app.state.lusaug.current.clf.info.sha256
    # The log says which model is served: name, version, alias and ONNX hash, at load ...
    assert f"serving {NAME} version 1 @production, onnx sha256 {v1_sha}" in caplog.text
    live = LiveServer(app).start()
    blob = png_bytes(frame(1, np.random.default_rng(5)))
    seen: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            while not stop.is_set():
                r = c.post("/predict", files=[("files", ("a.png", blob, "image/png"))])
                seen.append(
                    (r.status_code, r.json()["model"]["version"] if r.status_code == 200 else "")
                )

    worker = threading.Thread(target=load)
    try:
        assert httpx.get(f"{live.url}/metadata").json()["version"] == "1"
        worker.start()
        register_and_export(tmp_path, params, {"b-resnet-1": {"f1": 0.70, "seed": 1}}, "b")
        promote(NAME, "2", "staging", params.register)
        promote(NAME, "2", "production", params.register)  # gates pass: parity + better F1
        deadline = time.monotonic() + 60
        while httpx.get(f"{live.url}/metadata").json()["version"] != "2":
            assert time.monotonic() < deadline, "server did not pick up the new production version"
            time.sleep(0.1)
        n_at_swap = len(seen)
        while len(seen) < n_at_swap + 5:  # a few requests on the new model
            time.sleep(0.05)
        stop.set()
        worker.join(timeout=30)

        assert seen and all(status == 200 for status, _ in seen), seen[:10]
        versions = [v for _, v in seen]
        assert "1" in versions and versions[-1] == "2"
        assert versions == sorted(versions)  # never back to the old model after the swap
        meta = httpx.get(f"{live.url}/metadata").json()
        assert meta["reloads"] == 1 and meta["alias"] == "production"
        # The new answers come from version 2's ONNX file.
        v2 = OnnxClassifier(resolve_model(f"models:/{NAME}/2", tmp_path / "check").path)
        r = httpx.post(
            f"{live.url}/predict", files=[("files", ("a.png", blob, "image/png"))]
        ).json()
        expected = v2.proba(v2.frames_to_input([frame(1, np.random.default_rng(5))]))[0]
        np.testing.assert_allclose(
            [r["results"][0]["probs"][c] for c in CLASSES], expected, atol=1e-6
        )
        assert meta["onnx_sha256"] == v2.info.sha256
        # ... and at every reload.
        now = f"reloaded: now serving {NAME} version 2 @production, onnx sha256 {v2.info.sha256}"
        assert now in caplog.text and "(was version 1)" in caplog.text

        # Rollback + explicit POST /reload (localhost) swaps back at once.
        rollback(NAME, "production", "test")
        r = httpx.post(f"{live.url}/reload").json()
        if r["reloaded"]:  # the poller may have won the race; either way we are on v1 now
            assert r["version"] == "1"
        assert httpx.get(f"{live.url}/metadata").json()["version"] == "1"
    finally:
        stop.set()
        live.stop()
