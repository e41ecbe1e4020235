"""Is ``data/raw`` the phantom, and which phantom parameters made it?

Only the phantom can draw new patients from the distribution its data came from, so a control
that renders new patients (the ``phantom_oracle`` generator) is valid only on phantom data made
with the parameters it would render with. Nothing extra is written into ``data/raw`` for this (its
files are hashed into ``data.dvc``); :func:`read_phantom_source` checks what ``lusaug phantom``
already writes:

1. ``metadata.csv``: every row's ``source`` is ``phantom`` (``lusaug import`` writes the data
   set's own source, e.g. ``POCUS``);
2. ``README.md``: its header states the seed, difficulty, raw size and frame rate; each must equal
   ``params.phantom`` (a ``--seed`` override that params do not record is refused too);
3. the file list of ``metadata.csv`` equals what :func:`~lusaug.data.phantom.plan_phantom` plans
   for those params (patients per class, clips per patient, probes, still images: a changed
   ``phantom.patients`` or ``clips_per_patient`` shows here, and so would another seed);
4. the first clip has ``phantom.frames_per_clip`` frames.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import pandas as pd

from lusaug.core.config import Params
from lusaug.core.errors import LusaugError
from lusaug.data.manifest import RAW_METADATA_NAME
from lusaug.data.phantom.dataset import (
    IMAGE_DIR,
    SOURCE,
    VIDEO_DIR,
    VIDEO_SUFFIX,
    PlannedPatient,
    plan_phantom,
)

RAW_README = "README.md"  # written by write_phantom beside metadata.csv
# The README's header line, e.g. "seed 7, difficulty 0.6, 160x160 px at 12 fps."
_HEADER = re.compile(
    r"seed (?P<seed>-?\d+), difficulty (?P<difficulty>[0-9.eE+-]+), "
    r"(?P<height>\d+)x(?P<width>\d+) px at (?P<fps>[0-9.eE+-]+) fps"
)
_FLOAT_TOL = 1e-9


class PhantomSourceError(LusaugError, ValueError):
    """data/raw is not the phantom, or not the phantom these params would write."""


@dataclass(frozen=True)
class PhantomSource:
    """The phantom that wrote ``data/raw``: its seed, its plan and its patients."""

    raw_dir: Path
    seed: int  # the seed of README.md (= params.phantom.seed, checked)
    planned: tuple[PlannedPatient, ...]  # every patient in data/raw, as plan_phantom plans them
    patient_ids: frozenset[str]  # the patient_id column of metadata.csv


def planned_files(pp: PlannedPatient) -> list[str]:
    """The files write_phantom writes for one planned patient (paths relative to data/raw).

    Mirrors write_phantom's naming; tests check it against a written phantom."""
    stem = f"{pp.prefix}_{pp.patient_id}"
    clips = [f"{VIDEO_DIR}/{pp.probe}/{stem}_c{k}{VIDEO_SUFFIX}" for k in range(1, pp.n_clips + 1)]
    images = [f"{IMAGE_DIR}/{pp.probe}/{stem}_img{k}.png" for k in range(1, pp.n_images + 1)]
    return clips + images


def _read_metadata(raw_dir: Path) -> pd.DataFrame:
    path = raw_dir / RAW_METADATA_NAME
    if not path.is_file():
        raise PhantomSourceError(
            f"{path} not found: the phantom oracle needs data/raw written by `lusaug phantom`"
        )
    meta = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("file", "source", "patient_id") if c not in meta.columns]
    if missing:
        raise PhantomSourceError(f"{path} has no column(s) {missing}")
    others = sorted(set(meta["source"]) - {SOURCE})
    if others or meta.empty:
        raise PhantomSourceError(
            f"{path}: column 'source' holds {others or 'no row'}, not only {SOURCE!r}: data/raw "
            "is not the phantom (imported data?). A phantom_oracle generator draws new patients "
            "from the phantom that wrote data/raw; on other data remove it from generate.enabled "
            "and its strategies from train.strategies"
        )
    return meta


def _read_header(raw_dir: Path) -> dict[str, float]:
    path = raw_dir / RAW_README
    text = path.read_text() if path.is_file() else ""
    found = _HEADER.search(text)
    if found is None:
        raise PhantomSourceError(
            f"{path} does not state the phantom's seed, difficulty, size and fps (written by "
            "`lusaug phantom`): re-write data/raw with `lusaug phantom --out data/raw --force`"
        )
    return {k: float(v) for k, v in found.groupdict().items()}


def _check_header(header: dict[str, float], params: Params, readme: Path) -> None:
    ph = params.phantom
    wanted = {
        "seed": ph.seed,
        "difficulty": ph.difficulty,
        "height": ph.height,
        "width": ph.width,
        "fps": ph.fps,
    }
    wrong = {
        k: (header[k], v) for k, v in wanted.items() if abs(header[k] - float(v)) > _FLOAT_TOL
    }
    if wrong:
        said = ", ".join(
            f"phantom.{k} is {v[1]:g} but data/raw has {v[0]:g}" for k, v in wrong.items()
        )
        raise PhantomSourceError(
            f"data/raw was written by another phantom than params.yaml describes ({said}; "
            f"{readme}): re-run `lusaug phantom --out data/raw --force` (then `dvc commit "
            "data.dvc`) or set those params back"
        )


def _check_files(meta: pd.DataFrame, plan: list[PlannedPatient], path: Path) -> None:
    expected = {f for pp in plan for f in planned_files(pp)}
    actual = set(meta["file"])
    if expected != actual:
        extra, absent = sorted(actual - expected), sorted(expected - actual)
        raise PhantomSourceError(
            f"{path} lists {len(extra)} file(s) the phantom of params.yaml would not write (e.g. "
            f"{extra[:2]}) and lacks {len(absent)} it would (e.g. {absent[:2]}): phantom.patients"
            ", clips_per_patient, images_per_class or linear_fraction changed since `lusaug "
            "phantom` wrote data/raw; re-run it (then `dvc commit data.dvc`)"
        )


def _check_frames_per_clip(raw_dir: Path, plan: list[PlannedPatient], params: Params) -> None:
    first = next((pp for pp in plan if pp.n_clips), None)
    if first is None:
        return
    clip = raw_dir / planned_files(first)[0]
    cap = cv2.VideoCapture(str(clip))
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if n != params.phantom.frames_per_clip:
        raise PhantomSourceError(
            f"{clip} has {n} frames but phantom.frames_per_clip is "
            f"{params.phantom.frames_per_clip}: re-run `lusaug phantom --out data/raw --force`"
        )


def read_phantom_source(raw_dir: Path | str, params: Params) -> PhantomSource:
    """Check that ``raw_dir`` is the phantom ``params.phantom`` writes; describe it.

    Raises:
        PhantomSourceError: imported data, or a phantom written with other parameters; the
            message names the file and the key.
    """
    raw_dir = Path(raw_dir)
    meta = _read_metadata(raw_dir)
    header = _read_header(raw_dir)
    _check_header(header, params, raw_dir / RAW_README)
    seed = int(header["seed"])
    plan = plan_phantom(params, seed)
    _check_files(meta, plan, raw_dir / RAW_METADATA_NAME)
    _check_frames_per_clip(raw_dir, plan, params)
    return PhantomSource(
        raw_dir=raw_dir,
        seed=seed,
        planned=tuple(plan),
        patient_ids=frozenset(meta["patient_id"]),
    )
