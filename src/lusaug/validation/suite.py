"""The `validate` stage: Great Expectations suites over data/splits.csv and its PNG frames.

Seven tables go through a real GX 1.x ephemeral context, each as its own pandas data asset with
one suite (and one section in the Data Docs):

- ``manifest``: splits.csv as read: columns and order, dtypes, no nulls, no empty ids, labels in
  base.classes, split in train/val/test, sha1 format, width/height == base.image_size.
- ``frames``: one row per frame with values measured from the PNG: file exists and decodes,
  grey (mode L), actual size == base.image_size, mean/std grey level in the sane range
  (``frames.min_mean`` .. ``frames.max_mean``, std >= ``frames.min_std``: the same keys by which
  the frames stage drops blank frames, so this is a safety net for frames made any other way).
- ``class_coverage``: class x split table (every combination present, zeros included): at
  least one patient and one frame of every class in every split.
- ``patient_leakage`` / ``video_leakage`` / ``identical_frames``: the de-duplicated
  (patient_id|video_id|sha1, split) table; a value that occurs twice is in two splits
  (``ExpectColumnValuesToBeUnique``, see ecosystem.md section 3).
- ``near_identical_frames``: per frame, the smallest perceptual-hash Hamming distance
  (``validate.phash_size``**2-bit pHash, :mod:`lusaug.data.hashing`) to any frame in a different
  split; it must exceed ``validate.phash_max_distance``. The split stage links patients with the
  same hash and threshold, but this check recomputes everything from the PNGs on its own, so a
  duplicate that reached two splits any other way is still caught.

Offending ids come from the GX results (``unexpected_index_list`` with identifying columns), so
the metrics and the error message name exactly what the suites rejected.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from lusaug.config import Params
from lusaug.data.hashing import cross_group_nearest, hex_to_words, phash_hex
from lusaug.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest
from lusaug.utils import atomic_path, write_json

logger = logging.getLogger(__name__)

SPLITS_COLUMNS = [*MANIFEST_COLUMNS, "split"]
# Columns that downstream stages key on: they must be non-null and non-empty. probe, source and
# license come from optional metadata and may be empty (but not null).
REQUIRED_NONEMPTY = ["path", "label", "video_id", "patient_id", "sha1", "split"]
INT_COLUMNS = ["width", "height"]
_SHOW = 10  # offenders listed per kind in the error message (metrics hold all of them)
_DOCS_SITE = "lusaug_docs"  # not "local_site": the ephemeral context already has that one
_GROUPS = {
    "patient_leakage": "patient_id",
    "video_leakage": "video_id",
    "identical_frames": "sha1",
}


@dataclass
class ValidationReport:
    """Outcome of one validation run (what metrics/validation.json holds)."""

    success: bool
    statistics: dict[str, Any]
    expectations: list[dict[str, Any]]
    offenders: dict[str, Any]
    n_frames: int
    docs_index: Path | None = None
    skipped_suites: dict[str, str] = field(default_factory=dict)

    def to_metrics(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "evaluated_expectations": self.statistics.get("evaluated_expectations", 0),
            "successful_expectations": self.statistics.get("successful_expectations", 0),
            "unsuccessful_expectations": self.statistics.get("unsuccessful_expectations", 0),
            "success_percent": self.statistics.get("success_percent", 0.0),
            "n_frames": self.n_frames,
            "expectations": self.expectations,
            "offenders": self.offenders,
            "skipped_suites": self.skipped_suites,
            "data_docs": str(self.docs_index) if self.docs_index else None,
        }

    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.expectations if not e["success"]]

    def message(self) -> str:
        """A human summary naming the offending patients, videos and frames."""
        st = self.statistics
        if self.success:
            return (
                f"validation passed: {st.get('successful_expectations')}/"
                f"{st.get('evaluated_expectations')} expectations on {self.n_frames} frames"
            )
        head = (
            f"validation FAILED: {st.get('unsuccessful_expectations')} of "
            f"{st.get('evaluated_expectations')} expectations failed on {self.n_frames} frames"
        )
        lines = [head]
        for e in self.failed():
            what = f"{e['suite']}: {e['expectation']}"
            if e.get("column"):
                what += f"({e['column']})"
            if e.get("exception"):
                detail = e["exception"]
            elif e.get("unexpected_count") is not None:
                detail = f"{e['unexpected_count']} unexpected"
            else:
                detail = f"observed {e.get('observed_value')}"
            lines.append(f"  - {what}: {detail}")
        off = self.offenders
        for kind in ("patients", "videos"):
            if off.get(kind):
                items = [f"{k} in {'+'.join(v)}" for k, v in list(off[kind].items())[:_SHOW]]
                lines.append(f"  {kind} in two splits: " + ", ".join(items) + _more(off[kind]))
        if off.get("identical_frames"):
            items = [
                f"{sha[:10]} ({', '.join(f'{p} [{s}]' for p, s in rows)})"
                for sha, rows in list(off["identical_frames"].items())[:_SHOW]
            ]
            lines.append(
                "  identical frames in two splits: "
                + "; ".join(items)
                + _more(off["identical_frames"])
            )
        if off.get("near_identical_pairs"):
            items = [
                f"{p['a']} [{p['split_a']}] ~ {p['b']} [{p['split_b']}] (d={p['distance']})"
                for p in off["near_identical_pairs"][:_SHOW]
            ]
            lines.append(
                "  near-identical frames in two splits: "
                + "; ".join(items)
                + _more(off["near_identical_pairs"])
            )
        if off.get("missing_class_split"):
            items = [f"{r['label']} in {r['split']}" for r in off["missing_class_split"]]
            lines.append("  class missing from split: " + ", ".join(items))
        for kind, rows in off.get("frames_by_check", {}).items():
            lines.append(f"  {kind}: " + ", ".join(rows[:_SHOW]) + _more(rows))
        if self.skipped_suites:
            for name, why in self.skipped_suites.items():
                lines.append(f"  suite {name} not run: {why}")
        if self.docs_index:
            lines.append(f"  Data Docs: {self.docs_index}")
        return "\n".join(lines)


def _more(items: Any) -> str:
    return f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""


# ---------------------------------------------------------------- per-frame measurements


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
    for col, dtype in (
        ("exists", "bool"),
        ("readable", "boolean"),
        ("png_width", "Int64"),
        ("png_height", "Int64"),
        ("png_mode", "string"),
        ("pix_mean", "Float64"),
        ("pix_std", "Float64"),
        ("phash", "string"),
    ):
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


# ---------------------------------------------------------------- tables and suites


def build_tables(splits: pd.DataFrame, root: Path, params: Params) -> dict[str, pd.DataFrame]:
    """The dataframes the suites validate (a table is left out when its columns are missing)."""
    tables: dict[str, pd.DataFrame] = {"manifest": splits}
    cols = set(splits.columns)
    if "path" in cols:
        frames = measure_frames(splits, root, params.validate.phash_size)
        tables["frames"] = frames
        if "split" in cols:
            tables["near_identical_frames"] = near_identical_table(frames)
    if {"label", "split", "patient_id"} <= cols:
        grid = pd.MultiIndex.from_product([params.base.classes, SPLITS], names=["label", "split"])
        g = splits.groupby(["label", "split"], observed=True)
        cov = pd.DataFrame({"patients": g["patient_id"].nunique(), "frames": g.size()}).reindex(
            grid, fill_value=0
        )
        tables["class_coverage"] = cov.reset_index().astype(
            {"label": "string", "split": "string", "patients": "int64", "frames": "int64"}
        )
    for name, col in _GROUPS.items():
        if {col, "split"} <= cols:
            tables[name] = splits[[col, "split"]].drop_duplicates().reset_index(drop=True)
    return tables


def _expectations(name: str, params: Params) -> list[Any]:
    """The expectations of one suite (kept in one place so the Data Docs mirror this list)."""
    import great_expectations.expectations as gxe

    size = params.base.image_size
    v, f = params.validate, params.frames
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
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(params.base.classes)),
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
        n = len(params.base.classes) * len(SPLITS)
        return [
            gxe.ExpectTableRowCountToEqual(value=n, description="one row per class x split"),
            gxe.ExpectColumnValuesToBeBetween(
                column="patients", min_value=1, description="every class in every split"
            ),
            gxe.ExpectColumnValuesToBeBetween(column="frames", min_value=1),
        ]
    if name in _GROUPS:
        col = _GROUPS[name]
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
    raise KeyError(name)


_INDEX_COLUMNS = {
    "manifest": ["path"],
    "frames": ["path", "split"],
    "class_coverage": ["label", "split"],
    "patient_leakage": ["patient_id", "split"],
    "video_leakage": ["video_id", "split"],
    "identical_frames": ["sha1", "split"],
    "near_identical_frames": ["path", "split", "nearest_path", "nearest_split"],
}
SUITES = list(_INDEX_COLUMNS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is pd.NA or value is None:
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


def _summarise(suite: str, r: Any) -> dict[str, Any]:
    kwargs = r.expectation_config.kwargs
    res = r.result or {}
    entry: dict[str, Any] = {
        "suite": suite,
        "expectation": r.expectation_config.type,
        "column": kwargs.get("column"),
        "success": bool(r.success),
        "unexpected_count": res.get("unexpected_count"),
        "unexpected": _jsonable(res.get("unexpected_index_list") or [])[: _SHOW * 10],
    }
    observed = res.get("observed_value")
    if observed is not None:
        entry["observed_value"] = _jsonable(observed)
    if r.exception_info and r.exception_info.get("raised_exception"):
        entry["exception"] = r.exception_info.get("exception_message")
    return entry


def _offenders(
    results: dict[str, Any], tables: dict[str, pd.DataFrame], near: pd.DataFrame | None
) -> dict[str, Any]:
    """Name what failed, from the GX results' unexpected index lists."""

    def unexpected(suite: str, column: str | None = None) -> list[dict[str, Any]]:
        res = results.get(suite)
        if res is None:
            return []
        rows: list[dict[str, Any]] = []
        for r in res.results:
            if r.success or (column and r.expectation_config.kwargs.get("column") != column):
                continue
            rows += (r.result or {}).get("unexpected_index_list") or []
        return [_jsonable(x) for x in rows]

    off: dict[str, Any] = {}
    for kind, suite in (("patients", "patient_leakage"), ("videos", "video_leakage")):
        col = _GROUPS[suite]
        groups: dict[str, list[str]] = {}
        for row in unexpected(suite):
            groups.setdefault(str(row[col]), []).append(str(row["split"]))
        off[kind] = {k: sorted(set(v), key=SPLITS.index) for k, v in sorted(groups.items())}
    shas = {str(row["sha1"]) for row in unexpected("identical_frames")}
    manifest = tables["manifest"]
    off["identical_frames"] = {
        sha: [
            (str(p), str(s))
            for p, s in manifest.loc[manifest["sha1"] == sha, ["path", "split"]].itertuples(
                index=False
            )
        ]
        for sha in sorted(shas)
    }
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    dist = {} if near is None else dict(zip(near["path"], near["phash_min_distance"], strict=True))
    for row in unexpected("near_identical_frames"):
        a, b = sorted([str(row["path"]), str(row["nearest_path"])])
        sa, sb = (row["split"], row["nearest_split"])
        if a != str(row["path"]):
            sa, sb = sb, sa
        pairs[(a, b)] = {
            "a": a,
            "b": b,
            "split_a": sa,
            "split_b": sb,
            "distance": int(dist.get(row["path"], -1)),
        }
    off["near_identical_pairs"] = [pairs[k] for k in sorted(pairs)]
    off["missing_class_split"] = [
        {"label": row["label"], "split": row["split"]}
        for row in {(r["label"], r["split"]): r for r in unexpected("class_coverage")}.values()
    ]
    by_check: dict[str, list[str]] = {}
    for suite in ("manifest", "frames"):
        res = results.get(suite)
        for r in res.results if res is not None else []:
            rows = (r.result or {}).get("unexpected_index_list") or []
            if r.success or not rows:
                continue
            key = f"{suite}.{r.expectation_config.kwargs.get('column')}"
            by_check[key] = sorted(
                {str(x.get("path", x)) if isinstance(x, dict) else str(x) for x in rows}
            )
    off["frames_by_check"] = by_check
    frames: set[str] = set().union(*by_check.values()) if by_check else set()
    frames |= {p for rows in off["identical_frames"].values() for p, _ in rows}
    frames |= {p[k] for p in off["near_identical_pairs"] for k in ("a", "b")}
    off["frames"] = sorted(frames)
    return off


