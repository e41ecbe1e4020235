"""Fresh phantom patients: drawn from the simulator that made the data, absent from the data.

The phantom derives every patient from ``SeedSequence(phantom.seed)``: class ``c`` spawns two
streams, ``(c, 0)`` (the plan) and ``(c, 1)`` (its patients ``(c, 1, i)``). Fresh patients come
from a third stream that :func:`~lusaug.data.phantom.plan_phantom` never spawns,
``(c, FRESH_BRANCH, purpose, stream, index)``, so no fresh patient can share a seed with a
patient of the data, for any patient counts; :func:`check_disjoint` asserts it (and disjoint ids)
anyway. ``purpose`` separates uses (the oracle generator's images, a test set of new patients),
``stream`` separates draws of one use (e.g. the fold), ``index`` counts patients, so asking for
more images keeps the first patients as they were.

A fresh patient is drawn like a planned one: the class's anatomy and signs at
``phantom.difficulty``, a linear probe with probability ``phantom.linear_fraction``, clips per
patient uniform in ``phantom.clips_per_patient``, no still images. Its clips are rendered,
written as mp4v clips and sampled by the frames stage's own per-file worker
(:func:`lusaug.data.frames.process_file`: ``frames.sample_fps``, ``frames.max_per_video``, black
border trim, square pad, ``base.image_size``, the pixel-statistics drops), so its frames are made
exactly as the data's frames were, compression included.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from lusaug.core.config import Params
from lusaug.core.errors import LusaugError
from lusaug.data.decode import FrameSettings
from lusaug.data.frames import process_file
from lusaug.data.frames_plan import FileTask
from lusaug.data.phantom.dataset import (
    LICENSE,
    SOURCE,
    VIDEO_SUFFIX,
    PlannedPatient,
    class_prefixes,
    patient_of,
    write_video,
)
from lusaug.data.phantom.render import render_clip
from lusaug.data.phantom.source import PhantomSource

# plan_phantom spawns streams 0 (plan) and 1 (patients) per class; fresh patients use stream 2.
FRESH_BRANCH = 2
PURPOSES = {"oracle": 0, "test": 1}  # what fresh patients are for (part of their seed)
FRESH_PREFIX = "fresh"  # patient ids: fresh-<purpose>-s<stream>-<label>-p<index>
FRAME_COLUMNS = ["patient_id", "video_id", "frame_index", "probe", "label", "sha1"]


class FreshPatientError(LusaugError, ValueError):
    """Fresh patients cannot be drawn or rendered as asked."""


@dataclass
class PatientFrames:
    """Frames of rendered patients as the frames stage makes them, one table row per image."""

    images: np.ndarray  # uint8 (N, S, S), S = base.image_size
    table: pd.DataFrame  # FRAME_COLUMNS, same order as images
    skipped: list[str]  # clips the frames stage would skip, with the reason
    patients: list[PlannedPatient] = field(default_factory=list)  # whose frames these are


def _gen(ss: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(ss))


def fresh_patient(
    seed: int, params: Params, label: str, purpose: str, stream: int, index: int
) -> PlannedPatient:
    """Patient ``index`` of a fresh stream of class ``label`` of the phantom with ``seed``."""
    if purpose not in PURPOSES:
        raise FreshPatientError(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}")
    if stream < 0 or index < 0:
        raise FreshPatientError(f"stream and index must be >= 0, got {stream}, {index}")
    classes = params.base.classes
    if label not in classes:
        raise FreshPatientError(f"{label!r} is not in base.classes {classes}")
    ph = params.phantom
    key = (classes.index(label), FRESH_BRANCH, PURPOSES[purpose], stream, index)
    plan_ss, anatomy, clip_root = np.random.SeedSequence(seed, spawn_key=key).spawn(3)
    rng = _gen(plan_ss)
    probe = "linear" if rng.random() < ph.linear_fraction else "convex"
    lo, hi = ph.clips_per_patient
    n_clips = int(rng.integers(lo, hi + 1))
    return PlannedPatient(
        number=index + 1,
        patient_id=f"{FRESH_PREFIX}-{purpose}-s{stream}-{label}-p{index:04d}",
        label=label,
        prefix=class_prefixes(params)[label],
        probe=probe,
        n_clips=n_clips,
        n_images=0,
        seed=anatomy,
        clip_seeds=tuple(clip_root.spawn(n_clips)),
        image_seeds=(),
    )


def _is_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return len(a) <= len(b) and b[: len(a)] == a


def check_disjoint(source: PhantomSource, patients: Iterable[PlannedPatient]) -> None:
    """Raise unless no patient shares an id or a seed stream with a patient of the data."""
    patients = list(patients)
    shared = sorted({p.patient_id for p in patients} & source.patient_ids)
    if shared:
        raise FreshPatientError(f"fresh patient ids {shared[:3]} are patients of data/raw")
    data_roots = [tuple(pp.seed.spawn_key[:-1]) for pp in source.planned]
    for p in patients:
        root = tuple(p.seed.spawn_key[:-1])
        same_entropy = p.seed.entropy == np.random.SeedSequence(source.seed).entropy
        clash = [r for r in data_roots if _is_prefix(r, root) or _is_prefix(root, r)]
        if same_entropy and clash:
            raise FreshPatientError(
                f"fresh patient {p.patient_id} (seed stream {root}) overlaps data patient "
                f"stream {clash[0]}"
            )


def _sample_file(
    path: Path, kind: str, pp: PlannedPatient, video_id: str, settings: FrameSettings, out: Path
) -> tuple[list[np.ndarray], list[dict], str | None]:
    """One written clip or still through the frames stage's worker; its frames and rows."""
    task = FileTask(
        rel=path.name,
        path=str(path),
        kind=kind,
        label=pp.label,
        video_id=video_id,
        patient_id=pp.patient_id,
        probe=pp.probe,
        source=SOURCE,
        license=LICENSE,
    )
    res = process_file(task, settings, str(out), "frames")
    if res.skipped:
        return [], [], f"{video_id}: {res.skipped}"
    images, rows = [], []
    for row, idx in zip(res.rows, res.info["frame_indices"], strict=True):
        img = cv2.imread(str(out / Path(row["path"]).relative_to("frames")), cv2.IMREAD_GRAYSCALE)
        images.append(img)
        keep = {c: row[c] for c in ("patient_id", "video_id", "probe", "label", "sha1")}
        rows.append({**keep, "frame_index": idx})
    return images, rows, None


