"""The `validate` stage: Great Expectations suites over every fold's split and its PNG frames.

For every fold, seven tables (:mod:`lusaug.validation.tables`) go through a real GX 1.x
ephemeral context, each as its own pandas data asset with one suite (and one section in the
Data Docs): the split file's schema and values, what each PNG holds, every class in every split
(except a documented validation fallback from reports/split.json), and no patient, video,
identical frame (sha1) or near-identical frame (pHash, recomputed from the PNGs) in two splits.
Across folds two more suites check that every patient is in the test split of exactly one fold
and that every fold file lists every frame. Offending ids come from the GX results
(``unexpected_index_list`` with identifying columns), so the metrics and the error message name
exactly what the suites rejected.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lusaug.core.config import BaseParams, FramesParams, ValidateParams
from lusaug.data.manifest import SPLITS, read_manifest
from lusaug.data.split import fold_file
from lusaug.validation.expectations import (
    CROSS_FOLD_SUITES,
    FOLD_SUITES,
    INDEX_COLUMNS,
    expectations,
)
from lusaug.validation.tables import GROUPS, build_tables, cross_fold_tables, measure_frames

logger = logging.getLogger(__name__)

FINAL = "final"  # key of the final model's split among the folds
SHOW = 10  # offenders listed per kind in the error message (metrics hold all of them)
_DOCS_SITE = "lusaug_docs"  # not "local_site": the ephemeral context already has that one
# Data Docs are a DVC-cached output, so they must be byte-stable: every validation gets one fixed
# run name and time (the stage's wall time is in reports/validation/execution.json instead); the
# pages' other clock readings and their random element ids are rewritten after the build.
DOCS_RUN_NAME = "lusaug-validate"
DOCS_RUN_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # "not recorded": a real time changes the bytes
_BUILD_TIME_QUERY = re.compile(r"\?d=\d{8}T\d{6}\.\d{6}Z")  # GX's cache-busting logo query
_GX_TIME = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z\b")  # e.g. the validation time in a result's meta
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass
class ValidationReport:
    """Outcome of one validation run (what metrics/validation.json holds)."""

    success: bool
    statistics: dict[str, Any]
    expectations: list[dict[str, Any]]
    offenders: dict[str, Any]
    n_frames: int
    n_folds: int = 1
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
            "n_folds": self.n_folds,
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
                f"{st.get('evaluated_expectations')} expectations on {self.n_frames} frames, "
                f"{self.n_folds} fold(s)"
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
        for fold, off in self.offenders.get("folds", {}).items():
            lines += [f"  fold {fold}: {line}" for line in _fold_lines(off)]
        cross = self.offenders.get("cross_fold", {})
        if cross.get("patients_not_tested_once"):
            bad = cross["patients_not_tested_once"]
            items = [f"{p} (test folds: {f})" for p, f in list(bad.items())[:SHOW]]
            lines.append("  patients not tested exactly once: " + ", ".join(items) + _more(bad))
        if cross.get("frames_missing_from_folds"):
            rows = cross["frames_missing_from_folds"]
            lines.append(
                "  frames not in every fold file: " + ", ".join(rows[:SHOW]) + _more(rows)
            )
        if self.skipped_suites:
            for name, why in self.skipped_suites.items():
                lines.append(f"  suite {name} not run: {why}")
        if self.docs_index:
            lines.append(f"  Data Docs: {self.docs_index}")
        return "\n".join(lines)


def _more(items: Any) -> str:
    return f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""


def _fold_lines(off: dict[str, Any]) -> list[str]:
    """What one fold's offenders say, one line per kind."""
    lines: list[str] = []
    for kind in ("patients", "videos"):
        if off.get(kind):
            items = [f"{k} in {'+'.join(v)}" for k, v in list(off[kind].items())[:SHOW]]
            lines.append(f"{kind} in two splits: " + ", ".join(items) + _more(off[kind]))
    if off.get("identical_frames"):
        items = [
            f"{sha[:10]} ({', '.join(f'{p} [{s}]' for p, s in rows)})"
            for sha, rows in list(off["identical_frames"].items())[:SHOW]
        ]
        lines.append(
            "identical frames in two splits: " + "; ".join(items) + _more(off["identical_frames"])
        )
    if off.get("near_identical_pairs"):
        items = [
            f"{p['a']} [{p['split_a']}] ~ {p['b']} [{p['split_b']}] (d={p['distance']})"
            for p in off["near_identical_pairs"][:SHOW]
        ]
        lines.append(
            "near-identical frames in two splits: "
            + "; ".join(items)
            + _more(off["near_identical_pairs"])
        )
    if off.get("missing_class_split"):
        items = [f"{r['label']} in {r['split']}" for r in off["missing_class_split"]]
        lines.append("class missing from split: " + ", ".join(items))
    for kind, rows in off.get("frames_by_check", {}).items():
        lines.append(f"{kind}: " + ", ".join(rows[:SHOW]) + _more(rows))
    return lines


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
        "unexpected": _jsonable(res.get("unexpected_index_list") or [])[: SHOW * 10],
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
        col = GROUPS[suite]
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


