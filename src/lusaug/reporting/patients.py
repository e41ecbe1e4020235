"""Section "<target> patients": the recall of each rare-class patient (one row each) per strategy."""

from __future__ import annotations

from lusaug.core.markdown import Doc, pct
from lusaug.reporting.figures import Figures
from lusaug.reporting.outputs import FILES, RunOutputs, missing
from lusaug.reporting.table3 import EVALUATE_DIR

FIGURE = ("rare_patient_recall.png", "{target} recall per {target} patient and setting")


def title(target: str) -> str:
    return f"{target.capitalize()} patients: recall per patient"


def patients_section(run: RunOutputs, doc: Doc, figs: Figures) -> None:
    t = run.target
    doc.h(2, title(t))
    rare = run.get("rare")
    if not isinstance(rare, dict) or not isinstance(rare.get("patients"), list):
        doc.p(missing(FILES["rare"], "evaluate"))
        return
    rows = rare["patients"]
    doc.p(
        f"Percent of each {t} patient's frames predicted as {t}, pooled out-of-fold (the "
        f"patient is tested once, in the fold shown), mean over seeds; one table per "
        f"architecture family. {len(rows)} {t} patients, "
        f"{sum(int(r.get('frames', 0)) for r in rows)} frames."
    )
    for a in run.architectures():
        strategies = [
            s for s in run.strategies() if any(f"{s}-{a}" in r.get("recall", {}) for r in rows)
        ]
        if not strategies:
            continue
        doc.p(f"**{a}**")
        doc.table(
            ["Patient", "Test fold", "Frames", "Videos", *(run.label(s) for s in strategies)],
            [
                [r.get("patient_id"), r.get("fold"), r.get("frames"), r.get("videos")]
                + [pct(r.get("recall", {}).get(f"{s}-{a}")) for s in strategies]
                for r in rows
            ],
        )
    name, caption = FIGURE
    figs.add(doc, run.repo / EVALUATE_DIR / name, f"evaluate/{name}", caption.format(target=t))
