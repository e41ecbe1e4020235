"""The verdicts in words and tables, from ``metrics/comparison.json`` alone.

Both write-ups use these blocks: ``reports/comparison.md`` (the evaluate stage) and ``lusaug
report``'s "Decision" section. They lead with the primary comparison and the placebo, then the
family's table (exact p, Holm p, intervals with seeds), what chance alone would give in that
family, the per-patient differences, and what the design can detect (from the placebo).
Percentage points throughout; every function takes the parsed JSON, so a write-up re-renders
from a committed run without recomputing anything.
"""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, finite, fixed, interval, pct, plural, signed_pct

P_DIGITS = 4  # p-values
ENDPOINT_NAMES = {"recall": "recall", "auroc": "AUROC", "ap": "AP"}
KIND_TEXT = {
    "vs baseline": "vs baseline",
    "same-share control": "vs same-share control",
    "primary": "primary only",
}


def _p(x: Any) -> str:
    return fixed(x, P_DIGITS)


def endpoint_label(endpoint: str, target: str) -> str:
    """'viral recall' / 'viral AUROC' / 'viral AP' (mean over the rare-class patients)."""
    return f"{target} {ENDPOINT_NAMES.get(endpoint, endpoint)}"


def diff_text(d: dict[str, Any] | None) -> str:
    """A difference with its interval (a PairedEndpoint or PopulationDifference as JSON)."""
    if not isinstance(d, dict):
        return NA
    iv = d.get("interval") or {}
    return interval(d.get("estimate"), iv.get("lo"), iv.get("hi"), signed=True)


def primary_block(doc: Doc, document: dict[str, Any], target: str) -> None:
    """The pre-registered primary comparison: estimate, interval and its method, exact p, the
    verdict and why; or why it could not be evaluated."""
    pr = document.get("primary") or {}
    name, e = pr.get("name", NA), pr.get("endpoint", "recall")
    d = pr.get("decision")
    alpha = (document.get("design") or {}).get("alpha")
    if not isinstance(d, dict):
        doc.p(
            f"**Primary comparison** (pre-registered in `evaluate.primary`): `{name}` on "
            f"{endpoint_label(e, target)}: **not evaluated**: {pr.get('not_evaluated') or NA}."
        )
        return
    paired = ((document.get("comparisons") or {}).get(name) or {}).get("rare", {}).get(e, {})
    iv = paired.get("interval") or {}
    test = paired.get("test") or {}
    ni = d.get("non_inferiority") or {}
    doc.p(
        f"**Primary comparison** (pre-registered in `evaluate.primary`, decided at alpha = "
        f"{alpha}): `{name}` on {endpoint_label(e, target)} (mean over the "
        f"{d.get('n_patients', NA)} {target} patients). Difference "
        f"{interval(d.get('estimate'), d.get('lo'), d.get('hi'), signed=True)} points "
        f"({round(100 * (iv.get('level') or 0.95))}% interval: {iv.get('method', NA)}); exact "
        f"patient-level sign-flip p = {_p(d.get('p_value'))} ({test.get('method', NA)}; the "
        f"smallest p {plural(d.get('n_nonzero', 0), 'patient')} with a difference can give is "
        f"{_p(d.get('min_p'))}); macro-F1 {interval(ni.get('estimate'), ni.get('lo'), ni.get('hi'), signed=True)} "
        f"(non-inferiority margin {pct(ni.get('margin'))} points). **Verdict: "
        f"{d.get('verdict', NA)}**: {d.get('reason', '')}."
    )


def placebo_block(doc: Doc, document: dict[str, Any], target: str) -> None:
    """The placebo of every architecture: baseline vs baseline on disjoint seed halves."""
    placebos = document.get("placebos") or {}
    if not placebos:
        doc.p("**Placebo**: no baseline was evaluated, so no placebo could be run.")
        return
    items = []
    for arch, p in placebos.items():
        if "not_run" in p:
            items.append(f"`{arch}`: **no placebo could be run**: {p['not_run']}.")
            continue
        d = p.get("decision") or {}
        halves = " vs ".join("seeds " + ", ".join(map(str, h)) for h in p.get("seeds", []))
        items.append(
            f"`{arch}` ({halves}): **{p.get('verdict', NA)}** on "
            f"{endpoint_label(d.get('endpoint', 'recall'), target)}: "
            f"{interval(d.get('estimate'), d.get('lo'), d.get('hi'), signed=True)} points, exact "
            f"p = {_p(d.get('p_value'))} ({d.get('verdict', NA)}: {d.get('reason', '')})."
        )
    doc.p(
        "**Placebo**: the baseline against itself on disjoint halves of its seeds, through "
        "exactly the same tests and intervals. Nothing differs but the seeds, so it must say "
        "'no difference'; its spread is the noise floor every minimum detectable difference "
        "below comes from."
    )
    doc.bullets(items)


def chance_text(document: dict[str, Any]) -> str:
    """How many 'helps' chance alone would give in the family, and what Holm guarantees."""
    fam = document.get("family") or {}
    ch = fam.get("chance") or {}
    m = fam.get("m", 0)
    return (
        f"The family holds {plural(m, 'secondary comparison')} besides the primary. With no "
        f"effect anywhere, a test at alpha = {ch.get('alpha', NA)} each would call "
        f"{fixed(ch.get('expected_significant_unadjusted'), 2)} of them significant and about "
        f"{fixed(ch.get('expected_helps_unadjusted'), 2)} 'helps' by chance (unadjusted); with "
        f"these patients the exact test's size is {fixed(ch.get('attainable_size'), 4)}, so "
        f"{fixed(ch.get('expected_significant_attainable'), 2)} are expected. Holm's adjustment "
        f"keeps the chance of any false 'helps' among them at most {ch.get('holm_fwer_bound', NA)}. "
        f"Secondaries that 'help' here: {fam.get('helps_among_secondaries', 0)}."
    )


