"""The batch API: any mix of images and videos per request, one result or one error per file,
the same status for the same fault alone or in a batch, and `lusaug predict --json` answering
exactly what POST /predict answers."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from lusaug.cli import app as cli_app
from lusaug.core.config import PROJ_ROOT
from lusaug.export.model_input import FrameSpec, ImageLimits
from lusaug.serving.budget import ServeLimits
from lusaug.serving.faults import FAULTS, Reason, batch_status, responses_by_status
from lusaug.serving.inputs import decode, inspect
from lusaug.serving.preprocess import VideoSampling
from tests.export.helpers import CLASSES, frame, png_bytes
from tests.serving.corpus import FILE_FAULTS
from tests.serving.helpers import start_server, write_gif, write_video


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    rng = np.random.default_rng(3)
    (d / "scan.png").write_bytes(png_bytes(frame(2, rng, size=48)))
    (d / "other.png").write_bytes(png_bytes(frame(0, rng, size=40)))
    write_video(d / "short.mp4", n_frames=12, fps=12.0)
    write_video(d / "long.mp4", n_frames=36, fps=12.0, size=48)
    write_gif(d / "anim.gif")
    return d


def _part(path, ctype: str) -> tuple[str, tuple[str, bytes, str]]:
    return "files", (path.name, path.read_bytes(), ctype)


def _post(server, parts) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", files=parts, timeout=60)


def _probs(result: dict) -> list[float]:
    return [result["probs"][c] for c in CLASSES]


def test_two_videos_and_images_in_one_request_give_one_result_each(server, media, params):
    parts = [
        _part(media / "short.mp4", "video/mp4"),
        _part(media / "scan.png", "image/png"),
        _part(media / "long.mp4", "video/mp4"),
        _part(media / "anim.gif", "image/gif"),
    ]
    r = _post(server, parts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["predicted"], body["failed"]) == (4, 0)
    short, scan, long_, gif = body["results"]
    assert [x["kind"] for x in body["results"]] == ["video", "image", "video", "video"]
    assert [x["file"] for x in body["results"]] == [
        "short.mp4",
        "scan.png",
        "long.mp4",
        "anim.gif",
    ]
    step = round(12.0 / params.frames.sample_fps)
    assert [f["frame"] for f in short["frame_predictions"]] == list(range(0, 12, step))
    assert [f["frame"] for f in long_["frame_predictions"]] == list(range(0, 36, step))
    assert gif["frames"] >= 1 and scan["label"] in CLASSES
    # Each file's answer is what it gets alone: batching files changes nothing.
    for part, result in zip(parts, body["results"]):
        alone = _post(server, [part]).json()["results"][0]
        np.testing.assert_allclose(_probs(alone), _probs(result), atol=1e-6)
        frames = [(f["frame"], f["time_s"]) for f in result.get("frame_predictions", [])]
        assert frames == [(f["frame"], f["time_s"]) for f in alone.get("frame_predictions", [])]


def test_a_corrupt_file_among_good_ones_gets_its_own_error(server, media):
    cut = FILE_FAULTS["truncated video"][2]
    txt = FILE_FAULTS["a .txt file"][2]
    parts = [
        _part(media / "scan.png", "image/png"),
        ("files", cut),
        _part(media / "short.mp4", "video/mp4"),
        ("files", txt),
    ]
    r = _post(server, parts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["predicted"], body["failed"]) == (2, 2)
    scan, bad_video, video, bad_txt = body["results"]
    assert (scan["status"], video["status"]) == (200, 200)
    assert video["kind"] == "video" and video["frames"] >= 1
    for bad, name in ((bad_video, "cut.mp4"), (bad_txt, "notes.txt")):
        assert bad["kind"] == "error" and bad["file"] == name
        assert (bad["status"], bad["reason"]) == (415, "undecodable")
        assert bad["error"].startswith(name)


@pytest.mark.parametrize("case", list(FILE_FAULTS))
def test_the_same_fault_gets_the_same_status_alone_and_in_a_batch(server, media, case):
    status, reason, blob = FILE_FAULTS[case]
    alone = _post(server, [("files", blob)])
    assert (alone.status_code, alone.json()["reason"]) == (status, reason), alone.text
    (own,) = alone.json()["results"]  # every file's own error comes back, even when all fail
    assert (own["status"], own["reason"]) == (status, reason)
    batch = _post(server, [_part(media / "scan.png", "image/png"), ("files", blob)])
    assert batch.status_code == 200, batch.text
    good, bad = batch.json()["results"]
    assert good["status"] == 200 and good["label"] in CLASSES
    assert (bad["status"], bad["reason"], bad["kind"]) == (status, reason, "error")


def test_a_request_whose_files_all_fail_gets_their_common_status_or_422(server):
    strip, undecodable, unsupported = (
        FILE_FAULTS[c][2] for c in ("4096x1 strip", "non-image bytes", "webp (not a frames type)")
    )
    same_status = _post(server, [("files", undecodable), ("files", unsupported)])
    assert same_status.status_code == 415 and same_status.json()["reason"] == "mixed"
    mixed = _post(server, [("files", strip), ("files", undecodable)])
    assert mixed.status_code == 422 and mixed.json()["reason"] == "mixed"
    reasons = [x["reason"] for x in mixed.json()["results"]]
    assert reasons == ["too_narrow", "undecodable"]
    assert "strip.png" in mixed.json()["detail"] and "x.png" in mixed.json()["detail"]


def test_batch_status_rule():
    assert batch_status([Reason.UNDECODABLE] * 3) == (415, Reason.UNDECODABLE)
    assert batch_status([Reason.UNDECODABLE, Reason.EMPTY_FILE]) == (415, Reason.MIXED)
    assert batch_status([Reason.TOO_NARROW, Reason.IMAGE_TOO_LARGE]) == (422, Reason.MIXED)
    assert set(FAULTS) == set(Reason)  # every reason has its one status
    assert {f.status for f in FAULTS.values()} == {400, 413, 415, 422, 503}


def test_the_readme_status_table_is_the_faults_table():
    """Every reason the server can answer is in the README's table, under its status."""
    readme = (PROJ_ROOT / "README.md").read_text()
    table = {}
    for status, reasons in re.findall(r"^\| (\d{3}) \| [^|]+ \| (.+) \|$", readme, re.MULTILINE):
        table[int(status)] = re.findall(r"`([a-z_]+)`", reasons)
    http = {s: [r.value for r in rs] for s, rs in responses_by_status().items()}
    assert {s: set(names) & set(Reason) for s, names in table.items()} == {
        s: set(names) for s, names in http.items()
    }


