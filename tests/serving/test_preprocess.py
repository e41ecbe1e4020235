"""Serving preprocessing = the frames stage geometry (trim, pad, resize) + training's norm."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lusaug.data.pixels import bgr_to_grey, to_square
from lusaug.export.model_input import (
    BadInput,
    FrameSpec,
    ImageLimits,
    decode_image,
    normalise,
    prepare_frames,
)
from lusaug.serving.preprocess import VideoSampling, decode_video, media_kind, open_video
from tests.export.helpers import png_bytes
from tests.serving.helpers import write_video


def _content(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(40, 255, (h, w), dtype=np.uint8)


def test_non_square_image_is_padded_not_stretched():
    img = _content(40, 80)
    out = prepare_frames([img], FrameSpec(32))
    np.testing.assert_array_equal(out[0], to_square(img, 32))
    assert out[0][:8].max() == 0  # the black pad of a wide image sits above and below


def test_black_border_is_trimmed_like_the_frames_stage():
    inner = _content(50, 30)
    img = np.zeros((70, 60), np.uint8)
    img[10:60, 20:50] = inner
    trimmed = prepare_frames([img], FrameSpec(32, auto_crop_black=True, black_threshold=12))
    np.testing.assert_array_equal(trimmed[0], to_square(inner, 32))
    untrimmed = prepare_frames([img], FrameSpec(32))
    assert not np.array_equal(trimmed[0], untrimmed[0])


def test_stored_frames_pass_through_and_black_images_are_refused():
    stored = _content(32, 32)
    stored[:, :3] = 0  # dark edge columns that trimming would remove
    out = prepare_frames([stored], FrameSpec(32, auto_crop_black=True, black_threshold=12))
    np.testing.assert_array_equal(out[0], stored)
    with pytest.raises(BadInput, match="black"):
        prepare_frames([np.zeros((50, 50), np.uint8)], FrameSpec(32, True, 12))


def test_video_frames_share_one_trim_box():
    frames = []
    for k in range(3):
        f = np.zeros((60, 60), np.uint8)
        f[5 + k : 40, 10:50] = 200  # the content box moves a little; the union decides
        frames.append(f)
    joint = prepare_frames(frames, FrameSpec(32, True, 12), joint=True)
    own = prepare_frames(frames, FrameSpec(32, True, 12), joint=False)
    np.testing.assert_array_equal(joint[0], to_square(frames[0][5:40, 10:50], 32))
    assert not np.array_equal(joint[2], own[2])


def test_normalise_matches_training_formula():
    x = normalise(np.array([[[0, 255]]], np.uint8), mean=0.5, std=0.25)
    np.testing.assert_allclose(x[0, 0, 0], [-2.0, 2.0])
    assert x.shape == (1, 1, 1, 2) and x.dtype == np.float32


def test_decode_image_greyscale_and_video_sampling(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 1] = 255
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    assert decode_image(buf.getvalue()).max() == round(0.587 * 255)  # ITU-R 601, as frames does
    assert decode_image(png_bytes(_content(8, 8))).shape == (8, 8)
    clip = write_video(tmp_path / "c.mp4", n_frames=24, fps=12.0, size=40)
    header = open_video(clip, ImageLimits(), "c.mp4")
    assert (header.width, header.height, header.fps, header.frame_count) == (40, 40, 12.0, 24)
    assert header.expected_frames(VideoSampling(sample_fps=3.0)) == 6
    frames, index = decode_video(clip, header, VideoSampling(sample_fps=3.0), FrameSpec(40))
    assert frames.shape == (6, 40, 40)  # 2 s at 3 fps: frames 0, 4, 8, ...
    assert index == [0, 4, 8, 12, 16, 20]
    means = frames.reshape(6, -1).mean(1)
    assert np.all(np.diff(means) > 0)  # later (brighter) frames, in order
    capped, index = decode_video(
        clip, header, VideoSampling(sample_fps=0, every_n=5, max_frames=3), FrameSpec(40)
    )
    assert len(capped) == 3 and index == [0, 5, 10]


def _all_frames(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            return out
        out.append(bgr_to_grey(bgr))


def test_streamed_video_matches_a_joint_trim_of_the_full_stack(tmp_path):
    """Streaming at model size gives what trimming the whole decoded stack jointly gives."""
    path = tmp_path / "bordered.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 6.0, (96, 64))
    rng = np.random.default_rng(3)
    for k in range(12):
        img = np.zeros((64, 96), np.uint8)  # black letterbox around a moving bright box
        img[8 + k % 3 : 50, 20:80] = rng.integers(60, 250, (42 - k % 3, 60), dtype=np.uint8)
        w.write(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR))
    w.release()
    sampling = VideoSampling(sample_fps=3.0)
    spec = FrameSpec(32, auto_crop_black=True, black_threshold=12)
    got, index = decode_video(path, open_video(path, ImageLimits(), "v"), sampling, spec)
    full = _all_frames(path)
    kept = [full[i] for i in range(0, len(full), 2)]  # 6 fps sampled at 3 fps
    np.testing.assert_array_equal(got, prepare_frames(kept, spec, joint=True))
    assert index == list(range(0, len(full), 2))  # the second (trimming) pass keeps them


def test_video_pixel_budget_is_enforced_while_streaming(tmp_path):
    clip = write_video(tmp_path / "c.mp4", n_frames=24, fps=12.0, size=40)
    header = open_video(clip, ImageLimits(), "c.mp4")
    with pytest.raises(BadInput, match="budget") as err:
        decode_video(clip, header, VideoSampling(sample_fps=3.0), FrameSpec(32), 3 * 40 * 40)
    assert err.value.status == 413


def test_media_kind_reads_suffix_any_case_then_content_type():
    assert media_kind("clip.MP4", "application/octet-stream") == ("video", ".mp4")
    assert media_kind("clip.mpeg", "video/mpeg") == ("video", ".mpeg")
    assert media_kind("anim.GIF", "image/gif") == ("video", ".gif")
    assert media_kind("scan.TIF", "") == ("image", ".tif")
    assert media_kind("body", "video/mpeg")[0] == "video"
    with pytest.raises(BadInput, match="unsupported video type") as err:
        media_kind("clip.xyz", "video/x-unknown")
    assert err.value.status == 415
