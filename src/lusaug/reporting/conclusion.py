"""Section "Conclusion": a hand-written file included verbatim, then plain statements generated
from metrics/comparison.json."""

from __future__ import annotations

import math
from pathlib import Path

from lusaug.core.markdown import NA, Doc, interval
from lusaug.reporting.decision import HELPS, NO_HELP
from lusaug.reporting.outputs import FILES, ReportError, RunOutputs, missing

TITLE = "Conclusion"
GENERATED_TITLE = "What the intervals say"
# metrics/comparison.json's per-metric verdicts and how the statements group them.
GROUPS = {"better": "better", "worse": "worse", "not significant": "within noise"}
SAME = "identical in every draw"  # 0 [0, 0]: both sides gave the same outcome throughout


def _metric_groups(run: RunOutputs, arch: str, metric: str) -> list[str]:
    """'label: items' phrases sorting every strategy by the verdict of its difference."""
    groups: dict[str, list[str]] = {label: [] for label in [*GROUPS.values(), SAME]}
    other: dict[str, list[str]] = {}  # not estimable / undefined: by the verbatim verdict
    for s in run.strategies():
        d = (run.comparison_entry(s, arch) or {}).get(metric)
        if not isinstance(d, dict):
            continue
        verdict = str(d.get("verdict") or "no verdict")
        text = f"{run.label(s)} ({interval(d.get('diff'), d.get('lo'), d.get('hi'), signed=True)})"
        if verdict in GROUPS and d.get("diff") == d.get("lo") == d.get("hi") == 0:
            groups[SAME].append(run.label(s))
        elif verdict in GROUPS:
            groups[GROUPS[verdict]].append(text)
        else:
            other.setdefault(verdict, []).append(run.label(s))
    if not any(groups.values()) and not other:
        return []
    parts = [
        f"{label}: {'; '.join(items) or 'none'}"
        for label, items in groups.items()
        if items or label != SAME
    ]
    return parts + [f"{verdict}: {', '.join(items)}" for verdict, items in other.items()]


def _decisions(run: RunOutputs) -> list[str]:
    by_verdict: dict[str, list[str]] = {}
    for s in run.strategies():
        for a in run.architectures():
            e = run.comparison_entry(s, a)
            if e is not None:
                by_verdict.setdefault(str(e.get("decision", NA)), []).append(
                    f"{run.label(s)} ({a})"
                )
    t = run.target
    lines = [
        f"**Helps {t}** (the decision rule): {', '.join(by_verdict.pop(HELPS, [])) or 'none'}."
    ]
    if NO_HELP in by_verdict:
        lines.append(f"**Does not help {t}**: {', '.join(by_verdict.pop(NO_HELP))}.")
    lines += [f"**{v.capitalize()}**: {', '.join(items)}." for v, items in by_verdict.items()]
    return lines


def _seed_flips(run: RunOutputs, arch: str) -> list[str]:
    out = []
    for s in run.strategies():
        diffs = ((run.comparison_entry(s, arch) or {}).get("f1_macro") or {}).get("per_seed", [])
        if len({math.copysign(1, d) for d in diffs if d}) > 1:
            out.append(run.label(s))
    return out


def conclusion_section(run: RunOutputs, doc: Doc, conclusion: Path | None) -> None:
    doc.h(2, TITLE)
    if conclusion is not None:
        if not conclusion.is_file():
            raise ReportError(f"conclusion file {conclusion} not found")
        doc.raw(conclusion.read_text())
    else:
        doc.p("_No written conclusion was supplied (`lusaug report --conclusion FILE`)._")
    doc.h(3, GENERATED_TITLE)
    if run.get("comparison") is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    t = run.target
    doc.p(
        f"Generated from metrics/comparison.json: each strategy against "
        f"`{run.params.evaluate.baseline}` of the same architecture, in percentage points; "
        "'better'/'worse' means the interval excludes 0, 'within noise' that it spans 0, "
        f"'{SAME}' that both sides had the same outcome in every bootstrap draw. Paired "
        f"differences exist for the overall metrics and {t} recall only."
    )
    items = _decisions(run)
    for arch in run.architectures():
        for metric, name in (("f1_macro", "macro-F1"), (f"recall_{t}", f"{t} recall")):
            parts = _metric_groups(run, arch, metric)
            if parts:
                items.append(f"**{arch}, {name}**: " + ". ".join(parts) + ".")
        flips = _seed_flips(run, arch)
        if flips:
            items.append(
                f"**{arch}, seeds**: the macro-F1 difference changes sign between training "
                f"seeds for {', '.join(flips)}: the seed matters as much as the strategy there."
            )
    doc.bullets(items)
