"""Ecosystem conventions: health probes, Prometheus metrics, version + intended use on every
response, and every file type the frames stage reads, uploaded the way curl sends them."""

from __future__ import annotations

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
from lusaug.config import PROJ_ROOT
from lusaug.data.ingest import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from lusaug.serving.prometheus import INTENDED_USE
from tests.export.helpers import CLASSES, frame, png_bytes
from tests.serving.helpers import start_server, write_gif, write_mpeg, write_video

CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def server(onnx_file, params):
    live = start_server(onnx_file, params)
    yield live
    live.stop()


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
    if name.lower().endswith((".mpeg", ".gif", ".mp4")):
        assert result["video"]["file"] == name and result["video"]["frames"] >= 1
        assert result["video"]["label"] in CLASSES
    else:
        assert result["predictions"][0]["label"] in CLASSES
    assert result["intended_use"] == INTENDED_USE


def test_raw_body_video_types_are_named_from_the_content_type(server, media):
    data = media["clip.mpeg"].read_bytes()
    r = httpx.post(server.url + "/predict", content=data, headers={"content-type": "video/mpeg"})
    assert r.status_code == 200, r.text
    assert r.json()["video"]["file"] == "body.mpeg"


def test_lusaug_predict_reads_the_same_types(onnx_file, media, tmp_path, monkeypatch):
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    names = ["clip.mpeg", "anim.gif", "CLIP.MP4", "scan.bmp", "scan.TIF", "scan.JPG"]
    args = ["predict", *(str(media[n]) for n in names), "--model", str(onnx_file), "--json"]
    r = CliRunner().invoke(cli_app, args)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["intended_use"] == INTENDED_USE
    assert [p["file"] for p in out["predictions"]] == [str(media[n]) for n in names]
    assert all("error" not in p for p in out["predictions"])
    assert [("frames" in p) for p in out["predictions"]] == [True] * 3 + [False] * 3


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
    assert bad.status_code == 422 and bad.json()["detail"]


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
    bad = {**ok, "status": "422"}
    assert _metric(after, "lusaug_http_requests_total", **bad) >= 1
    assert _metric(after, "lusaug_http_request_duration_seconds_count", route="/predict") >= 4
    assert "lusaug_http_request_duration_seconds_bucket{" in after  # a histogram, by le
    assert _metric(after, "lusaug_batch_size_frames_count", model_name="classifier.onnx") >= 3
    assert _metric(after, "lusaug_model_info", model_name="classifier.onnx") == 1
    assert _metric(after, "lusaug_refused_requests_total", reason="422") >= 1


def test_openapi_schema_describes_multipart_and_raw_bodies(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["files"]["type"] == "array"
    assert {"image/png", "image/jpeg", "video/mp4", "video/mpeg", "image/gif"} <= set(body)
    assert {"413", "415", "422", "503"} <= set(schema["paths"]["/predict"]["post"]["responses"])


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
    pa, pb = a.json()["predictions"][0]["probs"], b.json()["predictions"][0]["probs"]
    assert max(abs(pa[c] - pb[c]) for c in CLASSES) < 0.05  # same picture, JPEG noise apart
