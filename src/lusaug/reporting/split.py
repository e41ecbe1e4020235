"""Section "Split": the folds (patients / videos / frames per class and split) and the Great
Expectations validation summary across folds."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, plural
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Split: folds and validation"
SPLITS = ("train", "val", "test")
FINAL = "final"  # split.json's key (and validate's suite prefix) of the final model's split


def _cell(d: dict[str, Any]) -> str:
    return f"{d.get('patients', 0)} / {d.get('videos', 0)} / {d.get('frames', 0)}"


def _fold_rows(name: str, fold: dict[str, Any], classes: list[str]) -> list[list[str]]:
    per_class = fold.get("classes") or {}
    rows = [[name, c, *(_cell(per_class.get(c, {}).get(s, {})) for s in SPLITS)] for c in classes]
    if fold.get("totals"):
        rows.append([name, "**all**", *(_cell(fold["totals"].get(s, {})) for s in SPLITS)])
    return rows


def _rare_tested(run: RunOutputs) -> str:
    rare = run.get("rare")
    if not isinstance(rare, dict) or not rare.get("patients"):
        return ""
    by_fold: dict[int, list[str]] = {}
    for row in rare["patients"]:
        by_fold.setdefault(row.get("fold"), []).append(str(row.get("patient_id")))
    parts = [f"fold {k}: {', '.join(ids)}" for k, ids in sorted(by_fold.items())]
    return f" {run.target} patients tested per fold: " + "; ".join(parts) + "."


def _linked(split: dict[str, Any]) -> list[str]:
    linked = split.get("linked_patients") or {}
    lines = []
    for group in linked.get("groups", []):
        where = group.get("split") or {}
        placed = "; ".join(f"fold {k}: {', '.join(v)}" for k, v in where.items())
        reasons = "; ".join(str(link.get("reason", "")) for link in group.get("links", []))
        lines.append(f"patients {', '.join(map(str, group.get('patients', [])))} → {placed}")
        lines[-1] += f": {reasons}" if reasons else ""
    return lines


def folds_table(run: RunOutputs, doc: Doc) -> None:
    s = run.get("split")
    if not isinstance(s, dict) or "folds" not in s:
        doc.p(missing(FILES["split"], "split"))
        return
    settings = s.get("settings", {})
    groups = settings.get("rare_groups") or []
    doc.p(
        f"Scheme `{settings.get('scheme', NA)}`, grouped by {settings.get('grouping', NA)}, "
        f"stratified by {settings.get('stratify', NA)}, seed {settings.get('seed', NA)}: "
        f"k = {settings.get('k', NA)} folds from {plural(len(groups), 'patient group')} of "
        f"the rarest class `{settings.get('rare_class', NA)}` (at most split.max_folds = "
        f"{settings.get('max_folds', NA)}); a share {settings.get('val_fraction', NA)} of each "
        "class's non-test patients validates." + _rare_tested(run) + " Cells: patients / "
        "videos / frames."
    )
    classes = list(run.params.base.classes)
    rows = []
    for k, fold in s["folds"].items():
        rows += _fold_rows(f"fold {k}", fold, classes)
    if isinstance(s.get(FINAL), dict):
        rows += _fold_rows("final model", s[FINAL], classes)
    doc.table(["Fold", "Class", *SPLITS], rows)
    fallbacks = [
        f"fold {k}: {', '.join(f['val_missing'])}"
        for k, f in s["folds"].items()
        if f.get("val_missing")
    ]
    if fallbacks:
        doc.p(
            "No validation patient (a class with a single patient group outside the test fold "
            "trains; validation macro averages run over the classes present): "
            + "; ".join(fallbacks)
            + "."
        )
    linked = _linked(s)
    if linked:
        doc.p("Patients linked by near-identical frames (each group kept in one split):")
        doc.bullets(linked)
    if s.get("multi_class_patients"):
        doc.p(
            "Patients with frames of more than one class (their frames stay in one split): "
            + ", ".join(map(str, s["multi_class_patients"]))
            + "."
        )


def _suite_key(suite: str) -> tuple[str, str]:
    """``fold-0.manifest`` -> (``fold 0``, ``manifest``); ``folds.test_folds`` -> across folds."""
    prefix, _, check = suite.partition(".")
    if prefix == "folds":
        return "across folds", check
    if prefix == f"fold-{FINAL}":
        return "final model", check
    return prefix.replace("fold-", "fold "), check


def validation_summary(run: RunOutputs, doc: Doc) -> None:
    v = run.get("validation")
    if not isinstance(v, dict):
        doc.p(missing(FILES["validation"], "validate"))
        return
    doc.p(
        f"Great Expectations over {v.get('n_folds', NA)} folds and the final split: "
        f"{'passed' if v.get('success') else 'FAILED'}, {v.get('successful_expectations', NA)} "
        f"of {v.get('evaluated_expectations', NA)} expectations met on {v.get('n_frames', NA)} "
        f"frames. Data Docs: `{v.get('data_docs', NA)}` (DVC-cached, not in git). Cells: "
        "passed / evaluated."
    )
    counts: dict[str, dict[str, list[int]]] = {}
    failed = []
    for e in v.get("expectations", []):
        where, check = _suite_key(str(e.get("suite", "?")))
        cell = counts.setdefault(check, {}).setdefault(where, [0, 0])
        cell[0] += bool(e.get("success"))
        cell[1] += 1
        if not e.get("success"):
            failed.append(f"{e.get('suite')}: {e.get('expectation')} ({e.get('column')})")
    columns = list(dict.fromkeys(w for per in counts.values() for w in per))
    if counts:
        doc.table(
            ["Check", *columns],
            [
                [check, *(f"{per[w][0]} / {per[w][1]}" if w in per else "-" for w in columns)]
                for check, per in counts.items()
            ],
        )
    cross = ((v.get("offenders") or {}).get("cross_fold")) or {}
    bad = {k: val for k, val in cross.items() if val}
    if bad:
        failed += [f"across folds: {k}: {val}" for k, val in bad.items()]
    if failed:
        doc.p("Failed expectations:")
        doc.bullets(failed)
    for suite, reason in (v.get("skipped_suites") or {}).items():
        doc.p(f"Skipped suite {suite}: {reason}.")


def split_section(run: RunOutputs, doc: Doc) -> None:
    doc.h(2, TITLE)
    folds_table(run, doc)
    validation_summary(run, doc)
