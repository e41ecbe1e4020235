"""Planning the ``frames`` stage: which raw files to decode, with label, patient and crop.

:func:`plan_tasks` scans ``data/raw``: each media file becomes a :class:`FileTask` (class from
``metadata.csv`` or the file-name prefix, patient, probe, source, license, ``crop.json`` entry,
a unique video id); everything else is listed as skipped with its reason. :class:`FramesError`,
the stage's user-facing error, lives here because unreadable metadata already raises it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from lusaug.core.config import BaseParams, FramesParams, ImportParams
from lusaug.core.errors import LusaugError
from lusaug.data.decode import CropSpec
from lusaug.data.ingest import (
    UNCERTAIN_DIR,
    VIDEO_SUFFIXES,
    class_from_filename,
    is_ignorable,
    is_media,
    match_prefix,
    normalise_patient_id,
    probe_from_path,
)
from lusaug.data.manifest import RAW_METADATA_COLUMNS, RAW_METADATA_NAME


class FramesError(LusaugError, RuntimeError):
    """A clear, user-facing reason why the frames stage cannot produce its outputs."""


@dataclass(frozen=True)
class FileTask:
    """One media file to decode, with everything the manifest needs."""

    rel: str  # path relative to the raw folder (posix)
    path: str  # absolute path
    kind: str  # "video" | "image"
    label: str
    video_id: str
    patient_id: str
    probe: str
    source: str
    license: str
    crop: CropSpec | None = None
    notes: tuple[str, ...] = ()
    ambiguous: str | None = None  # why the file name also reads as another class


def _read_raw_metadata(path: Path) -> dict[str, dict[str, str]]:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise FramesError(f"cannot read {path}: {exc}") from exc
    missing = [c for c in RAW_METADATA_COLUMNS if c not in df.columns]
    if missing:
        raise FramesError(f"{path} lacks column(s) {missing}; expected {RAW_METADATA_COLUMNS}")
    rows: dict[str, dict[str, str]] = {}
    for rec in df.to_dict("records"):
        rel = Path(str(rec["file"]).strip()).as_posix()
        if rel and rel != ".":
            rows[rel] = {k: str(v).strip() for k, v in rec.items()}
    return rows


def _read_crop_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FramesError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FramesError(f"{path} must map file paths to [[top, left, size], [start, end]]")
    return data


def _video_ids(rels: list[str]) -> dict[str, str]:
    """File stem as video id; stems shared by several files get a short hash of their path."""
    by_stem: dict[str, list[str]] = {}
    for rel in rels:
        by_stem.setdefault(Path(rel).stem.lower(), []).append(rel)
    ids = {}
    for group in by_stem.values():
        for rel in group:
            stem = Path(rel).stem
            if len(group) > 1:
                stem = f"{stem}__{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            ids[rel] = stem
    return ids


def _scan(
    raw_dir: Path, meta: dict[str, dict[str, str]], ignorable: tuple[str, ...]
) -> tuple[list[Path], list[dict[str, str]]]:
    """The media files under ``raw_dir`` (hidden ones left out), and the files skipped: not a
    video or image, or listed in the metadata but missing."""
    skipped: list[dict[str, str]] = []
    media: list[Path] = []
    for path in sorted(p for p in raw_dir.rglob("*") if p.is_file()):
        rel_parts = path.relative_to(raw_dir).parts
        if any(part.startswith(".") for part in rel_parts):
            continue
        if is_media(path):
            media.append(path)
        elif not is_ignorable(path, ignorable):
            rel = path.relative_to(raw_dir).as_posix()
            suffix = path.suffix or "(no extension)"
            skipped.append({"file": rel, "reason": f"not a video or image type ({suffix})"})
    present = {p.relative_to(raw_dir).as_posix() for p in media}
    for rel in sorted(set(meta) - present):
        skipped.append({"file": rel, "reason": f"listed in {RAW_METADATA_NAME} but not found"})
    return media, skipped


def _file_info(
    path: Path,
    rel: str,
    row: dict[str, str] | None,
    classes: list[str],
    import_: ImportParams,
) -> dict[str, str] | str:
    """Label, patient, probe, source and license of one media file (from its ``metadata.csv``
    row, else from its name and folder), or the reason it is skipped."""
    if row is not None:
        label = row["label"]
        if label not in classes:
            return f"label {label!r} in {RAW_METADATA_NAME} is not one of base.classes {classes}"
        info = {
            "label": label,
            "patient_id": normalise_patient_id(row["patient_id"]),
            "probe": row["probe"] or probe_from_path(Path(rel)),
            "source": row["source"],
            "license": row["license"],
        }
    else:
        if UNCERTAIN_DIR in Path(rel).parts[:-1] and not import_.include_uncertain:
            return f"in {UNCERTAIN_DIR}/ (label unsure)"
        label = class_from_filename(path.name, import_.prefixes)
        if label is None:
            known = ", ".join(sorted(import_.prefixes))
            return f"unknown class prefix (known: {known})"
        if label not in classes:
            return f"class {label!r} not in base.classes"
        info = {
            "label": label,
            "patient_id": "",
            "probe": probe_from_path(Path(rel)),
            "source": "",
            "license": "",
        }
    if not info["patient_id"]:
        info["patient_id"] = f"file:{path.stem}"
    return info


def plan_tasks(
    raw_dir: Path, base: BaseParams, import_: ImportParams, frames: FramesParams
) -> tuple[list[FileTask], list[dict[str, str]]]:
    """Scan ``raw_dir``: files to decode (with label/patient/crop) and files skipped up front.

    Reads ``base.classes``, the ``import`` section (class prefixes, metadata and crop file names,
    ``include_uncertain``) and ``frames.use_crop_json``.
    """
    meta_path = raw_dir / RAW_METADATA_NAME
    meta = _read_raw_metadata(meta_path) if meta_path.is_file() else {}
    crop_name = import_.crop_json
    crops: dict[str, Any] = {}
    if frames.use_crop_json and crop_name and (raw_dir / crop_name).is_file():
        crops = _read_crop_json(raw_dir / crop_name)
    crops_lower = {k.lower(): v for k, v in crops.items()}
    ignorable = tuple(n for n in (RAW_METADATA_NAME, crop_name, import_.metadata_csv) if n)
    media, skipped = _scan(raw_dir, meta, ignorable)

    candidates: list[tuple[Path, str, dict[str, str]]] = []
    for path in media:
        rel = path.relative_to(raw_dir).as_posix()
        info = _file_info(path, rel, meta.get(rel), base.classes, import_)
        if isinstance(info, str):
            skipped.append({"file": rel, "reason": info})
        else:
            candidates.append((path, rel, info))

    ids = _video_ids([rel for _, rel, _ in candidates])
    tasks = []
    for path, rel, info in candidates:
        notes: list[str] = []
        ambiguous = match_prefix(path.name, import_.prefixes).ambiguous
        if ambiguous and rel in meta:
            ambiguous += f"; {RAW_METADATA_NAME} labels it {info['label']}"
        crop = None
        raw_crop = crops.get(rel, crops_lower.get(rel.lower()))
        if raw_crop is not None:
            try:
                crop = CropSpec.parse(raw_crop)
            except (TypeError, ValueError, IndexError) as exc:
                notes.append(f"ignored malformed crop.json entry {raw_crop!r}: {exc}")
        kind = "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"
        tasks.append(
            FileTask(
                rel=rel,
                path=str(path.absolute()),  # not resolve(): DVC may symlink files to its cache
                kind=kind,
                video_id=ids[rel],
                crop=crop,
                notes=tuple(notes),
                ambiguous=ambiguous,
                **info,
            )
        )
    return tasks, skipped
