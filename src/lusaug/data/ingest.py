"""``lusaug import``: turn a POCUS-style folder into ``data/raw`` with normalised metadata.

The source layout is the one of the public POCUS collection (``pocus_videos/{convex,linear}/``,
``pocus_images/{convex,linear}/``, ``dataset_metadata.csv``, ``crop.json``). Media files are copied
with their relative paths; ``data/raw/metadata.csv`` (``RAW_METADATA_COLUMNS``) records one row per
copied file: class (from the file-name prefix), patient, probe, source and license (from the
upstream metadata CSV when it lists the file, else one patient per file).
"""

from __future__ import annotations

import logging
import math
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from lusaug.core.config import Params
from lusaug.core.errors import LusaugError
from lusaug.core.utils import atomic_path
from lusaug.data import dvc_data
from lusaug.data.manifest import RAW_METADATA_COLUMNS, RAW_METADATA_NAME

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".gif", ".mpeg", ".mpg", ".m4v"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif"})
MEDIA_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES
# Folder whose files carry an unsure label upstream; left out unless import.include_uncertain.
UNCERTAIN_DIR = "label_uncertain"
PROBES = ("convex", "linear")
# Columns of the upstream dataset_metadata.csv that we read.
UPSTREAM_FILENAME = "Filename"
UPSTREAM_PATIENT = "Patient ID / Name"
UPSTREAM_PROBE = "Probe"
UPSTREAM_SOURCE = "Source ID"
UPSTREAM_LICENSE = "License"
# A whole number written as a float by a spreadsheet or by pandas ("5.0", "12.00").
_FLOAT_INT = re.compile(r"^[+-]?\d+\.0*$")


class IngestError(LusaugError, RuntimeError):
    """A clear, user-facing problem with the input folder or the destination."""


def is_media(path: Path) -> bool:
    """True for the video and image types the pipeline decodes (suffix, case-insensitive)."""
    return path.suffix.lower() in MEDIA_SUFFIXES


def is_ignorable(path: Path, extra_names: tuple[str, ...] = ()) -> bool:
    """Files expected beside the media that are never reported: metadata, crop boxes, notes."""
    lower = path.name.lower()
    return (
        path.name.startswith(".")
        or lower.startswith(("readme", "license", "licence"))
        or path.name in extra_names
        or path.name == RAW_METADATA_NAME
    )


@dataclass(frozen=True)
class PrefixMatch:
    """What a file name says about its class."""

    label: str | None  # the class of the longest matching prefix (None: no prefix matches)
    ambiguous: str | None = None  # why the name also reads as another class (None: it does not)


def match_prefix(name: str, prefixes: dict[str, str]) -> PrefixMatch:
    """The class a file name's prefix gives, and whether the name is ambiguous.

    A prefix matches when the stem starts with it and the next character is not a letter: the
    end of the stem, ``_``, ``-``, a space, a digit, a bracket (``Cov-Atlas``, ``Cov_combatting``,
    ``Reg 2``, ``Cov-case3``, ``Vir(1)``); so ``Covid_x`` does not match ``Cov``. The longest
    matching prefix wins; when a shorter matching prefix names another class the name is
    ambiguous, and the reason says which prefixes matched and which one decided.

    Args:
        name: File name or stem (the suffix is ignored).
        prefixes: Prefix -> class mapping (``import.prefixes``), case-sensitive.
    """
    stem = Path(name).stem
    matches = [
        p for p in prefixes if stem.startswith(p) and not stem[len(p) : len(p) + 1].isalpha()
    ]
    if not matches:
        return PrefixMatch(None)
    best = max(matches, key=len)
    label = prefixes[best]
    if all(prefixes[p] == label for p in matches):
        return PrefixMatch(label)
    found = ", ".join(f"{p!r} ({prefixes[p]})" for p in sorted(matches, key=len))
    reason = f"starts with class prefixes {found}: the longest, {best!r}, gives {label}"
    return PrefixMatch(label, reason)


def class_from_filename(name: str, prefixes: dict[str, str]) -> str | None:
    """Class of a file from its name prefix (:func:`match_prefix`), or None when none matches."""
    return match_prefix(name, prefixes).label


