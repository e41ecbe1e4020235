"""The tables the validation suites check, measured from the split files and their PNGs.

Per fold: ``manifest`` (the split file as read), ``frames`` (what each PNG holds: exists, decodes,
mode, size, grey-level statistics, pHash), ``class_coverage`` (class x split patient and frame
counts, zeros included), the de-duplicated (id, split) tables ``patient_leakage`` /
``video_leakage`` / ``identical_frames``, and ``near_identical_frames`` (per frame, the nearest
frame of another split by pHash). Across folds: ``test_folds`` (per patient, the folds that test
it) and ``fold_frames`` (per frame, the folds that list it). PNGs are read once for all folds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from lusaug.data.hashing import cross_group_nearest, hex_to_words, phash_hex
from lusaug.data.manifest import SPLITS

logger = logging.getLogger(__name__)

GROUPS = {
    "patient_leakage": "patient_id",
    "video_leakage": "video_id",
    "identical_frames": "sha1",
}
MEASURED = [
    ("exists", "bool"),
    ("readable", "boolean"),
    ("png_width", "Int64"),
    ("png_height", "Int64"),
    ("png_mode", "string"),
    ("pix_mean", "Float64"),
    ("pix_std", "Float64"),
    ("phash", "string"),
]


def _measure(png: Path, hash_size: int) -> dict[str, Any]:
    """Size, mode, grey-level statistics and pHash of one PNG (NA where unreadable)."""
    out: dict[str, Any] = {"exists": png.is_file(), "readable": None}
    if not out["exists"]:
        return out  # readable stays NA: a missing file is reported once, by `exists`
    try:
        with Image.open(png) as img:
            img.load()
            out.update(png_width=img.width, png_height=img.height, png_mode=img.mode)
            grey = img if img.mode == "L" else img.convert("L")
            arr = np.asarray(grey)
            phash = phash_hex(grey, hash_size)  # hex digits
    except (OSError, ValueError) as err:
        logger.warning("cannot decode %s: %s", png, err)
        out["readable"] = False
        return out
    out.update(
        readable=True,
        pix_mean=float(arr.mean()),
        pix_std=float(arr.std()),
        phash=phash,
    )
    return out


def measure_frames(splits: pd.DataFrame, root: Path, hash_size: int) -> pd.DataFrame:
    """One row per manifest row with what the PNG on disk actually holds.

    Args:
        splits: The splits table (needs ``path``; ``split`` and ids are carried along).
        root: Folder the manifest paths are relative to (the CSV's folder).
        hash_size: pHash side (``validate.phash_size``).

    Returns:
        Columns ``path, split, patient_id, exists, readable, png_width, png_height, png_mode,
        pix_mean, pix_std, phash`` (``phash`` in hex; missing values are NA).
    """
    rows = [
        _measure(root / str(p), hash_size)
        for p in tqdm(splits["path"], desc="validate: reading frames", unit="frame", leave=False)
    ]
    m = pd.DataFrame(rows, index=splits.index)
    for col, dtype in MEASURED:
        m[col] = m[col].astype(dtype) if col in m else pd.Series(pd.NA, index=m.index, dtype=dtype)
    keep = [c for c in ("path", "split", "patient_id") if c in splits]
    return pd.concat([splits[keep].astype("string"), m], axis=1)


def near_identical_table(frames: pd.DataFrame) -> pd.DataFrame:
    """Per decodable frame: nearest frame of another split by pHash, and the distance."""
    ok = frames[frames["phash"].notna() & frames["split"].notna()].reset_index(drop=True)
    dist, nearest = cross_group_nearest(
        hex_to_words(ok["phash"]), ok["split"].to_numpy(dtype=object)
    )
    has = nearest >= 0
    near_path = np.where(has, ok["path"].to_numpy(dtype=object)[np.maximum(nearest, 0)], None)
    near_split = np.where(has, ok["split"].to_numpy(dtype=object)[np.maximum(nearest, 0)], None)
    return pd.DataFrame(
        {
            "path": ok["path"].astype("string"),
            "split": ok["split"].astype("string"),
            "phash": ok["phash"].astype("string"),
            "phash_min_distance": dist.astype(np.int64),
            "nearest_path": pd.array(near_path, dtype="string"),
            "nearest_split": pd.array(near_split, dtype="string"),
        }
    )


def with_split(measured: pd.DataFrame, splits: pd.DataFrame) -> pd.DataFrame:
    """A fold's frames table: the PNG measurements (read once) with this fold's split column."""
    out = measured.copy()
    if "split" in splits:
        out["split"] = splits["split"].astype("string").to_numpy()
    return out


def build_tables(
    splits: pd.DataFrame,
    measured: pd.DataFrame | None,
    classes: Sequence[str],
    exempt: Sequence[tuple[str, str]] = (),
) -> dict[str, pd.DataFrame]:
    """One fold's tables (a table is left out when its columns are missing).

    ``exempt`` lists (class, split) pairs that may be empty: the split's documented fallback
    when a class has a single patient group outside the test fold (reports/split.json).
    """
    tables: dict[str, pd.DataFrame] = {"manifest": splits}
    cols = set(splits.columns)
    if measured is not None:
        frames = with_split(measured, splits)
        tables["frames"] = frames
        if "split" in cols:
            tables["near_identical_frames"] = near_identical_table(frames)
    if {"label", "split", "patient_id"} <= cols:
        grid = pd.MultiIndex.from_product([list(classes), SPLITS], names=["label", "split"])
        g = splits.groupby(["label", "split"], observed=True)
        cov = pd.DataFrame({"patients": g["patient_id"].nunique(), "frames": g.size()}).reindex(
            grid, fill_value=0
        )
        cov = cov.drop(index=[pair for pair in exempt if pair in cov.index])
        tables["class_coverage"] = cov.reset_index().astype(
            {"label": "string", "split": "string", "patients": "int64", "frames": "int64"}
        )
    for name, col in GROUPS.items():
        if {col, "split"} <= cols:
            tables[name] = splits[[col, "split"]].drop_duplicates().reset_index(drop=True)
    return tables


def cross_fold_tables(folds: Mapping[int, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``test_folds``: per patient, how many folds test it (must be exactly one);
    ``fold_frames``: per frame, how many fold files list it (must be all of them)."""
    tested: dict[str, list[int]] = {}
    listed: dict[str, int] = {}
    for fold, df in sorted(folds.items()):
        for pid in map(str, df["patient_id"].unique()):
            tested.setdefault(pid, [])
        for pid in map(str, df.loc[df["split"] == "test", "patient_id"].unique()):
            tested[pid].append(fold)
        for path in map(str, df["path"]):
            listed[path] = listed.get(path, 0) + 1
    test_folds = pd.DataFrame(
        {
            "patient_id": pd.array(sorted(tested), dtype="string"),
            "n_test_folds": [len(tested[p]) for p in sorted(tested)],
            "test_folds": pd.array(
                [",".join(map(str, tested[p])) or "none" for p in sorted(tested)], dtype="string"
            ),
        }
    )
    fold_frames = pd.DataFrame(
        {
            "path": pd.array(sorted(listed), dtype="string"),
            "n_folds": [listed[p] for p in sorted(listed)],
        }
    )
    return {"test_folds": test_folds, "fold_frames": fold_frames}


def summary_counts(tables: Mapping[str, Any]) -> dict[str, int]:
    return {name: len(df) for name, df in tables.items()}