def validate_splits(
    splits: pd.DataFrame, root: Path | str, params: Params, docs_dir: Path | str
) -> ValidationReport:
    """Run every suite over ``splits`` and write Data Docs HTML into ``docs_dir``.

    Args:
        splits: The splits table (``read_manifest(data/splits.csv)``).
        root: Folder that the ``path`` column is relative to.
        params: Typed config (base.image_size, base.classes, validate).
        docs_dir: Folder for the Data Docs site (must be writable; ``index.html`` is created).

    Returns:
        The report; ``success`` is False when any expectation failed.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX logs its internals at INFO while importing, and one of its modules pins its own logger
    # to INFO on import; that buries the stage's output. Warnings and errors still come through.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    tables = build_tables(splits, Path(root), params)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    ds = ctx.data_sources.add_pandas("lusaug")
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in SUITES:
        if name not in tables:
            skipped[name] = "the splits table lacks the columns this suite needs"
            continue
        df = tables[name]
        bd = ds.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        # Expectations passed at construction: one store write instead of one per expectation.
        suite = ctx.suites.add(
            gx.ExpectationSuite(name=name, expectations=_expectations(name, params))
        )
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=name, data=bd, suite=suite)
        )
        index_cols = [c for c in _INDEX_COLUMNS[name] if c in df.columns]
        fmt = {"result_format": "COMPLETE", "unexpected_index_column_names": index_cols}
        results[name] = vd.run(batch_parameters={"dataframe": df}, result_format=fmt)

    docs_dir = Path(docs_dir).resolve()
    ctx.add_data_docs_site(
        site_name=_DOCS_SITE,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    ctx.build_data_docs(site_names=[_DOCS_SITE])

    expectations = [_summarise(s, r) for s, res in results.items() for r in res.results]
    evaluated = len(expectations)
    ok = sum(e["success"] for e in expectations)
    stats = {
        "evaluated_expectations": evaluated,
        "successful_expectations": ok,
        "unsuccessful_expectations": evaluated - ok,
        "success_percent": 100.0 * ok / evaluated if evaluated else 0.0,
    }
    return ValidationReport(
        success=bool(results) and not skipped and all(r.success for r in results.values()),
        statistics=stats,
        expectations=expectations,
        offenders=_offenders(results, tables, tables.get("near_identical_frames")),
        n_frames=len(splits),
        docs_index=docs_dir / "index.html",
        skipped_suites=skipped,
    )


def run_validation(
    splits_csv: Path | str, docs_dir: Path | str, metrics_json: Path | str, params: Params
) -> ValidationReport:
    """Validate ``splits_csv``; write Data Docs to ``docs_dir`` and the metrics JSON atomically.

    Both outputs are written whether or not the data passes (a failing run still documents why);
    the docs are built in a temporary sibling folder and renamed over ``docs_dir``.
    """
    splits_csv = Path(splits_csv)
    splits = read_manifest(splits_csv)
    with atomic_path(docs_dir, is_dir=True) as tmp:
        report = validate_splits(splits, splits_csv.resolve().parent, params, tmp)
    report.docs_index = Path(docs_dir) / "index.html"
    write_json(metrics_json, report.to_metrics())
    return report