def normalise_patient_id(value: Any) -> str:
    """Patient id as a clean string: ``5``, ``5.0`` and ``"5.0"`` all become ``"5"``; NaN -> ``""``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    if text.lower() in {"nan", "none", "n/a", "na"}:
        return ""
    if _FLOAT_INT.match(text):
        return str(int(float(text)))
    return text


def probe_from_path(rel: Path) -> str:
    """``convex``/``linear`` from the nearest folder of that name, else ``""``."""
    for part in reversed(rel.parts[:-1]):
        if part.lower() in PROBES:
            return part.lower()
    return ""


def _clean(value: Any) -> str:
    text = "" if value is None else str(value).strip()
    return "" if text.lower() in {"nan", "n/a"} else text


def read_upstream_metadata(path: Path) -> dict[str, list[dict[str, str]]]:
    """Rows of the upstream metadata CSV grouped by ``Filename`` (kept as strings).

    Upstream lists a few names twice (the same clip in convex/ and linear/); callers pick the row
    whose probe matches the file's folder.
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise IngestError(f"cannot read metadata CSV {path}: {exc}") from exc
    if UPSTREAM_FILENAME not in df.columns:
        raise IngestError(
            f"metadata CSV {path} has no {UPSTREAM_FILENAME!r} column (columns: {list(df.columns)})"
        )
    rows: dict[str, list[dict[str, str]]] = {}
    for rec in df.to_dict("records"):
        key = _clean(rec.get(UPSTREAM_FILENAME))
        if key:
            rows.setdefault(key, []).append(rec)
    return rows


def _pick_row(rows: list[dict[str, str]], probe: str) -> dict[str, str]:
    for rec in rows:
        if _clean(rec.get(UPSTREAM_PROBE)).lower() == probe:
            return rec
    return rows[0]


