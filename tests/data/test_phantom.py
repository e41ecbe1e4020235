"""The embedded phantom: deterministic, complete, correlated within a patient, not across."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.data.hashing import cross_group_nearest, hex_to_words, phash_hex
from lusaug.data.manifest import RAW_METADATA_COLUMNS, RAW_METADATA_NAME
from lusaug.data.phantom import (
    LICENSE,
    SOURCE,
    class_prefixes,
    patient_of,
    phantom_grid,
    plan_phantom,
    render_clip,
    sample_patient,
    simulate_patient,
    write_phantom,
)


def _with(params, **phantom):
    return dataclasses.replace(params, phantom=dataclasses.replace(params.phantom, **phantom))


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _decode(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cap.release()
    return frames


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


@pytest.fixture(scope="module")
def written(tmp_path_factory, micro_params):
    out = tmp_path_factory.mktemp("phantom") / "raw"
    summary = write_phantom(out, micro_params)
    return out, summary


def test_every_class_with_the_configured_counts(written, micro_params):
    out, summary = written
    ph = micro_params.phantom
    meta = pd.read_csv(out / RAW_METADATA_NAME, dtype=str, keep_default_na=False)
    assert list(meta.columns) == RAW_METADATA_COLUMNS
    for label in micro_params.base.classes:
        rows = meta[meta.label == label]
        videos = rows[rows.file.str.endswith(".mp4")]
        images = rows[rows.file.str.endswith(".png")]
        assert rows.patient_id.nunique() == ph.patients[label], label
        assert len(images) == ph.images_per_class, label
        clips_per_patient = videos.groupby("patient_id").size()
        lo, hi = ph.clips_per_patient
        assert clips_per_patient.between(lo, hi).all(), label
        counts = summary["per_class"][label]
        assert counts["patients"] == ph.patients[label]
        assert counts["clips"] == len(videos)
        assert counts["frames"] == len(videos) * ph.frames_per_clip
        assert counts["images"] == len(images)
    # one patient never spans two classes
    assert (meta.groupby("patient_id").label.nunique() == 1).all()
    assert set(meta.source) == {SOURCE} and set(meta.license) == {LICENSE}
    n_linear = meta.drop_duplicates("patient_id").probe.eq("linear").sum()
    assert 0 < n_linear < meta.patient_id.nunique()


def test_metadata_matches_the_files(written, micro_params):
    out, _ = written
    ph = micro_params.phantom
    prefixes = class_prefixes(micro_params)
    meta = pd.read_csv(out / RAW_METADATA_NAME, dtype=str, keep_default_na=False)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - set(meta.file) == {RAW_METADATA_NAME, "README.md"}
    assert "synthetic" in (out / "README.md").read_text().lower()
    for row in meta.itertuples():
        path = Path(row.file)
        kind, probe, name = path.parts
        assert probe == row.probe
        assert name.startswith(f"{prefixes[row.label]}_{row.patient_id}_")
        if kind == "pocus_videos":
            frames = _decode(out / path)
            assert len(frames) == ph.frames_per_clip
            assert frames[0].shape == (ph.height, ph.width)
        else:
            assert kind == "pocus_images"
            img = cv2.imread(str(out / path), cv2.IMREAD_UNCHANGED)
            assert img.dtype == np.uint8 and img.shape == (ph.height, ph.width)


def test_same_seed_same_bytes_other_seed_differs(written, micro_params, tmp_path):
    out, _ = written
    again = tmp_path / "again"
    write_phantom(again, micro_params)
    assert _digests(again) == _digests(out)
    other = tmp_path / "other"
    write_phantom(other, micro_params, seed=micro_params.phantom.seed + 1)
    first, second = _digests(out), _digests(other)
    changed = [f for f in first if f.endswith((".mp4", ".png")) and first[f] != second.get(f)]
    assert len(changed) == sum(f.endswith((".mp4", ".png")) for f in first)


def test_pure_renderer_is_deterministic(micro_params):
    plan = plan_phantom(micro_params)
    clips_a, images_a = simulate_patient(plan[0], micro_params)
    clips_b, images_b = simulate_patient(plan[0], micro_params)
    for a, b in zip(clips_a + images_a, clips_b + images_b, strict=True):
        assert a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
    other = plan_phantom(micro_params, seed=micro_params.phantom.seed + 1)[0]
    assert not np.array_equal(simulate_patient(other, micro_params)[0][0], clips_a[0])


def test_frames_of_a_clip_are_correlated_patients_are_not(micro_params):
    ph = micro_params.phantom
    within, first_frames = [], []
    for pp in plan_phantom(micro_params):
        clips, _ = simulate_patient(pp, micro_params)
        for clip in clips:
            within += [_corr(clip[t], clip[t + 1]) for t in range(len(clip) - 1)]
        first_frames.append((pp.probe, clips[0][ph.frames_per_clip // 2]))
    between = [
        _corr(a, b)
        for i, (probe_a, a) in enumerate(first_frames)
        for probe_b, b in first_frames[i + 1 :]
        if probe_a == probe_b  # same probe: the shared fan shape is the hardest case
    ]
    assert min(within) > 0.8
    assert np.mean(within) > np.mean(between) + 0.25


def test_convex_fan_has_black_corners_linear_fills_the_width(micro_params):
    ph = micro_params.phantom
    rng = np.random.default_rng(0)
    for probe in ("convex", "linear"):
        for _ in range(3):
            pat = sample_patient("covid", probe, rng, ph.difficulty)
            clip = render_clip(pat, rng, 4, ph.height, ph.width, ph.fps)
            assert clip.shape == (4, ph.height, ph.width)
            centre = clip[:, ph.height // 3 :, ph.width // 2 - 4 : ph.width // 2 + 4]
            assert centre.mean() > 10
            wall = clip[:, int(ph.height * 0.08) : int(ph.height * 0.12)].mean(axis=(0, 1))
            if probe == "convex":
                for y, x in [(0, 0), (0, -4), (-4, 0), (-4, -4)]:
                    patch = clip[:, y : y + 4 or None, x : x + 4 or None]
                    assert patch.max() == 0, (y, x)
                assert (wall > 0).mean() < 0.8  # the fan is narrow near the skin
            else:
                assert (wall > 0).mean() > 0.8  # a rectangle: (almost) the whole width


def test_class_signs_fade_with_difficulty(micro_params):
    """Same patient seed: textbook covid shows more B-line echo below the pleura than faint."""
    ph = micro_params.phantom
    bright = {}
    for difficulty in (0.0, 1.0):
        pat = sample_patient("covid", "linear", np.random.default_rng(3), difficulty)
        clip = render_clip(pat, np.random.default_rng(4), 3, ph.height, ph.width, ph.fps)
        bright[difficulty] = (pat.strength, clip[:, int(ph.height * 0.6) :].mean())
    assert bright[0.0][0] > 0.5 > bright[1.0][0]
    assert bright[0.0][1] > bright[1.0][1] + 5


def _crop_black(frame: np.ndarray, threshold: int) -> np.ndarray:
    rows = np.flatnonzero(frame.max(axis=1) > threshold)
    cols = np.flatnonzero(frame.max(axis=0) > threshold)
    return frame[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def test_no_near_identical_frames_across_patients(written, micro_params):
    """`validate` calls frames within phash_max_distance leakage: different patients never are.

    Frames are prepared as the frames stage does (black border trimmed, resized to image_size),
    the worst case for a fan: every convex frame then fills the same box.
    """
    out, _ = written
    size = micro_params.base.image_size
    meta = pd.read_csv(out / RAW_METADATA_NAME, dtype=str, keep_default_na=False)
    hashes, hashes64, patients = [], [], []
    for row in meta.itertuples():
        path = out / row.file
        frames = _decode(path) if path.suffix == ".mp4" else [cv2.imread(str(path), 0)]
        for frame in frames:
            small = cv2.resize(_crop_black(frame, 12), (size, size), interpolation=cv2.INTER_AREA)
            hashes.append(phash_hex(small, micro_params.validate.phash_size))
            hashes64.append(phash_hex(small, 8))
            patients.append(row.patient_id)
    nearest, _ = cross_group_nearest(hex_to_words(hashes), patients)
    assert nearest.min() > micro_params.validate.phash_max_distance
    # even the coarse 64-bit pHash keeps different patients apart
    nearest64, _ = cross_group_nearest(hex_to_words(hashes64), patients)
    assert nearest64.min() > 4


def test_refuses_a_non_empty_folder_without_force(micro_params, tmp_path):
    small = _with(
        micro_params,
        patients={c: 1 for c in micro_params.base.classes},
        clips_per_patient=[1, 1],
        frames_per_clip=2,
        images_per_class=0,
    )
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty.*force"):
        write_phantom(out, small)
    assert (out / "keep.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no temp folder left behind
    summary = write_phantom(out, small, force=True)
    assert not (out / "keep.txt").exists()
    assert summary["clips"] == len(list(out.rglob("*.mp4"))) == len(small.base.classes)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_phantom(empty, small)["patients"] == len(small.base.classes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"height": 20}, "height/width"),
        ({"difficulty": 1.5}, "difficulty"),
        ({"clips_per_patient": [2, 1]}, "clips_per_patient"),
        ({"linear_fraction": -0.1}, "linear_fraction"),
    ],
)
def test_bad_parameters_are_named(micro_params, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        write_phantom(tmp_path / "raw", _with(micro_params, **change))
    assert not (tmp_path / "raw").exists()


def test_probe_share_and_patient_numbering(params):
    """Default profile plan: linear share as configured, ids unique, other classes unchanged."""
    plan = plan_phantom(params)
    ph = params.phantom
    assert len({pp.patient_id for pp in plan}) == len(plan) == sum(ph.patients.values())
    share = np.mean([pp.probe == "linear" for pp in plan])
    assert abs(share - ph.linear_fraction) < 0.1
    # changing one class's count renumbers later patients but leaves their anatomy alone
    fewer = _with(params, patients={**ph.patients, "regular": 1})
    covid = [pp for pp in plan if pp.label == "covid"]
    covid_after = [pp for pp in plan_phantom(fewer) if pp.label == "covid"]
    assert covid_after[0].number == 2 and covid[0].number == ph.patients["regular"] + 1
    a, b = patient_of(covid[0], params), patient_of(covid_after[0], fewer)
    assert a.pleura == b.pleura and a.blines == b.blines


def test_cli_writes_phantom_and_grid(micro_params_dict, tmp_path):
    params_file = tmp_path / "params.yaml"
    small = yaml.safe_load(yaml.safe_dump(micro_params_dict))
    small["phantom"].update(
        patients={c: 1 for c in small["base"]["classes"]}, frames_per_clip=3, images_per_class=0
    )
    params_file.write_text(yaml.safe_dump(small))
    grid = tmp_path / "grid.png"
    args = ["phantom", "--out", str(tmp_path / "raw"), "--params", str(params_file)]
    result = CliRunner().invoke(app, [*args, "--grid", str(grid)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "raw" / RAW_METADATA_NAME).exists()
    with Image.open(grid) as im:
        assert im.mode == "L" and im.width > 200
    assert grid.stat().st_size < 300_000
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "is not empty" in again.output and "--force" in again.output


def test_grid_helper(micro_params, tmp_path):
    out = phantom_grid(micro_params, tmp_path / "img" / "grid.png", per_class=2)
    with Image.open(out) as im:
        assert im.mode == "L"
        grey = np.asarray(im)
    assert grey.std() > 20  # frames, not a blank canvas
