"""Ecosystem conventions: health probes, Prometheus metrics, version + intended use on every
response, and every file type the frames stage reads, uploaded the way curl sends them."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lusaug.cli import app as cli_app
from lusaug.core.config import PROJ_ROOT
from lusaug.core.utils import sha256_file
from lusaug.data.ingest import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from lusaug.serving.schemas import INTENDED_USE
from tests.export.helpers import CLASSES, frame, png_bytes
from tests.serving.helpers import (
    ServerProcess,
    write_gif,
    write_mpeg,
    write_video,
)
from tests.serving.load import send_once

CURL = shutil.which("curl")
JSON_TYPE = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """One file per type the POCUS folder holds (.mpeg, .gif, upper-case .MP4) and more."""
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    img = frame(2, rng, size=48)
    files = {
        "clip.mpeg": write_mpeg(d / "clip.mpeg"),
        "anim.gif": write_gif(d / "anim.gif"),
        "CLIP.MP4": write_video(d / "CLIP.MP4"),
        "scan.png": d / "scan.png",
        "scan.bmp": d / "scan.bmp",
        "scan.TIF": d / "scan.TIF",
        "scan.JPG": d / "scan.JPG",
    }
    (d / "scan.png").write_bytes(png_bytes(img))
    Image.fromarray(img).save(d / "scan.bmp", format="BMP")
    Image.fromarray(img).save(d / "scan.TIF", format="TIFF")
    Image.fromarray(img).save(d / "scan.JPG", format="JPEG", quality=95)
    return files


def test_every_frames_type_is_covered_by_the_media_fixture(media):
    """The test files span the frames stage's own lists (suffixes compared in lower case)."""
    covered = {p.suffix.lower() for p in media.values()}
    assert {".mpeg", ".gif", ".mp4"} <= covered & VIDEO_SUFFIXES
    assert {".png", ".bmp", ".tif", ".jpg"} <= covered & IMAGE_SUFFIXES


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
@pytest.mark.parametrize("name", ["clip.mpeg", "anim.gif", "CLIP.MP4", "scan.bmp", "scan.TIF"])
def test_curl_upload_of_each_pocus_file_type_is_accepted(server, media, name):
    """`curl -F files=@clip.mpeg` (curl picks the part's Content-Type from the suffix)."""
    out = subprocess.run(
        [
            CURL,
            "-sS",
            "-F",
            f"files=@{media[name]}",
            "-w",
            "\\n%{http_code}",
            server.url + "/predict",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body, status = out.rsplit("\n", 1)
    assert status == "200", body
    result = json.loads(body)
    (one,) = result["results"]
    assert one["file"] == name and one["label"] in CLASSES
    if name.lower().endswith((".mpeg", ".gif", ".mp4")):
        assert one["kind"] == "video" and one["frames"] == len(one["frame_predictions"]) >= 1
    else:
        assert one["kind"] == "image"
    assert result["intended_use"] == INTENDED_USE


def test_raw_body_video_types_are_named_from_the_content_type(server, media):
    data = media["clip.mpeg"].read_bytes()
    r = httpx.post(server.url + "/predict", content=data, headers={"content-type": "video/mpeg"})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["file"] == "body.mpeg"
    assert r.json()["results"][0]["kind"] == "video"


def test_lusaug_predict_reads_the_same_types(onnx_file, media, tmp_path, monkeypatch):
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    names = ["clip.mpeg", "anim.gif", "CLIP.MP4", "scan.bmp", "scan.TIF", "scan.JPG"]
    args = ["predict", *(str(media[n]) for n in names), "--model", str(onnx_file), "--json"]
    r = CliRunner().invoke(cli_app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["intended_use"] == INTENDED_USE
    assert [p["file"] for p in out["results"]] == [str(media[n]) for n in names]
    assert [p["kind"] for p in out["results"]] == ["video"] * 3 + ["image"] * 3


def test_health_probes(server):
    live = httpx.get(server.url + "/health/live")
    ready = httpx.get(server.url + "/health/ready")
    old = httpx.get(server.url + "/health")
    assert live.status_code == ready.status_code == old.status_code == 200
    assert live.json()["status"] == "alive"
    assert ready.json()["status"] == "ready" and ready.json()["model"]["name"]
    assert old.json()["status"] == "ok"


def test_every_response_names_the_model_version_and_intended_use(server):
    bad = httpx.post(server.url + "/predict", files={"files": ("x.png", b"nope", "image/png")})
    for r in [
        httpx.get(server.url + "/health"),
        httpx.get(server.url + "/metrics"),
        httpx.get(server.url + "/no-such-route"),
        bad,
        httpx.post(
            server.url + "/predict",
            content=png_bytes(frame(0, np.random.default_rng(1))),
            headers={"content-type": "image/png"},
        ),
    ]:
        assert r.headers["x-intended-use"] == INTENDED_USE, r.url
        assert r.headers["x-model-version"] and r.headers["x-model-name"] == "classifier.onnx"
    assert bad.status_code == 415 and bad.json()["reason"] == "undecodable"


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_metrics_count_requests_latency_and_batches(server):
    before = httpx.get(server.url + "/metrics").text
    blob = png_bytes(frame(1, np.random.default_rng(4)))
    for _ in range(3):
        assert httpx.post(server.url + "/predict", files={"files": ("a.png", blob, "image/png")})
    httpx.post(server.url + "/predict", files={"files": ("x.png", b"nope", "image/png")})
    r = httpx.get(server.url + "/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    after = r.text
    ok = {"route": "/predict", "method": "POST", "status": "200"}
    ok["model_name"] = "classifier.onnx"
    assert (
        _metric(after, "lusaug_http_requests_total", **ok)
        - _metric(before, "lusaug_http_requests_total", **ok)
        == 3
    )
    bad = {**ok, "status": "415"}
    assert _metric(after, "lusaug_http_requests_total", **bad) >= 1
    assert _metric(after, "lusaug_http_request_duration_seconds_count", route="/predict") >= 4
    assert "lusaug_http_request_duration_seconds_bucket{" in after  # a histogram, by le
    assert _metric(after, "lusaug_batch_size_frames_count", model_name="classifier.onnx") >= 3
    assert _metric(after, "lusaug_model_info", model_name="classifier.onnx") == 1


def _post(headers: str, body: bytes) -> bytes:
    return f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


def _delta(before: str, after: str, name: str, **labels: str) -> float:
    return _metric(after, name, **labels) - _metric(before, name, **labels)


def test_metrics_count_refusals_by_reason_and_predictions_by_class(server, tmp_path):
    """Every refusal by its reason (the body cap's 413 too), every prediction by its class."""
    before = httpx.get(server.url + "/metrics").text
    rng = np.random.default_rng(5)
    images = [("files", (f"{i}.png", png_bytes(frame(i % 4, rng)), "image/png")) for i in range(4)]
    good = httpx.post(server.url + "/predict", files=images)
    clip = write_video(tmp_path / "c.mp4")
    mixed = httpx.post(
        server.url + "/predict",
        files=[
            ("files", ("c.mp4", clip.read_bytes(), "video/mp4")),
            ("files", ("x.png", b"nope", "image/png")),
            ("files", ("w.txt", b"", "text/plain")),
        ],
    )
    # A body declared over serve.max_request_mb: the middleware refuses it from the header.
    cap = httpx.get(server.url + "/metadata").json()["limits"]["max_request_mb"]
    head = "Content-Type: image/png\r\nConnection: close\r\n"
    head += f"Content-Length: {int(cap * 2**20) + 1}\r\n"
    too_big, _ = asyncio.run(send_once(server.port, _post(head, b"\x00" * 64)))
    not_media = httpx.post(server.url + "/predict", content=b"{}", headers=JSON_TYPE)
    assert (good.status_code, mixed.status_code) == (200, 200)
    assert (too_big, not_media.status_code) == (413, 415)
    after = httpx.get(server.url + "/metrics").text

    labels = [r["label"] for r in good.json()["results"]]
    video = mixed.json()["results"][0]
    for label in CLASSES:
        n = labels.count(label)
        assert _delta(before, after, "lusaug_predictions_total", label=label, kind="image") == n
        nv = int(video["label"] == label)
        assert _delta(before, after, "lusaug_predictions_total", label=label, kind="video") == nv
    refused = "lusaug_refused_requests_total"
    assert _delta(before, after, refused, reason="body_too_large") == 1
    assert _delta(before, after, refused, reason="unsupported_content_type") == 1
    files = "lusaug_refused_files_total"
    assert _delta(before, after, files, reason="undecodable") == 1
    assert _delta(before, after, files, reason="empty_file") == 1


def test_openapi_schema_describes_bodies_answers_and_every_refusal(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    op = schema["paths"]["/predict"]["post"]
    body = op["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["files"]["type"] == "array"
    assert {"image/png", "image/jpeg", "video/mp4", "video/mpeg", "image/gif"} <= set(body)
    assert set(op["responses"]) == {"200", "400", "413", "415", "422", "503"}

    def resolve(node: dict) -> dict:
        ref = node.get("$ref", "")
        return schema["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node

    ok = resolve(op["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"results", "model", "classes", "predicted", "failed"} <= set(ok["properties"])
    kinds = resolve(ok["properties"]["results"]["items"])
    assert set(kinds["discriminator"]["mapping"]) == {"image", "video", "error"}
    video = schema["components"]["schemas"]["VideoResult"]
    frame_fields = resolve(video["properties"]["frame_predictions"]["items"])["properties"]
    assert {"frame", "time_s", "label", "probs"} <= set(frame_fields)
    refused = resolve(op["responses"]["415"]["content"]["application/json"]["schema"])
    assert {"detail", "reason"} <= set(refused["properties"])
    assert "undecodable" in op["responses"]["415"]["description"]
    # The other JSON endpoints say what they answer too.
    for path in ("/health", "/health/live", "/health/ready", "/metadata"):
        answer = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert resolve(answer["application/json"]["schema"])["properties"], path
    reload_ok = schema["paths"]["/reload"]["post"]["responses"]["200"]["content"]
    assert "reloaded" in resolve(reload_ok["application/json"]["schema"])["properties"]


def test_jpeg_exif_orientation_is_applied_as_in_frames(server, tmp_path):
    """A rotated JPEG (EXIF orientation 6) is turned upright, as the frames stage does."""
    img = Image.fromarray(frame(3, np.random.default_rng(9), size=48)[:, :40])
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    upright = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_270).save(upright, format="JPEG", quality=95)
    a = httpx.post(
        server.url + "/predict", files={"files": ("r.jpg", buf.getvalue(), "image/jpeg")}
    )
    b = httpx.post(
        server.url + "/predict", files={"files": ("u.jpg", upright.getvalue(), "image/jpeg")}
    )
    assert a.status_code == b.status_code == 200
    pa, pb = a.json()["results"][0]["probs"], b.json()["results"][0]["probs"]
    assert max(abs(pa[c] - pb[c]) for c in CLASSES) < 0.05  # same picture, JPEG noise apart


def test_lusaug_serve_logs_the_model_it_loaded(onnx_file, tmp_path):
    """The real `lusaug serve`: its log names the model, its version and its ONNX hash."""
    proc = ServerProcess(onnx_file, tmp_path).start()
    try:
        log = proc.log.read_text()
    finally:
        proc.stop()
    sha = sha256_file(onnx_file)
    loaded = "lusaug.serving.state: serving classifier.onnx (a file, not registered), "
    assert f"{loaded}onnx sha256 {sha}, from {onnx_file}" in log, log
