"""The frame manifest: one row per stored frame; every stage after ``frames`` reads only this.

``path`` is relative to the folder that holds the manifest CSV (``data/``), so a manifest and its
frames can move together.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lusaug.core.utils import atomic_path

MANIFEST_COLUMNS = [
    "path",
    "label",
    "video_id",
    "patient_id",
    "probe",
    "source",
    "license",
    "width",
    "height",
    "sha1",
]
SPLITS = ("train", "val", "test")
# Columns of data/raw/metadata.csv, the normalised per-file metadata written by the phantom and by
# `lusaug import` (one row per raw file; `file` is relative to data/raw).
RAW_METADATA_COLUMNS = ["file", "label", "patient_id", "probe", "source", "license"]
RAW_METADATA_NAME = "metadata.csv"
_STR_COLUMNS = ["path", "label", "video_id", "patient_id", "probe", "source", "license", "sha1"]


def read_manifest(path: Path | str) -> pd.DataFrame:
    """Read a manifest (or splits) CSV with ids kept as strings."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `dvc repro frames` first")
    dtypes = {c: "string" for c in _STR_COLUMNS + ["split"]}
    df = pd.read_csv(path, dtype=dtypes, keep_default_na=False)
    return df


def write_manifest(df: pd.DataFrame, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def frame_path(manifest_path: Path | str, rel: str) -> Path:
    """Absolute path of a manifest row's PNG."""
    return Path(manifest_path).resolve().parent / rel