def render_patient_frames(
    pp: PlannedPatient, params: Params, settings: FrameSettings, work_dir: Path
) -> PatientFrames:
    """Render every clip and still of ``pp`` and sample them as the frames stage would."""
    ph = params.phantom
    pat = patient_of(pp, params)
    images: list[np.ndarray] = []
    rows: list[dict] = []
    skipped: list[str] = []
    for k, clip_ss in enumerate(pp.clip_seeds, start=1):
        clip = render_clip(pat, _gen(clip_ss), ph.frames_per_clip, ph.height, ph.width, ph.fps)
        video_id = f"{pp.patient_id}_c{k}"
        path = work_dir / f"{video_id}{VIDEO_SUFFIX}"
        write_video(path, clip, ph.fps)
        got = _sample_file(path, "video", pp, video_id, settings, work_dir / "out")
        images += got[0]
        rows += got[1]
        skipped += [got[2]] if got[2] else []
    for k, image_ss in enumerate(pp.image_seeds, start=1):
        still = render_clip(pat, _gen(image_ss), 1, ph.height, ph.width, ph.fps)[0]
        video_id = f"{pp.patient_id}_img{k}"
        path = work_dir / f"{video_id}.png"
        if not cv2.imwrite(str(path), still):
            raise OSError(f"cannot write {path}")
        got = _sample_file(path, "image", pp, video_id, settings, work_dir / "out")
        images += got[0]
        rows += got[1]
        skipped += [got[2]] if got[2] else []
    return _frames(images, rows, skipped, settings.image_size, [pp])


def _frames(
    images: list, rows: list, skipped: list[str], size: int, patients: Sequence[PlannedPatient]
) -> PatientFrames:
    stack = np.stack(images) if images else np.zeros((0, size, size), np.uint8)
    table = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    used = set(table["patient_id"])
    kept = [pp for pp in patients if pp.patient_id in used]
    return PatientFrames(images=stack, table=table, skipped=skipped, patients=kept)


def render_patients(
    patients: Sequence[PlannedPatient], params: Params, progress: bool = False
) -> PatientFrames:
    """Every frame of ``patients`` as the frames stage makes them (params.base/frames)."""
    settings = FrameSettings.from_params(params.base, params.frames)
    images, rows, skipped = [], [], []
    with tempfile.TemporaryDirectory(prefix="lusaug-fresh-") as tmp:
        for pp in tqdm(patients, desc="render", unit="patient", disable=not progress):
            got = render_patient_frames(pp, params, settings, Path(tmp))
            images += list(got.images)
            rows += got.table.to_dict("records")
            skipped += got.skipped
    return _frames(images, rows, skipped, params.base.image_size, patients)


def render_fresh_frames(
    seed: int,
    params: Params,
    label: str,
    purpose: str,
    stream: int,
    n_images: int,
    progress: bool = False,
) -> PatientFrames:
    """The first ``n_images`` frames of fresh patients 0, 1, ... of one stream.

    Patients are rendered in order until ``n_images`` frames are collected; every patient adds
    all its sampled frames (as a data patient does), the last one possibly only some.
    """
    if n_images < 1:
        raise FreshPatientError(f"n_images must be >= 1, got {n_images}")
    settings = FrameSettings.from_params(params.base, params.frames)
    images: list[np.ndarray] = []
    rows: list[dict] = []
    skipped: list[str] = []
    bar = tqdm(total=n_images, desc=f"fresh {label}", unit="img", disable=not progress)
    with tempfile.TemporaryDirectory(prefix="lusaug-fresh-") as tmp:
        index = 0
        drawn: list[PlannedPatient] = []
        while len(images) < n_images:
            if index >= n_images and not images:  # every patient >= 1 frame unless all drop
                raise FreshPatientError(
                    f"{index} fresh {label} patients gave no usable frame: check frames.min_std, "
                    "frames.min_mean and frames.max_mean against the phantom"
                )
            pp = fresh_patient(seed, params, label, purpose, stream, index)
            drawn.append(pp)
            got = render_patient_frames(pp, params, settings, Path(tmp))
            images += list(got.images)
            rows += got.table.to_dict("records")
            skipped += got.skipped
            bar.update(min(len(got.images), n_images - bar.n))
            index += 1
    bar.close()
    size = params.base.image_size
    return _frames(images[:n_images], rows[:n_images], skipped, size, drawn)
