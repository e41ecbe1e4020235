"""Section "Decision": the pre-registered primary comparison and the placebo first, then every
comparison (exact p, Holm p, intervals with seeds), what chance alone would give in the family,
the per-patient differences, and what this design can detect (from the placebo)."""

from __future__ import annotations

from lusaug.core.markdown import Doc
from lusaug.models.verdict_text import (
    chance_text,
    comparisons_table,
    limits_block,
    patient_differences,
    placebo_block,
    primary_block,
    reasons_list,
)
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Decision"


def rule_text(run: RunOutputs) -> str:
    """The decision rule in words, with this run's alpha and margin."""
    ev, t = run.params.evaluate, run.target
    return (
        f"Every strategy is compared with `{ev.baseline}` of its architecture, and each "
        f"`synthetic-<G>` with its same-share control `oversample_matched-<G>` (the real {t} "
        "frames repeated to the same count per epoch, so only what G's images show differs). "
        f"The verdict rests on one {t} endpoint (`evaluate.primary.endpoint`), per {t} patient: "
        f"a strategy **helps** when the exact patient-level sign-flip p is at most alpha = "
        f"{ev.alpha} (Holm-adjusted across the family for every comparison but the primary), "
        "the interval over patients and seeds is above 0, and macro-F1 is non-inferior (its "
        f"interval's lower bound above -{100 * ev.noninferiority_margin:g} points); it **hurts** "
        "when the endpoint is significantly worse or macro-F1 is shown worse than the margin; "
        "it **cannot be shown** when even every patient moving the same way could not reach "
        "alpha; otherwise there is **no evidence of help**."
    )


def decision_section(run: RunOutputs, doc: Doc) -> None:
    doc.h(2, TITLE)
    document = run.get("comparison")
    if document is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    t = run.target
    primary_block(doc, document, t)
    placebo_block(doc, document, t)
    doc.p(rule_text(run))
    comparisons_table(doc, document, t, label=run.label)
    doc.p(chance_text(document))
    reasons_list(doc, document)
    patient_differences(doc, document, t)
    limits_block(doc, document, t)
