"""The phantom data set: plan patients and seeds, render them, write the POCUS-style raw folder.

:func:`plan_phantom` decides patients, probes, clip/image counts and every seed without
rendering; :func:`write_phantom` renders the plan into ``pocus_videos/``, ``pocus_images/``,
``metadata.csv`` and a ``README.md``, atomically.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from lusaug.core.config import Params, PhantomParams
from lusaug.core.utils import atomic_path
from lusaug.data.manifest import RAW_METADATA_COLUMNS, RAW_METADATA_NAME
from lusaug.data.phantom.anatomy import MIN_SIDE, Patient, sample_patient
from lusaug.data.phantom.render import render_clip

logger = logging.getLogger(__name__)

SOURCE = "phantom"
LICENSE = "CC0-1.0 (synthetic)"
VIDEO_DIR = "pocus_videos"
IMAGE_DIR = "pocus_images"
VIDEO_FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"


@dataclass(frozen=True)
class PlannedPatient:
    """One patient of the phantom data set: who they are and the seeds of their files."""

    number: int  # 1-based, unique over all classes
    patient_id: str
    label: str
    prefix: str
    probe: str
    n_clips: int
    n_images: int
    seed: np.random.SeedSequence  # anatomy
    clip_seeds: tuple[np.random.SeedSequence, ...]
    image_seeds: tuple[np.random.SeedSequence, ...]


def class_prefixes(params: Params) -> dict[str, str]:
    """File-name prefix per class: the first prefix in import.prefixes that maps to it."""
    out: dict[str, str] = {}
    for prefix, label in params.import_.prefixes.items():
        out.setdefault(label, prefix)
    missing = [c for c in params.base.classes if c not in out]
    if missing:
        raise ValueError(f"import.prefixes has no file-name prefix for class(es) {missing}")
    return out


def _check(ph: PhantomParams, classes: list[str]) -> None:
    lo, hi = (ph.clips_per_patient + [0, 0])[:2]
    problems = []
    if len(ph.clips_per_patient) != 2 or not 1 <= lo <= hi:
        problems.append(
            f"clips_per_patient must be [min, max] with 1 <= min <= max, got "
            f"{ph.clips_per_patient}"
        )
    if ph.frames_per_clip < 1:
        problems.append(f"frames_per_clip must be >= 1, got {ph.frames_per_clip}")
    if ph.fps <= 0:
        problems.append(f"fps must be > 0, got {ph.fps}")
    if min(ph.height, ph.width) < MIN_SIDE or ph.height % 2 or ph.width % 2:
        problems.append(f"height/width must be even and >= {MIN_SIDE}, got {ph.height}x{ph.width}")
    if not 0.0 <= ph.linear_fraction <= 1.0:
        problems.append(f"linear_fraction must be in [0, 1], got {ph.linear_fraction}")
    if not 0.0 <= ph.difficulty <= 1.0:
        problems.append(f"difficulty must be in [0, 1], got {ph.difficulty}")
    if ph.images_per_class < 0:
        problems.append(f"images_per_class must be >= 0, got {ph.images_per_class}")
    bad = {c: n for c, n in ph.patients.items() if n < 0}
    if bad:
        problems.append(f"patients must be >= 0, got {bad}")
    unknown = sorted(set(classes) - {"regular", "covid", "pneumonia", "viral"})
    if unknown:
        problems.append(f"the phantom simulates regular/covid/pneumonia/viral only, not {unknown}")
    if problems:
        raise ValueError("phantom parameters: " + "; ".join(problems))


def plan_phantom(params: Params, seed: int | None = None) -> list[PlannedPatient]:
    """Decide patients, probes, clip and image counts and every seed (no rendering)."""
    ph = params.phantom
    classes = params.base.classes
    _check(ph, classes)
    prefixes = class_prefixes(params)
    root = np.random.SeedSequence(ph.seed if seed is None else seed)
    total = sum(ph.patients[c] for c in classes)
    width = max(2, len(str(total)))
    plan: list[PlannedPatient] = []
    number = 0
    for label, class_ss in zip(classes, root.spawn(len(classes)), strict=True):
        n = ph.patients[label]
        plan_ss, patients_ss = class_ss.spawn(2)
        rng = np.random.Generator(np.random.PCG64(plan_ss))
        n_linear = math.floor(ph.linear_fraction * n + 0.5)
        linear = set(rng.permutation(n)[:n_linear].tolist())
        lo, hi = ph.clips_per_patient
        clips = rng.integers(lo, hi + 1, size=n)
        images = [len(range(i, ph.images_per_class, n)) if n else 0 for i in range(n)]
        for i, pss in enumerate(patients_ss.spawn(n)):
            number += 1
            anat, clip_root, image_root = pss.spawn(3)
            plan.append(
                PlannedPatient(
                    number=number,
                    patient_id=f"phantom_p{number:0{width}d}",
                    label=label,
                    prefix=prefixes[label],
                    probe="linear" if i in linear else "convex",
                    n_clips=int(clips[i]),
                    n_images=images[i],
                    seed=anat,
                    clip_seeds=tuple(clip_root.spawn(int(clips[i]))),
                    image_seeds=tuple(image_root.spawn(images[i])),
                )
            )
    return plan


def _mode(base: int) -> int:
    """``base`` permissions minus the process umask (what open()/mkdir() would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def _gen(ss: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(ss))


def patient_of(planned: PlannedPatient, params: Params) -> Patient:
    """The simulated anatomy of a planned patient."""
    return sample_patient(
        planned.label,
        planned.probe,
        _gen(planned.seed),
        params.phantom.difficulty,
        planned.patient_id,
    )


def simulate_patient(
    planned: PlannedPatient, params: Params
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render all clips (n, H, W) and still images (H, W) of one planned patient, as uint8."""
    ph = params.phantom
    pat = patient_of(planned, params)
    clips = [
        render_clip(pat, _gen(s), ph.frames_per_clip, ph.height, ph.width, ph.fps)
        for s in planned.clip_seeds
    ]
    images = [
        render_clip(pat, _gen(s), 1, ph.height, ph.width, ph.fps)[0] for s in planned.image_seeds
    ]
    return clips, images


def _stem(pp: PlannedPatient) -> str:
    return f"{pp.prefix}_{pp.patient_id}"


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write grey frames as an mp4v clip and check it decodes back with every frame."""
    n, h, w = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (w, h), True)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot open a {VIDEO_FOURCC} writer for {path}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = 0
    try:
        while cap.read()[0]:
            decoded += 1
    finally:
        cap.release()
    if decoded != n:
        raise RuntimeError(f"{path} decodes to {decoded} frames, wrote {n}")


def _readme(params: Params, seed: int, counts: dict[str, dict[str, int]]) -> str:
    ph = params.phantom
    rows = "\n".join(
        f"| {c} | {v['patients']} | {v['clips']} | {v['frames']} | {v['images']} |"
        for c, v in counts.items()
    )
    # The README is hashed into data.dvc: its text (incl. the old module path phantom.py) stays
    # as it was until the phantom is deliberately re-generated.
    return f"""# Synthetic lung-ultrasound phantom (not patient data)

Every file here was **simulated** by `lusaug phantom` (src/lusaug/data/phantom.py):
seed {seed}, difficulty {ph.difficulty}, {ph.height}x{ph.width} px at {ph.fps:g} fps.
No patient, scanner or real recording is involved; license {LICENSE}.

Layout follows the POCUS collection: `pocus_videos/{{convex,linear}}/` (clips),
`pocus_images/{{convex,linear}}/` (still PNGs) and `metadata.csv` (one row per file: file, label,
patient_id, probe, source, license). Class from the file-name prefix, patient from the
`phantom_pNN` part.

| class | patients | clips | frames | images |
|---|---|---|---|---|
{rows}
"""


def write_phantom(
    out: Path, params: Params, seed: int | None = None, force: bool = False
) -> dict[str, Any]:
    """Write the phantom as a POCUS-style raw folder at ``out`` (atomically) and summarise it.

    Args:
        out: destination folder (data/raw); replaced only when ``force`` or empty.
        params: typed config; reads ``phantom``, ``base.classes`` and ``import.prefixes``.
        seed: overrides ``phantom.seed``.
        force: replace a non-empty ``out``.

    Returns:
        Counts per class (patients, clips, frames, images), totals, seed and seconds taken.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force (force=True) to replace it")
    start = time.perf_counter()
    seed = params.phantom.seed if seed is None else seed
    plan = plan_phantom(params, seed)
    ph = params.phantom
    counts = {
        c: {"patients": 0, "clips": 0, "frames": 0, "images": 0} for c in params.base.classes
    }
    rows = []
    with atomic_path(out, is_dir=True) as tmp:
        tmp.chmod(_mode(0o777))  # mkdtemp makes it private; data/raw is an ordinary folder
        for pp in tqdm(plan, desc="phantom", unit="patient", disable=None):
            clips, images = simulate_patient(pp, params)
            c = counts[pp.label]
            c["patients"] += 1
            for k, frames in enumerate(clips, start=1):
                rel = Path(VIDEO_DIR) / pp.probe / f"{_stem(pp)}_c{k}{VIDEO_SUFFIX}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                write_video(tmp / rel, frames, ph.fps)
                rows.append((rel.as_posix(), pp.label, pp.patient_id, pp.probe))
                c["clips"] += 1
                c["frames"] += len(frames)
            for k, img in enumerate(images, start=1):
                rel = Path(IMAGE_DIR) / pp.probe / f"{_stem(pp)}_img{k}.png"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(tmp / rel), img):
                    raise RuntimeError(f"could not write {rel}")
                rows.append((rel.as_posix(), pp.label, pp.patient_id, pp.probe))
                c["images"] += 1
        meta = pd.DataFrame(rows, columns=["file", "label", "patient_id", "probe"])
        meta["source"] = SOURCE
        meta["license"] = LICENSE
        meta = meta[RAW_METADATA_COLUMNS].sort_values("file", kind="stable")
        meta.to_csv(tmp / RAW_METADATA_NAME, index=False, lineterminator="\n")
        (tmp / "README.md").write_text(_readme(params, seed, counts))
    totals = {
        k: sum(v[k] for v in counts.values()) for k in ("patients", "clips", "frames", "images")
    }
    summary = {
        "out": str(out),
        "seed": seed,
        "per_class": counts,
        **totals,
        "seconds": round(time.perf_counter() - start, 2),
    }
    logger.info("phantom: %s", summary)
    return summary