@dataclass(frozen=True)
class Sections:
    """The params sections validation reads."""

    base: BaseParams
    validate: ValidateParams
    frames: FramesParams


def _gx_context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # GX logs its internals at INFO while importing, and one of its modules pins its own logger
    # to INFO on import; that buries the stage's output. Warnings and errors still come through.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _run_suite(ctx: Any, ds: Any, name: str, kind: str, df: pd.DataFrame, exps: list) -> Any:
    import great_expectations as gx

    bd = ds.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
    # Expectations passed at construction: one store write instead of one per expectation.
    suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=exps))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=bd, suite=suite))
    index_cols = [c for c in INDEX_COLUMNS[kind] if c in df.columns]
    fmt = {"result_format": "COMPLETE", "unexpected_index_column_names": index_cols}
    from great_expectations.core.run_identifier import RunIdentifier

    run_id = RunIdentifier(run_name=DOCS_RUN_NAME, run_time=DOCS_RUN_TIME)
    return vd.run(batch_parameters={"dataframe": df}, result_format=fmt, run_id=run_id)


def stable_page(text: str) -> str:
    """A Data Docs page without clock readings and with its random element ids numbered in order
    of appearance (an id and the links to it stay paired)."""
    text = _BUILD_TIME_QUERY.sub("", text)
    text = _GX_TIME.sub(DOCS_RUN_TIME.strftime("%Y%m%dT%H%M%S.%fZ"), text)
    numbers: dict[str, str] = {}
    return _UUID.sub(lambda m: numbers.setdefault(m.group(0), f"n{len(numbers) + 1}"), text)


def _make_docs_stable(docs_dir: Path) -> None:
    for page in docs_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        stable = stable_page(text)
        if stable != text:
            page.write_text(stable, encoding="utf-8")


def _cross_offenders(results: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"patients_not_tested_once": {}, "frames_missing_from_folds": []}
    for kind, res in results.items():
        for r in res.results:
            rows = [_jsonable(x) for x in (r.result or {}).get("unexpected_index_list") or []]
            if kind == "test_folds":
                out["patients_not_tested_once"] = {
                    str(x["patient_id"]): str(x["test_folds"]) for x in rows
                }
            elif kind == "fold_frames":
                out["frames_missing_from_folds"] = sorted(str(x["path"]) for x in rows)
    return out


