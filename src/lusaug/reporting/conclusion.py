"""Section "Conclusion": a hand-written file included verbatim, then plain statements generated
from metrics/comparison.json."""

from __future__ import annotations

from pathlib import Path

from lusaug.core.markdown import NA, Doc, fixed, interval
from lusaug.inference import CANNOT, HELPS, HURTS, NO_EVIDENCE
from lusaug.reporting.outputs import FILES, ReportError, RunOutputs, missing

TITLE = "Conclusion"
GENERATED_TITLE = "What the verdicts say"
P_DIGITS = 4


def _primary(run: RunOutputs, document: dict) -> str:
    pr = document.get("primary") or {}
    d = pr.get("decision")
    if not isinstance(d, dict):
        return f"**Primary** `{pr.get('name', NA)}`: not evaluated ({pr.get('not_evaluated')})."
    return (
        f"**Primary** `{pr.get('name')}` ({run.target} {pr.get('endpoint')}): "
        f"**{d.get('verdict')}**, "
        f"{interval(d.get('estimate'), d.get('lo'), d.get('hi'), signed=True)} points, exact "
        f"p = {fixed(d.get('p_value'), P_DIGITS)}."
    )


def _placebos(document: dict) -> str:
    parts = [
        f"`{arch}` {p['verdict']}" if "verdict" in p else f"`{arch}` not run ({p['not_run']})"
        for arch, p in (document.get("placebos") or {}).items()
    ]
    return "**Placebo**: " + ("; ".join(parts) or "none") + "."


def _by_verdict(run: RunOutputs, document: dict) -> list[str]:
    groups: dict[str, list[str]] = {v: [] for v in (HELPS, HURTS, CANNOT, NO_EVIDENCE)}
    for c in (document.get("comparisons") or {}).values():
        verdict = (c.get("decision") or {}).get("verdict", NA)
        groups.setdefault(verdict, []).append(
            f"{run.label(c.get('strategy'))} vs {run.label(c.get('control'))} "
            f"({c.get('architecture')})"
        )
    words = {HELPS: "Helps", HURTS: "Hurts", CANNOT: "Cannot be shown", NO_EVIDENCE: "No evidence"}
    return [
        f"**{words.get(v, v.capitalize())}** ({run.target}): {', '.join(items) or 'none'}."
        for v, items in groups.items()
        if items or v == HELPS
    ]


def _chance(document: dict) -> str:
    fam = document.get("family") or {}
    ch = fam.get("chance") or {}
    return (
        f"**Chance**: {fam.get('helps_among_secondaries', 0)} of {fam.get('m', 0)} secondary "
        f"comparisons help after Holm; with no effect anywhere about "
        f"{fixed(ch.get('expected_helps_unadjusted'), 2)} would 'help' unadjusted, and Holm keeps "
        f"the chance of any false 'helps' at most {ch.get('holm_fwer_bound', NA)}."
    )


def conclusion_section(run: RunOutputs, doc: Doc, conclusion: Path | None) -> None:
    doc.h(2, TITLE)
    if conclusion is not None:
        if not conclusion.is_file():
            raise ReportError(f"conclusion file {conclusion} not found")
        doc.raw(conclusion.read_text())
    else:
        doc.p("_No written conclusion was supplied (`lusaug report --conclusion FILE`)._")
    doc.h(3, GENERATED_TITLE)
    document = run.get("comparison")
    if document is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    doc.p(
        "Generated from metrics/comparison.json, in percentage points: the pre-registered "
        "primary, the placebo, every comparison by verdict (each strategy against the baseline "
        "of its architecture, each `synthetic-<G>` against `oversample_matched-<G>`), and what "
        "chance alone would give in that family."
    )
    doc.bullets(
        [
            _primary(run, document),
            _placebos(document),
            *_by_verdict(run, document),
            _chance(document),
        ]
    )
