"""Section "Decision": the decision rule's verdict per strategy and architecture family, and what
this sample size can detect (minimum detectable differences, patients needed)."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, finite, fixed, interval, pct, plural
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Decision"
HELPS, NO_HELP, NOT_ESTIMABLE = "helps", "does not help", "not estimable"  # evaluate's verdicts
GAIN_DIGITS = 2  # the reference gain in points (the study's +2.25)
NO_SPREAD = "n/a (no spread)"  # MDD 0: both sides gave the same outcome in every draw


def _mdd_text(run: RunOutputs, mdd: dict[str, Any]) -> str:
    t = run.target
    n_rare = mdd.get(f"{t}_patients")
    text = (
        f"What this design can tell from noise ({mdd.get('patients', NA)} patients, "
        + (plural(n_rare, f"{t} patient") if isinstance(n_rare, int) else f"{NA} {t} patients")
        + f"; {round(100 * mdd.get('ci', run.params.evaluate.ci))}% intervals, power "
        f"{round(100 * mdd.get('power', run.params.evaluate.power))}%): the median minimum "
        f"detectable difference over the comparisons is {pct(mdd.get('accuracy'))} accuracy "
        f"points, {pct(mdd.get('f1_macro'))} macro-F1 points and "
        f"{pct(mdd.get(f'recall_{t}'))} {t}-recall points; smaller differences cannot be told "
        "from noise at this sample size."
    )
    gain, needed = mdd.get("reference_gain"), mdd.get("patients_needed_for_reference_gain")
    rare_needed = mdd.get(f"{t}_patients_needed_for_reference_gain")
    if needed:
        text += (
            f" Detecting a gain of {fixed(100 * gain, GAIN_DIGITS) if finite(gain) else NA} "
            "accuracy points (evaluate.reference_gain) would need about "
            f"{needed} patients ({rare_needed if rare_needed is not None else NA} of them {t}) "
            "with this design (the detectable difference shrinks with the square root of the "
            "patients)."
        )
    else:
        text += " No number of patients needed for the reference gain: its MDD is undefined."
    return text


def decision_section(run: RunOutputs, doc: Doc) -> None:
    doc.h(2, TITLE)
    t, ci = run.target, run.params.evaluate.ci
    doc.p(
        f"A strategy **helps** the rare class ({t}) when the lower bound of its paired "
        f"{t}-recall difference with `{run.params.evaluate.baseline}` is above 0 and its "
        f"macro-F1 difference is not significantly negative ({round(100 * ci)}% intervals); "
        f"otherwise it **does not help**; with fewer than two {t} patients it is **not "
        f"estimable**. MDD is the comparison's minimum detectable {t}-recall difference."
    )
    comparison = run.get("comparison")
    if comparison is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    rows = []
    for s in run.strategies():
        for a in run.architectures():
            e = run.comparison_entry(s, a)
            if e is None:
                continue
            d = e.get(f"recall_{t}") or {}
            rows.append(
                [
                    run.label(s),
                    a,
                    f"**{e.get('decision', NA)}**",
                    e.get("decision_reason") or "",
                    interval(d.get("diff"), d.get("lo"), d.get("hi"), signed=True),
                    NO_SPREAD if d.get("mdd") == 0 else pct(d.get("mdd")),
                ]
            )
    if rows:
        doc.table(["Strategy", "Family", "Verdict", "Why", f"Δ {t} recall", "MDD"], rows)
    else:
        doc.p("No strategy besides the baseline was compared.")
    mdd = comparison.get("mdd")
    doc.p(_mdd_text(run, mdd) if isinstance(mdd, dict) else "No minimum detectable difference.")