def comparisons_table(doc: Doc, document: dict[str, Any], target: str, label: Any = str) -> None:
    """Every comparison: the deciding endpoint's difference, exact and Holm p, the other rare
    endpoints, macro-F1 with non-inferiority, the verdict."""
    comparisons = document.get("comparisons") or {}
    e = (document.get("primary") or {}).get("endpoint", "recall")
    others = [x for x in ENDPOINT_NAMES if x != e]
    rows = []
    for c in comparisons.values():
        d = c.get("decision") or {}
        rare = c.get("rare") or {}
        ni = d.get("non_inferiority") or {}
        rows.append(
            [
                f"{label(c.get('strategy'))} vs {label(c.get('control'))}",
                c.get("architecture", NA),
                d.get("role", NA),
                diff_text(rare.get(e)),
                _p((rare.get(e) or {}).get("test", {}).get("p_value")),
                _p((c.get("p_holm") or {}).get(e)),
                *(diff_text(rare.get(x)) for x in others),
                interval(ni.get("estimate"), ni.get("lo"), ni.get("hi"), signed=True)
                + (" (non-inferior)" if ni.get("non_inferior") else ""),
                f"**{d.get('verdict', NA)}**",
            ]
        )
    if not rows:
        doc.p("No comparison could be evaluated.")
    else:
        doc.table(
            [
                "Strategy vs control",
                "Arch",
                "Role",
                f"Δ {endpoint_label(e, target)}",
                "exact p",
                "Holm p",
                *(f"Δ {endpoint_label(x, target)}" for x in others),
                "Δ macro-F1",
                "Verdict",
            ],
            rows,
        )
    skipped = document.get("not_evaluated") or {}
    if skipped:
        doc.p("Not evaluated: " + "; ".join(f"`{n}`: {why}" for n, why in skipped.items()) + ".")


def reasons_list(doc: Doc, document: dict[str, Any]) -> None:
    """Each comparison's verdict with its reason (the rule's words)."""
    items = [
        f"`{name}`: **{(c.get('decision') or {}).get('verdict', NA)}**: "
        f"{(c.get('decision') or {}).get('reason', '')}"
        for name, c in (document.get("comparisons") or {}).items()
    ]
    if items:
        doc.bullets(items)


def patient_differences(doc: Doc, document: dict[str, Any], target: str) -> None:
    """Per comparison, each rare-class patient's seed-averaged difference on the deciding
    endpoint: what the exact test flips the signs of."""
    comparisons = document.get("comparisons") or {}
    e = (document.get("primary") or {}).get("endpoint", "recall")
    patients = list(
        dict.fromkeys(
            p
            for c in comparisons.values()
            for p in ((c.get("rare") or {}).get(e) or {}).get("per_patient", {})
        )
    )
    if not patients:
        return
    doc.p(
        f"Per {target} patient, the difference in {endpoint_label(e, target)} (points, each "
        "side averaged over its seeds). The sign-flip test asks how often flipping these signs "
        "at random gives a sum as far from 0; a patient at 0 adds no information."
    )
    doc.table(
        ["Comparison", *patients],
        [
            [name]
            + [
                signed_pct(((c.get("rare") or {}).get(e) or {}).get("per_patient", {}).get(p))
                for p in patients
            ]
            for name, c in comparisons.items()
        ],
    )


def limits_block(doc: Doc, document: dict[str, Any], target: str) -> None:
    """The MDD and the sample-size projection from the placebo, with their assumptions."""
    mdd, size = document.get("mdd") or {}, document.get("sample_size")
    if "not_run" in mdd or not mdd:
        doc.p(
            "**What this design can detect**: not estimated: "
            + str(mdd.get("not_run", "no placebo"))
            + ". Neither a minimum detectable difference nor a study size is stated without "
            "a noise floor."
        )
        return
    e = endpoint_label(mdd.get("endpoint", "recall"), target)
    seeds = mdd.get("seeds") or [NA, NA]
    value = mdd.get("value")
    doc.p(
        f"**What this design can detect** (from the placebo's noise floor, not from any "
        f"comparison's own spread): with {plural(mdd.get('n_patients', 0), target + ' patient')} "
        f"and {seeds[0]} vs {seeds[1]} runs, the minimum detectable difference in {e} at "
        f"alpha = {mdd.get('alpha')} and power {pct(mdd.get('power'))}% is "
        + (
            f"{pct(value)} points."
            if finite(value)
            else "infinite: the exact test cannot reach alpha with this few patients, "
            "whatever the effect."
        )
    )
    if isinstance(size, dict):
        rows = [
            [
                o.get("seeds"),
                o.get("patients") if o.get("patients") is not None else "none",
                o.get("why") or "",
            ]
            for o in size.get("options", [])
        ]
        doc.p(
            f"Study size for a {e} gain of {pct(size.get('target'))} points "
            f"(`evaluate.target_effect`), power {pct(size.get('power'))}%: {target} patients "
            "needed per number of seeds (runs) per arm."
        )
        doc.table(["Runs per arm", f"{target} patients", "Why none"], rows)
    doc.p("Assumptions:")
    doc.bullets(list(mdd.get("assumptions") or []))
