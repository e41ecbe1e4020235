"""Bad input in data/raw: each case is converted correctly or skipped with its reason in the report."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lusaug.data.decode import FrameSettings, decode_gif_pil
from lusaug.data.frames_plan import FramesError
from lusaug.data.pixels import pil_to_grey
from lusaug.stages.frames import FramesPaths, run
from tests.data.media_helpers import make_raw, small_params, write_video


def _run(raw: Path, out: Path, params) -> dict:
    paths = FramesPaths(raw, out / "frames", out / "frames.csv", out / "ingest.json")
    return run(paths, params.base, params.import_, params.frames)


@pytest.fixture
def raw(tmp_path) -> Path:
    """A valid raw folder (every class present) to which each test adds its bad file."""
    return make_raw(tmp_path / "raw", n_frames=6)


def _skip_reason(report: dict, rel: str) -> str:
    reasons = {s["file"]: s["reason"] for s in report["skipped"]}
    assert rel in reasons, f"{rel} not reported as skipped: {report['skipped']}"
    assert not any(f["file"] == rel for f in report["files"])
    return reasons[rel]


def _png(tmp_path: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(tmp_path / "out" / "frames" / rel), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.dtype == np.uint8 and img.ndim == 2
    return img


# --- files that cannot be decoded -------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "content", "reason"),
    [
        ("pocus_videos/convex/Cov_zero.mp4", b"", "empty file (0 bytes)"),
        ("pocus_images/convex/Reg_zero.png", b"", "empty file (0 bytes)"),
        ("pocus_videos/convex/Cov_text.mp4", b"this is not a video\n" * 20, "OpenCV cannot open"),
        ("pocus_videos/convex/Cov_noise.avi", bytes(range(256)) * 40, "OpenCV cannot open"),
        ("pocus_images/convex/Reg_text.png", b"hello, not a png\n", "Pillow cannot identify"),
    ],
)
def test_undecodable_files_are_skipped_with_reason(tmp_path, raw, params, rel, content, reason):
    (raw / rel).parent.mkdir(parents=True, exist_ok=True)
    (raw / rel).write_bytes(content)
    report = _run(raw, tmp_path / "out", small_params(params))
    assert reason in _skip_reason(report, rel)
    assert report["totals"]["files_processed"] == 4  # the valid clips are unaffected


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces width x height grey pixels, followed by a tiny IDAT: a few
    bytes on disk that would take width * height bytes to decode."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.mark.parametrize("side", [5000, 20000])  # above the cap; 20000 also above Pillow's own
def test_image_whose_header_announces_too_many_pixels_is_skipped_undecoded(
    tmp_path, raw, params, side
):
    rel = f"pocus_images/convex/Reg_bomb_{side}.png"
    (raw / rel).parent.mkdir(parents=True, exist_ok=True)
    (raw / rel).write_bytes(_png_header_only(side, side))
    capped = small_params(params, max_pixels=16_777_216)
    report = _run(raw, tmp_path / "out", capped)
    reason = _skip_reason(report, rel)
    assert "pixels" in reason or "too large" in reason, reason
    if side == 5000:  # under Pillow's bomb limit: only our cap stops it, before decoding
        assert f"{side}x{side}" in reason and "frames.max_pixels" in reason
    assert report["totals"]["files_processed"] == 4


def test_video_whose_header_announces_too_many_pixels_is_skipped(tmp_path, raw, params):
    rel = "pocus_videos/convex/Cov_wide.avi"
    write_video(raw / rel, 6, size=(128, 96))  # larger than the fixture's clips
    report = _run(raw, tmp_path / "out", small_params(params, max_pixels=128 * 96 - 1))
    assert "video header announces 128x96" in _skip_reason(report, rel)
    assert report["totals"]["files_processed"] == 4


def test_truncated_mp4_without_index_is_skipped(tmp_path, raw, params):
    full = write_video(tmp_path / "src.mp4", 30, fourcc="mp4v")
    data = full.read_bytes()
    rel = "pocus_videos/convex/Cov_cut.mp4"
    (raw / rel).write_bytes(data[: len(data) * 6 // 10])  # the moov atom sits at the end
    report = _run(raw, tmp_path / "out", small_params(params))
    assert "OpenCV cannot open" in _skip_reason(report, rel)


def test_truncated_avi_keeps_frames_decoded_before_the_cut(tmp_path, raw, params):
    full = write_video(tmp_path / "src.avi", 60, fourcc="MJPG")
    data = full.read_bytes()
    rel = "pocus_videos/convex/Cov_cut.avi"
    (raw / rel).write_bytes(data[: len(data) * 6 // 10])
    p = small_params(params, sample_fps=0.0, every_n=1, max_per_video=0)
    report = _run(raw, tmp_path / "out", p)
    info = next(f for f in report["files"] if f["file"] == rel)
    assert 0 < info["frames"] < 60
    assert info["frames_decoded"] == info["frames"]
    assert any("of the 60 frames the container reports" in n for n in info["notes"])


def test_all_black_video_is_skipped(tmp_path, raw, params):
    rel = "pocus_videos/convex/Reg_black.avi"
    write_video(raw / rel, 5, frame_fn=lambda i, h, w: np.zeros((h, w, 3), np.uint8))
    report = _run(raw, tmp_path / "out", small_params(params, auto_crop_black=True))
    assert "every sampled frame is black" in _skip_reason(report, rel)


@pytest.mark.parametrize("kind", ["video", "image", "cropped"])
def test_too_small_after_cropping_is_skipped(tmp_path, raw, params, kind):
    (raw / "pocus_images/convex").mkdir(parents=True, exist_ok=True)
    if kind == "video":
        rel = "pocus_videos/convex/Reg_tiny.avi"
        write_video(raw / rel, 4, size=(12, 10))
    elif kind == "image":
        rel = "pocus_images/convex/Reg_tiny.png"
        Image.fromarray(np.full((10, 40), 120, np.uint8)).save(raw / rel)
    else:  # big enough, but the black border leaves a 40x8 strip
        rel = "pocus_images/convex/Reg_strip.png"
        img = np.zeros((64, 64), np.uint8)
        img[20:28, 10:50] = 150
        Image.fromarray(img).save(raw / rel)
    report = _run(raw, tmp_path / "out", small_params(params, min_side=16))
    assert "too small after cropping" in _skip_reason(report, rel)


def test_unknown_prefix_and_unknown_file_type(tmp_path, raw, params):
    write_video(raw / "pocus_videos/convex/Tb_case1.avi", 4)
    (raw / "pocus_videos/convex/slides.pptx").write_bytes(b"PK")
    (raw / "README.md").write_text("about this folder")
    (raw / "crop.json").write_text("{}")
    report = _run(raw, tmp_path / "out", small_params(params))
    assert "unknown class prefix" in _skip_reason(report, "pocus_videos/convex/Tb_case1.avi")
    assert "not a video or image type (.pptx)" in _skip_reason(
        report, "pocus_videos/convex/slides.pptx"
    )
    skipped = {s["file"] for s in report["skipped"]}
    assert not skipped & {"README.md", "crop.json", "metadata.csv"}


def test_no_usable_file_for_a_class_stops_naming_it(tmp_path, params):
    raw = make_raw(tmp_path / "raw", n_frames=6)
    (raw / "pocus_videos/convex/Vir_clip0.avi").write_text("not a video")
    with pytest.raises(FramesError, match="no frames for class\\(es\\) 'viral'"):
        _run(raw, tmp_path / "out", small_params(params))
    report = json.loads((tmp_path / "out" / "ingest.json").read_text())
    assert "OpenCV cannot open" in _skip_reason(report, "pocus_videos/convex/Vir_clip0.avi")
    assert not (tmp_path / "out" / "frames.csv").exists()


# --- images that need converting ---------------------------------------------------------------

# These are stored at 32x32 with no cropping, so the PNG is exactly the converted image.
EXACT = {"auto_crop_black": False}


def _grey_ramp() -> np.ndarray:
    return np.tile((np.arange(32) * 8).astype(np.uint8), (32, 1))


def test_rgba_png_composited_over_black(tmp_path, raw, params):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :16, 3] = 255  # opaque left half
    rgba[:, 16:24, 3] = 128  # half transparent
    rgba[:, 24:, 3] = 0  # transparent
    Image.fromarray(rgba, "RGBA").save(raw / "Reg_rgba.png")
    _run(raw, tmp_path / "out", small_params(params, **EXACT))
    img = _png(tmp_path, "regular/Reg_rgba_00000.png")
    assert (img[:, :16] == 200).all()
    assert np.abs(img[:, 16:24].astype(int) - 100).max() <= 1
    assert (img[:, 24:] == 0).all()


def test_16bit_png_scaled_not_clipped(tmp_path, raw, params):
    ramp = _grey_ramp()
    Image.fromarray(ramp.astype(np.uint16) * 257).save(raw / "Reg_deep.png")  # mode I;16
    assert Image.open(raw / "Reg_deep.png").mode.startswith("I;16")
    _run(raw, tmp_path / "out", small_params(params, **EXACT))
    assert np.array_equal(_png(tmp_path, "regular/Reg_deep_00000.png"), ramp)


def test_palette_png(tmp_path, raw, params):
    ramp = _grey_ramp()
    rgb = np.dstack([ramp] * 3)
    Image.fromarray(rgb, "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=32).save(
        raw / "Reg_pal.png"
    )
    assert Image.open(raw / "Reg_pal.png").mode == "P"
    _run(raw, tmp_path / "out", small_params(params, **EXACT))
    assert np.array_equal(_png(tmp_path, "regular/Reg_pal_00000.png"), ramp)


def test_palette_png_with_transparent_index(tmp_path, raw, params):
    arr = np.ones((32, 32), np.uint8)
    arr[:, 20:] = 2
    pal = Image.fromarray(arr, "P")
    pal.putpalette([0, 0, 0, 180, 180, 180, 250, 250, 250] + [0] * (256 * 3 - 9))
    pal.info["transparency"] = 2
    pal.save(raw / "Reg_paltr.png", transparency=2)
    _run(raw, tmp_path / "out", small_params(params, **EXACT))
    img = _png(tmp_path, "regular/Reg_paltr_00000.png")
    assert (img[:, :20] == 180).all() and (img[:, 20:] == 0).all()


def test_cmyk_jpeg(tmp_path, raw, params):
    ramp = _grey_ramp()
    Image.fromarray(np.dstack([ramp] * 3), "RGB").convert("CMYK").save(
        raw / "Reg_cmyk.jpg", quality=100
    )
    assert Image.open(raw / "Reg_cmyk.jpg").mode == "CMYK"
    _run(raw, tmp_path / "out", small_params(params, **EXACT))
    img = _png(tmp_path, "regular/Reg_cmyk_00000.png")
    assert np.abs(img.astype(int) - ramp).mean() < 3  # JPEG loss only, not inverted or clipped


def test_truncated_jpeg_is_skipped(tmp_path, raw, params):
    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (raw / "Reg_cut.jpg").write_bytes(data[: len(data) // 2])
    report = _run(raw, tmp_path / "out", small_params(params))
    assert "cannot decode image" in _skip_reason(report, "Reg_cut.jpg")


def test_pil_to_grey_modes():
    ramp = _grey_ramp()
    assert np.array_equal(pil_to_grey(Image.fromarray(ramp)), ramp)
    assert np.array_equal(pil_to_grey(Image.fromarray(ramp).convert("LA")), ramp)
    one_bit = pil_to_grey(Image.fromarray(ramp).convert("1", dither=Image.Dither.NONE))
    assert set(np.unique(one_bit)) <= {0, 255}
    i32 = Image.fromarray(ramp.astype(np.int32) * 257)  # 16-bit data held in a 32-bit "I" image
    assert i32.mode == "I" and np.array_equal(pil_to_grey(i32), ramp)
    f01 = Image.fromarray(ramp.astype(np.float32) / 255.0)
    assert np.abs(pil_to_grey(f01).astype(int) - ramp).max() <= 1


# --- GIFs: OpenCV first, Pillow as the fallback --------------------------------------------------


def _gif(path: Path, n: int = 12, duration_ms: int = 100) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        a = np.full((40, 40), 30 + 15 * i, np.uint8)
        a[10:14] = 250
        frames.append(a)
    imgs = [Image.fromarray(a) for a in frames]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=duration_ms, loop=0)
    return frames


def test_gif_decoded_with_fps(tmp_path, raw, params):
    _gif(raw / "Cov_anim.gif", n=12, duration_ms=100)  # 10 fps, 1.2 s
    p = small_params(params, sample_fps=5.0, max_per_video=0, **EXACT)
    report = _run(raw, tmp_path / "out", p)
    info = next(f for f in report["files"] if f["file"] == "Cov_anim.gif")
    assert info["frame_indices"] == [0, 2, 4, 6, 8, 10]


def test_gif_pillow_fallback_matches(tmp_path):
    expected = _gif(tmp_path / "Cov_anim.gif", n=6, duration_ms=50)  # 20 fps
    settings = FrameSettings(
        image_size=40,
        sample_fps=0.0,
        every_n=2,
        max_per_video=0,
        auto_crop_black=False,
        black_threshold=12,
        min_side=8,
    )
    notes: list[str] = []
    info: dict = {}
    picked = decode_gif_pil(tmp_path / "Cov_anim.gif", settings, None, notes, info)
    assert [i for i, _ in picked] == [0, 2, 4]
    for i, frame in picked:
        assert np.array_equal(frame, expected[i])
    assert info["decoder"] == "pillow" and info["fps"] == 20.0
