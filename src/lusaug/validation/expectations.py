"""The expectations of every suite, in one place so the Data Docs mirror this list."""

from __future__ import annotations

from typing import Any

from lusaug.core.config import BaseParams, FramesParams, ValidateParams
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS
from lusaug.validation.tables import GROUPS

SPLITS_COLUMNS = [*MANIFEST_COLUMNS, "split"]
# Columns that downstream stages key on: they must be non-null and non-empty. probe, source and
# license come from optional metadata and may be empty (but not null).
REQUIRED_NONEMPTY = ["path", "label", "video_id", "patient_id", "sha1", "split"]
INT_COLUMNS = ["width", "height"]
# Columns that name an offending row in the results (GX unexpected_index_column_names).
INDEX_COLUMNS = {
    "manifest": ["path"],
    "frames": ["path", "split"],
    "class_coverage": ["label", "split"],
    "patient_leakage": ["patient_id", "split"],
    "video_leakage": ["video_id", "split"],
    "identical_frames": ["sha1", "split"],
    "near_identical_frames": ["path", "split", "nearest_path", "nearest_split"],
    "test_folds": ["patient_id", "test_folds"],
    "fold_frames": ["path"],
}
FOLD_SUITES = [s for s in INDEX_COLUMNS if s not in ("test_folds", "fold_frames")]
CROSS_FOLD_SUITES = ["test_folds", "fold_frames"]


def expectations(
    name: str,
    base: BaseParams,
    validate: ValidateParams,
    frames: FramesParams,
    n_rows: int = 0,
    n_folds: int = 1,
) -> list[Any]:
    """The expectations of one suite (kept in one place so the Data Docs mirror this list)."""
    import great_expectations.expectations as gxe

    size = base.image_size
    v, f = validate, frames
    if name == "manifest":
        out: list[Any] = [
            gxe.ExpectTableColumnsToMatchOrderedList(
                column_list=SPLITS_COLUMNS, description="splits.csv = manifest columns + split"
            ),
            gxe.ExpectTableRowCountToBeBetween(min_value=1, description="at least one frame"),
        ]
        for col in SPLITS_COLUMNS:
            type_ = "int64" if col in INT_COLUMNS else "str"
            out.append(gxe.ExpectColumnValuesToBeOfType(column=col, type_=type_))
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col))
        for col in REQUIRED_NONEMPTY:
            out.append(gxe.ExpectColumnValueLengthsToBeBetween(column=col, min_value=1))
        out += [
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(base.classes)),
            gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
            gxe.ExpectColumnValuesToMatchRegex(column="sha1", regex=r"^[0-9a-f]{40}$"),
            gxe.ExpectColumnValuesToBeUnique(column="path", description="one row per frame"),
            gxe.ExpectColumnValuesToBeBetween(column="width", min_value=size, max_value=size),
            gxe.ExpectColumnValuesToBeBetween(column="height", min_value=size, max_value=size),
        ]
        return out
    if name == "frames":
        return [
            gxe.ExpectColumnValuesToBeInSet(
                column="exists", value_set=[True], description="every PNG exists"
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="readable", value_set=[True], description="every PNG decodes"
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="png_mode", value_set=["L"], description="grey uint8 PNGs"
            ),
            gxe.ExpectColumnValuesToBeBetween(column="png_width", min_value=size, max_value=size),
            gxe.ExpectColumnValuesToBeBetween(column="png_height", min_value=size, max_value=size),
            gxe.ExpectColumnValuesToBeBetween(
                column="pix_mean", min_value=f.min_mean, max_value=f.max_mean
            ),
            gxe.ExpectColumnValuesToBeBetween(column="pix_std", min_value=f.min_std),
        ]
    if name == "class_coverage":
        return [
            gxe.ExpectTableRowCountToEqual(
                value=n_rows, description="one row per class x split (documented fallbacks out)"
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="patients", min_value=1, description="every class in every split"
            ),
            gxe.ExpectColumnValuesToBeBetween(column="frames", min_value=1),
        ]
    if name in GROUPS:
        col = GROUPS[name]
        return [
            gxe.ExpectColumnValuesToBeUnique(
                column=col, description=f"no {col} in two splits (rows = distinct {col}, split)"
            )
        ]
    if name == "near_identical_frames":
        return [
            gxe.ExpectColumnValuesToBeBetween(
                column="phash_min_distance",
                min_value=v.phash_max_distance,
                strict_min=True,
                description="no near-identical frame (pHash distance) in another split",
            )
        ]
    if name == "test_folds":
        return [
            gxe.ExpectColumnValuesToBeBetween(
                column="n_test_folds",
                min_value=1,
                max_value=1,
                description="every patient is in the test split of exactly one fold",
            )
        ]
    if name == "fold_frames":
        return [
            gxe.ExpectColumnValuesToBeBetween(
                column="n_folds",
                min_value=n_folds,
                max_value=n_folds,
                description="every fold file lists every frame",
            )
        ]
    raise KeyError(name)