def plan_import(src: Path, params: Params) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Decide what to copy: (rows of data/raw/metadata.csv, skipped files with reasons).

    Pure planning, no writes; ``file`` in both lists is the path relative to ``src``.
    """
    ip = params.import_
    meta_rows: dict[str, list[dict[str, str]]] = {}
    if ip.metadata_csv and (src / ip.metadata_csv).is_file():
        meta_rows = read_upstream_metadata(src / ip.metadata_csv)
    elif ip.metadata_csv:
        logger.info("no %s in %s: one patient per file", ip.metadata_csv, src)
    known = tuple(n for n in (ip.metadata_csv, ip.crop_json) if n)

    rows: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if not is_media(path):
            if not is_ignorable(path, known):
                skipped.append({"file": rel.as_posix(), "reason": "not a video or image type"})
            continue
        if UNCERTAIN_DIR in rel.parts[:-1] and not ip.include_uncertain:
            skipped.append(
                {
                    "file": rel.as_posix(),
                    "reason": f"in {UNCERTAIN_DIR}/ (set import.include_uncertain to import it)",
                }
            )
            continue
        label = class_from_filename(path.name, ip.prefixes)
        if label is None:
            skipped.append(
                {
                    "file": rel.as_posix(),
                    "reason": f"unknown class prefix (known: {', '.join(sorted(ip.prefixes))})",
                }
            )
            continue
        probe = probe_from_path(rel)
        patient, source, license_ = "", "", ""
        if path.stem in meta_rows:
            rec = _pick_row(meta_rows[path.stem], probe)
            patient = normalise_patient_id(rec.get(UPSTREAM_PATIENT))
            probe = _clean(rec.get(UPSTREAM_PROBE)).lower() or probe
            source = _clean(rec.get(UPSTREAM_SOURCE))
            license_ = _clean(rec.get(UPSTREAM_LICENSE))
        rows.append(
            {
                "file": rel.as_posix(),
                "label": label,
                "patient_id": patient or f"file:{path.stem}",
                "probe": probe,
                "source": source,
                "license": license_,
            }
        )
    return rows, skipped


def find_dvc_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` that holds a ``.dvc/`` directory."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def import_folder(
    src: Path, dest: Path, params: Params, force: bool = False, dvc_commit: bool = True
) -> dict[str, Any]:
    """Copy a POCUS-style folder into ``dest`` (data/raw) with a normalised ``metadata.csv``.

    The new folder is built beside ``dest`` and renamed over it only when complete. With
    ``dvc_commit`` the top-level ``data.dvc`` is then brought in step (:func:`commit_raw`).

    Args:
        src: The POCUS-style folder.
        dest: Destination folder, normally ``data/raw``.
        params: Typed config (``import`` section).
        force: Replace a non-empty ``dest``.
        dvc_commit: Refresh ``data.dvc`` after importing (``dest`` must be inside a DVC repo).

    Returns:
        Summary: files per class, skipped files with reasons, whether data.dvc was refreshed.

    Raises:
        IngestError: Missing/empty input, non-empty destination without ``force``, no DVC repo.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_dir():
        raise IngestError(f"input folder {src} does not exist or is not a folder")
    if not any(p.is_file() for p in src.rglob("*")):
        raise IngestError(f"input folder {src} is empty")
    if dest.resolve() == src.resolve() or src.resolve() in dest.resolve().parents:
        raise IngestError(f"destination {dest} must not be inside the input folder {src}")
    if dest.exists() and not dest.is_dir():
        raise IngestError(f"destination {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise IngestError(f"destination {dest} is not empty; pass --force to replace it")
    root = None
    if dvc_commit:
        root = find_dvc_root(dest.parent if not dest.exists() else dest)
        if root is None:
            raise IngestError(
                f"{dest} is not inside a DVC repository (no .dvc/ above it); run `dvc init` "
                "or pass --no-dvc-commit"
            )

    rows, skipped = plan_import(src, params)
    if not rows:
        reasons = Counter(s["reason"] for s in skipped)
        raise IngestError(f"no importable video or image in {src} (skipped: {dict(reasons)})")

    ip = params.import_
    with atomic_path(dest, is_dir=True) as tmp:
        for row in tqdm(rows, desc="import", unit="file"):
            target = tmp / row["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / row["file"], target)
        pd.DataFrame(rows, columns=RAW_METADATA_COLUMNS).to_csv(
            tmp / RAW_METADATA_NAME, index=False
        )
        if ip.crop_json and (src / ip.crop_json).is_file():
            shutil.copy2(src / ip.crop_json, tmp / ip.crop_json)

    per_class = Counter(r["label"] for r in rows)
    ambiguous = [
        {"file": r["file"], "label": r["label"], "reason": m.ambiguous}
        for r in rows
        if (m := match_prefix(Path(r["file"]).name, params.import_.prefixes)).ambiguous
    ]
    summary: dict[str, Any] = {
        "source": str(src),
        "dest": str(dest),
        "files": len(rows),
        "per_class": {c: per_class.get(c, 0) for c in params.base.classes},
        "patients": len({r["patient_id"] for r in rows}),
        "skipped": skipped,
        "ambiguous_names": ambiguous,
        "dvc": None,
    }
    missing = [c for c, n in summary["per_class"].items() if n == 0]
    if missing:
        logger.warning("imported no file of class(es) %s", ", ".join(missing))
    if dvc_commit and root is not None:
        rel = dest.resolve().relative_to(root).as_posix()
        summary["dvc"] = dvc_data.commit_raw(root, rel)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for the CLI."""
    lines = [f"imported {summary['files']} files from {summary['source']} into {summary['dest']}"]
    lines += [f"  {label}: {n}" for label, n in summary["per_class"].items()]
    lines.append(f"  patients: {summary['patients']}")
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])}:")
        lines += [f"  {s['file']}: {s['reason']}" for s in summary["skipped"]]
    if summary.get("ambiguous_names"):
        lines.append(f"ambiguous names {len(summary['ambiguous_names'])}:")
        lines += [f"  {a['file']}: {a['reason']}" for a in summary["ambiguous_names"]]
    if summary.get("dvc"):
        lines.append(f"dvc: {summary['dvc']}")
    return "\n".join(lines)
