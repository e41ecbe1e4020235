"""The inference server under uvicorn on 127.0.0.1: real HTTP, real onnxruntime."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from lusaug.core.utils import sha256_file
from lusaug.export.model_input import ImageLimits
from lusaug.export.model_source import ModelSource
from lusaug.export.onnx_runtime import OnnxClassifier
from lusaug.serving.app import create_app
from lusaug.serving.predict import predict_files
from tests.export.helpers import CLASSES, SIZE, frame, png_bytes
from tests.serving.corpus import FILE_FAULTS
from tests.serving.helpers import (
    LiveServer,
    serve_cfg,
    start_server,
    video_sampling,
    write_video,
)

MAX_FILES = 8


def _cfg(params, **over):
    return serve_cfg(params, max_files=MAX_FILES, max_request_mb=1.0, **over)


def _sampling(params):
    return video_sampling(params)


@pytest.fixture(scope="module")
def server(onnx_file, params):
    live = start_server(onnx_file, params, cfg=_cfg(params))
    yield live
    live.stop()


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [frame(i % 4, rng, size=SIZE + 8 * (i % 3)) for i in range(n)]


def _files(blobs: list[tuple[str, bytes, str]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", b) for b in blobs]


def test_health_and_metadata(server, onnx_file):
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["classes"] == CLASSES
    assert meta["input_size"] == [1, SIZE, SIZE]
    assert meta["onnx_sha256"] == sha256_file(onnx_file)
    assert meta["name"] == "classifier.onnx" and meta["version"] == ""


def test_predict_images_matches_offline_predict(server, onnx_file, params, tmp_path):
    imgs = _images(3)
    jpeg = io.BytesIO()
    Image.fromarray(imgs[2]).save(jpeg, format="JPEG", quality=95)
    blobs = [
        ("a.png", png_bytes(imgs[0]), "image/png"),
        ("b.png", png_bytes(imgs[1]), "image/png"),
        ("c.jpg", jpeg.getvalue(), "image/jpeg"),
    ]
    r = httpx.post(f"{server.url}/predict", files=_files(blobs))
    assert r.status_code == 200, r.text
    body = r.json()
    preds = body["results"]
    assert [p["file"] for p in preds] == ["a.png", "b.png", "c.jpg"]
    assert [p["kind"] for p in preds] == ["image"] * 3 and {p["status"] for p in preds} == {200}
    assert (body["predicted"], body["failed"]) == (3, 0)
    # `lusaug predict` runs the same preprocessing: identical probabilities.
    for name, data, _ in blobs:
        (tmp_path / name).write_bytes(data)
    offline = predict_files(
        OnnxClassifier(onnx_file),
        ModelSource(onnx_file, str(onnx_file)),
        [tmp_path / n for n, _, _ in blobs],
        ImageLimits(),
        _sampling(params),
        64,
    ).results
    for p, o in zip(preds, offline):
        o = o.model_dump()
        assert p["label"] == o["label"]
        np.testing.assert_allclose(
            [p["probs"][c] for c in CLASSES], [o["probs"][c] for c in CLASSES], atol=1e-6
        )
    # One image as the raw body (no multipart): the same answer.
    raw = httpx.post(
        f"{server.url}/predict", content=blobs[0][1], headers={"content-type": "image/png"}
    )
    assert raw.status_code == 200, raw.text
    assert raw.json()["results"][0]["probs"] == preds[0]["probs"]


def test_predict_video_aggregates_sampled_frames_with_their_source_index_and_time(
    server, params, tmp_path
):
    clip = write_video(tmp_path / "clip.mp4", n_frames=24, fps=12.0)
    r = httpx.post(
        f"{server.url}/predict", files=_files([("clip.mp4", clip.read_bytes(), "video/mp4")])
    )
    assert r.status_code == 200, r.text
    (video,) = r.json()["results"]
    step = round(12.0 / params.frames.sample_fps)  # the frames stage's sampling rate
    frames = video["frame_predictions"]
    assert video["kind"] == "video" and video["frames"] == len(frames) == 24 // step
    assert [f["frame"] for f in frames] == list(range(0, 24, step))
    assert video["fps"] == 12.0
    np.testing.assert_allclose([f["time_s"] for f in frames], np.arange(0, 24, step) / 12.0)
    mean = np.mean([[p["probs"][c] for c in CLASSES] for p in frames], axis=0)
    np.testing.assert_allclose([video["probs"][c] for c in CLASSES], mean, atol=1e-6)
    assert video["label"] == CLASSES[int(mean.argmax())]


# (status, reason, request): one request per fault; each file fault of the corpus alone (among
# good files: test_batch.py, with the same status).
BAD_REQUESTS = {
    **{
        case: (status, reason, {"files": _files([blob])})
        for case, (status, reason, blob) in FILE_FAULTS.items()
    },
    "not multipart, not media": (
        415,
        "unsupported_content_type",
        {"content": b"", "headers": {"content-type": "application/octet-stream"}},
    ),
    "multipart without files": (400, "no_files", {"files": {"note": (None, "hello")}}),
    "empty raw body": (
        415,
        "empty_file",
        {"content": b"", "headers": {"content-type": "image/png"}},
    ),
    "too many files": (
        413,
        "too_many_files",
        {
            "files": _files(
                [
                    (f"{i}.png", png_bytes(np.zeros((8, 8), np.uint8)), "image/png")
                    for i in range(MAX_FILES + 1)
                ]
            )
        },
    ),
    "over size cap": (
        413,
        "body_too_large",
        {"files": _files([("big.png", b"\x89PNG" + b"\x00" * (3 << 19), "image/png")])},
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_status_and_reason_and_server_keeps_serving(server, case):
    status, reason, kwargs = BAD_REQUESTS[case]
    r = httpx.post(f"{server.url}/predict", timeout=30, **kwargs)
    assert r.status_code == status, (case, r.status_code, r.text)
    body = r.json()
    assert body["detail"] and body["reason"] == reason, body  # a reason, not an empty error
    good = httpx.post(
        f"{server.url}/predict", files=_files([("ok.png", png_bytes(_images(1)[0]), "image/png")])
    )
    assert good.status_code == 200 and good.json()["results"][0]["label"] in CLASSES


def test_streamed_body_over_cap_is_cut_off(server):
    """Chunked upload without Content-Length: the cap applies while the body streams in."""

    def body():
        yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
        for _ in range(40):
            yield b"\x00" * 65536

    r = httpx.post(
        f"{server.url}/predict",
        content=body(),
        timeout=30,
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert r.status_code == 413, r.text
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_load_500_requests_8_clients_zero_errors(server):
    """Bounded load: 500 requests from 8 concurrent clients, no errors, micro-batching active."""
    blob = png_bytes(_images(1)[0])
    before = httpx.get(f"{server.url}/metadata").json()["micro_batching"]["batches"]
    statuses: list[int] = []

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            for _ in range(n):
                r = await c.post("/predict", files=_files([("a.png", blob, "image/png")]))
                statuses.append(r.status_code)

    async def run() -> None:
        await asyncio.gather(*(client(n) for n in [63] * 4 + [62] * 4))

    t0 = time.monotonic()
    asyncio.run(run())
    elapsed = time.monotonic() - t0
    assert len(statuses) == 500 and set(statuses) == {200}
    assert elapsed < 120, f"500 requests took {elapsed:.1f} s"
    batches = httpx.get(f"{server.url}/metadata").json()["micro_batching"]["batches"] - before
    assert 0 < batches <= 500  # concurrent requests can share an onnxruntime call


def test_lone_small_request_runs_inline_and_agrees_with_the_thread_path(server):
    """A lone one-frame request skips the inference thread; larger ones use it; same answers."""
    imgs = [png_bytes(im) for im in _images(3, seed=7)]

    def counters() -> dict:
        return httpx.get(f"{server.url}/metadata").json()["micro_batching"]

    c0 = counters()
    assert c0["inline_max_frames"] == 1
    lone = httpx.post(f"{server.url}/predict", files=_files([("a.png", imgs[0], "image/png")]))
    c1 = counters()
    assert lone.status_code == 200
    assert (c1["inline"], c1["batches"]) == (c0["inline"] + 1, c0["batches"] + 1)
    three = httpx.post(
        f"{server.url}/predict",
        files=_files([(f"{i}.png", b, "image/png") for i, b in enumerate(imgs)]),
    )
    c2 = counters()
    assert three.status_code == 200
    assert (c2["inline"], c2["batches"]) == (c1["inline"], c1["batches"] + 1)
    p_inline = lone.json()["results"][0]["probs"]
    p_thread = three.json()["results"][0]["probs"]
    assert p_inline.keys() == p_thread.keys()
    assert all(abs(p_inline[k] - p_thread[k]) < 1e-5 for k in p_inline)


def test_reload_is_localhost_only_and_noop_for_files(server):
    r = httpx.post(f"{server.url}/reload")
    assert r.status_code == 200 and r.json()["reloaded"] is False


def test_server_without_micro_batching(onnx_file, params):
    live = LiveServer(
        create_app(str(onnx_file), _cfg(params, batch_window_ms=0.0), _sampling(params))
    ).start()
    try:
        r = httpx.post(
            f"{live.url}/predict", files=_files([("a.png", png_bytes(_images(1)[0]), "image/png")])
        )
        assert r.status_code == 200
        assert httpx.get(f"{live.url}/metadata").json()["micro_batching"]["batches"] is None
    finally:
        live.stop()


def test_lusaug_predict_cli_json_and_bad_file(onnx_file, tmp_path, monkeypatch):
    """`lusaug predict FILES --json`: a record per file; an unreadable file is reported, exit 1."""
    import json
    import shutil

    from typer.testing import CliRunner

    from lusaug.cli import app
    from lusaug.core.config import PROJ_ROOT

    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.png").write_bytes(png_bytes(_images(1)[0]))
    write_video(tmp_path / "clip.mp4")
    args = ["predict", "a.png", "clip.mp4", "--model", str(onnx_file), "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    preds = json.loads(r.output)["results"]
    assert [p["file"] for p in preds] == ["a.png", "clip.mp4"]
    assert preds[1]["frames"] == 6 and preds[0]["label"] in CLASSES
    (tmp_path / "bad.png").write_bytes(b"nope")
    r = CliRunner().invoke(
        app, ["predict", "a.png", "bad.png", "nowhere.png", "--model", str(onnx_file), "--json"]
    )
    assert r.exit_code == 1
    out = json.loads(r.output)
    assert (out["predicted"], out["failed"]) == (1, 2)
    bad, missing = out["results"][1:]
    assert (bad["status"], bad["reason"]) == (415, "undecodable")
    assert "not a readable image" in bad["error"]
    assert missing["reason"] == "unreadable_path" and "No such file" in missing["error"]
    # The table names each failed file's status and reason.
    r = CliRunner().invoke(app, ["predict", "a.png", "bad.png", "--model", str(onnx_file)])
    assert r.exit_code == 1 and "415 undecodable" in r.output