def validate_folds(
    folds: Mapping[int | str, pd.DataFrame],
    root: Path | str,
    sections: Sections,
    docs_dir: Path | str,
    exempt: Mapping[int, Sequence[tuple[str, str]]] | None = None,
) -> ValidationReport:
    """Run every suite over every fold (and the cross-fold suites); write Data Docs.

    Args:
        folds: Fold index -> its split table (``read_manifest(data/splits/fold-<k>.csv)``);
            the key ``final`` is the final model's split (no test patients; not a fold).
        root: Folder the ``path`` columns are relative to.
        sections: The base, validate and frames params sections.
        docs_dir: Folder for the Data Docs site (``index.html`` is created).
        exempt: Per fold, (class, split) pairs allowed to be empty (the split's documented
            validation fallback).

    Returns:
        The report; ``success`` is False when any expectation failed.
    """
    exempt = exempt or {}
    ctx = _gx_context()
    ds = ctx.data_sources.add_pandas("lusaug")
    first = next(iter(folds.values()))
    measured = None
    if "path" in first.columns:  # the same frames in every fold: read the PNGs once
        measured = measure_frames(first, Path(root), sections.validate.phash_size)
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    offenders: dict[str, Any] = {"folds": {}}
    base, val, fr = sections.base, sections.validate, sections.frames
    for fold, splits in folds.items():
        same = measured is not None and splits["path"].tolist() == first["path"].tolist()
        tables = build_tables(
            splits,
            measured if same else measure_frames(splits, Path(root), val.phash_size),
            base.classes,
            [*exempt.get(fold, ()), *(_final_exempt(base.classes) if fold == FINAL else ())],
        )
        fold_results = {}
        for kind in FOLD_SUITES:
            name = f"fold-{fold}.{kind}"
            if kind not in tables:
                skipped[name] = "the splits table lacks the columns this suite needs"
                continue
            df = tables[kind]
            exps = expectations(kind, base, val, fr, n_rows=len(df))
            fold_results[kind] = results[name] = _run_suite(ctx, ds, name, kind, df, exps)
        offenders["folds"][str(fold)] = _offenders(
            fold_results, tables, tables.get("near_identical_frames")
        )
    cv = {k: v for k, v in folds.items() if isinstance(k, int)}
    if len(cv) > 1:
        cross = cross_fold_tables(cv)
        cross_results = {}
        for kind in CROSS_FOLD_SUITES:
            exps = expectations(kind, base, val, fr, n_folds=len(cv))
            cross_results[kind] = results[f"folds.{kind}"] = _run_suite(
                ctx, ds, f"folds.{kind}", kind, cross[kind], exps
            )
        offenders["cross_fold"] = _cross_offenders(cross_results)

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
    _make_docs_stable(docs_dir)
    summaries = [_summarise(s, r) for s, res in results.items() for r in res.results]
    evaluated = len(summaries)
    ok = sum(e["success"] for e in summaries)
    stats = {
        "evaluated_expectations": evaluated,
        "successful_expectations": ok,
        "unsuccessful_expectations": evaluated - ok,
        "success_percent": 100.0 * ok / evaluated if evaluated else 0.0,
    }
    return ValidationReport(
        success=bool(results) and not skipped and all(r.success for r in results.values()),
        statistics=stats,
        expectations=summaries,
        offenders=offenders,
        n_frames=len(first),
        n_folds=len(cv),
        docs_index=docs_dir / "index.html",
        skipped_suites=skipped,
    )


def _final_exempt(classes: Sequence[str]) -> list[tuple[str, str]]:
    """The final model's split tests nobody: (class, test) may be empty."""
    return [(c, "test") for c in classes]


def validate_splits(
    splits: pd.DataFrame, root: Path | str, sections: Sections, docs_dir: Path | str
) -> ValidationReport:
    """Validate one split table (a hold-out split, or one fold on its own)."""
    return validate_folds({0: splits}, root, sections, docs_dir)


def documented_fallbacks(
    split_report: Path | str | None, classes: Sequence[str]
) -> dict[int | str, list[tuple[str, str]]]:
    """Per fold, the (class, split) pairs the split stage leaves empty on purpose: a class with
    one patient group outside a fold's test split trains only; the final split tests nobody."""
    out: dict[int | str, list[tuple[str, str]]] = {FINAL: [(c, "test") for c in classes]}
    if split_report is None or not Path(split_report).exists():
        return out
    report = json.loads(Path(split_report).read_text())
    for k, f in report.get("folds", {}).items():
        out[int(k)] = [(c, "val") for c in f.get("val_missing", [])]
    out[FINAL] += [(c, "val") for c in report.get("final", {}).get("val_missing", [])]
    return out


def read_folds(splits_dir: Path | str, folds: Sequence[int]) -> dict[int | str, pd.DataFrame]:
    """Every fold's split table from ``data/splits``, and the final model's split (``final``)."""
    tables: dict[int | str, pd.DataFrame] = {
        k: read_manifest(Path(splits_dir) / fold_file(k)) for k in folds
    }
    tables[FINAL] = read_manifest(Path(splits_dir) / fold_file(None))
    return tables