def test_the_pixel_budget_counts_every_video_and_image_of_a_batch(onnx_file, params, media):
    """Two 40 px clips keep 2 x 6 frames of 1600 pixels: over a 15000-pixel budget together,
    within it alone."""
    live = start_server(onnx_file, params, limits=ServeLimits(max_request_pixels=15_000))
    try:
        clip = write_video(media / "budget.mp4", n_frames=24, fps=12.0, size=40)
        one = _part(clip, "video/mp4")
        both = httpx.post(f"{live.url}/predict", files=[one, one], timeout=60)
        assert both.status_code == 413 and both.json()["reason"] == "request_pixel_budget"
        assert "19200 pixels" in both.json()["detail"], both.text
        alone = httpx.post(f"{live.url}/predict", files=[one], timeout=60)
        assert alone.status_code == 200, alone.text
    finally:
        live.stop()


def test_an_all_black_image_is_refused_when_the_model_trims_borders(media):
    """Border trimming leaves nothing of a black image: its own 422, the other file goes on."""
    files = [
        ("black.png", "image/png", (media / "black.png")),
        ("scan.png", "image/png", (media / "scan.png")),
    ]
    (media / "black.png").write_bytes(png_bytes(np.zeros((48, 64), np.uint8)))
    spec = FrameSpec(32, auto_crop_black=True, black_threshold=12)
    handles = [(n, t, p.open("rb")) for n, t, p in files]
    try:
        plan = inspect(handles, ImageLimits(), VideoSampling(), spec, 0)
        decode(plan, spec, VideoSampling(), 0)
    finally:
        for _, _, fh in handles:
            fh.close()
    black, scan = plan.entries
    assert black.error is not None and black.error.reason == Reason.ALL_BLACK
    assert black.error.status == 422 and "entirely black" in str(black.error)
    assert scan.error is None and scan.frames.shape == (1, 32, 32)


def test_lusaug_predict_json_is_the_http_answer(server, onnx_file, media, tmp_path, monkeypatch):
    """Same files, same names: `lusaug predict --json` prints what POST /predict answers."""
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    for name in ("scan.png", "short.mp4", "anim.gif"):
        shutil.copy(media / name, tmp_path / name)
    bad_name, bad_data, bad_type = FILE_FAULTS["a .txt file"][2]
    (tmp_path / bad_name).write_bytes(bad_data)
    names = ["scan.png", "short.mp4", bad_name, "anim.gif"]
    monkeypatch.chdir(tmp_path)
    cli = CliRunner().invoke(cli_app, ["predict", *names, "--model", str(onnx_file), "--json"])
    assert cli.exit_code == 1, cli.output  # one file failed
    types = {"scan.png": "image/png", "short.mp4": "video/mp4", "anim.gif": "image/gif"}
    parts = [("files", (n, (tmp_path / n).read_bytes(), types.get(n, bad_type))) for n in names]
    http = _post(server, parts)
    assert http.status_code == 200
    offline, online = json.loads(cli.output), http.json()
    assert offline.pop("elapsed_ms") >= 0 and online.pop("elapsed_ms") >= 0
    assert offline == online
