"""Section "Table 3": the study's Table 3 layout on pooled out-of-fold predictions, with intervals
over patients and seeds, the rare class's AUROC and AP beside its recall, the differences with
the baseline and every seed's value."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, interval, pct, plural
from lusaug.models.verdict_text import diff_text
from lusaug.reporting.figures import Figures
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Table 3: pooled out-of-fold test metrics per strategy"
DIFF_TITLE = "Differences with the baseline"
SEED_TITLE = "Seed spread"
# Figures copied from plots/evaluate/figures ({target} = base.target_class), with captions.
EVALUATE_DIR = "plots/evaluate/figures"
EVALUATE_FIGURES = (
    ("confusion_grid.png", "Pooled out-of-fold confusion matrices, summed over seeds"),
    ("recall_bars.png", "Per-class recall with patient-bootstrap intervals (descriptive)"),
    ("differences_f1_macro.png", "Macro-F1 differences, every comparison (patients and seeds)"),
    ("differences_recall_{target}.png", "{target} recall differences, every comparison"),
    ("differences_auroc_{target}.png", "{target} AUROC differences, every comparison"),
    ("curves_val_macro_f1.png", "Validation macro-F1 per epoch, every run and fold"),
)
# Every seed's value of these (metrics/comparison.json's settings: the seeds of each setting).
SEED_METRICS = (("accuracy", "Acc"), ("f1_macro", "macro-F1"), ("recall", "{target} recall"))
DESCRIPTIVE_MARK = "*"  # a column whose interval is the descriptive patient bootstrap


def table3_metrics(target: str) -> list[tuple[str, str]]:
    """(metric key of metrics/test.json, column label) of Table 3, in order."""
    return [
        ("accuracy", "Acc"),
        ("f1_macro", "macro-F1"),
        ("precision_macro", f"macro-Prec{DESCRIPTIVE_MARK}"),
        ("rare_recall", f"{target} recall"),
        ("rare_auroc", f"{target} AUROC"),
        ("rare_ap", f"{target} AP"),
    ]


def _leaky_note(run: RunOutputs, doc: Doc) -> None:
    leaky = [s for s in run.strategies() if run.is_leaky(s)]
    if leaky:
        doc.p(
            f"(leaky) marks {', '.join(f'`{s}`' for s in leaky)}: its generator was trained on "
            "frames that include validation/test frames (`generate.generators.<G>.leaky`), as "
            "the study's 'all viral' DDPM was; it is not a fair comparison."
        )


def missing_settings_note(run: RunOutputs, doc: Doc) -> None:
    """Planned settings with no pooled prediction in test.json, flagged with the reason."""
    absent = run.missing_settings()
    if absent:
        doc.p(
            f"**Planned but not evaluated** ({plural(len(absent), 'setting')} of params.yaml "
            "absent from metrics/test.json): "
            + "; ".join(f"`{s}`: {why}" for s, why in absent.items())
            + "."
        )


def table3(run: RunOutputs, doc: Doc) -> None:
    settings, archs = run.settings(), run.architectures()
    metrics = table3_metrics(run.target)
    doc.p(
        "Percent, mean over seeds, on the pooled out-of-fold predictions (every frame "
        "predicted once, by the model of the fold that tests it); brackets are the "
        f"{round(100 * run.params.evaluate.ci)}% interval over patients and seeds. The "
        f"{run.target} columns are the mean over the {run.target} patients of each one's value "
        f"(recall: the share of their frames called {run.target}; AUROC and AP: their frames "
        "against every other-class frame, which a shift of the class prior moves less). "
        f"{DESCRIPTIVE_MARK} a percentile patient-bootstrap interval, descriptive only (no seed "
        "term). Columns are grouped by architecture family; '-' = not trained or not evaluated."
    )
    header = ["Strategy"] + [f"{a}: {lab}" for a in archs for _, lab in metrics]
    rows = []
    for s in run.strategies():
        row: list[Any] = [run.label(s)]
        for a in archs:
            v = settings.get((s, a))
            for m, _ in metrics:
                row.append(interval(v.get(m), v.get(f"{m}_lo"), v.get(f"{m}_hi")) if v else "-")
        rows.append(row)
    doc.table(header, rows)
    _leaky_note(run, doc)
    missing_settings_note(run, doc)


def differences(run: RunOutputs, doc: Doc) -> None:
    doc.h(3, DIFF_TITLE)
    if run.get("comparison") is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    t = run.target
    doc.p(
        f"Each strategy minus `{run.params.evaluate.baseline}` of the same architecture, in "
        "percentage points, each side averaged over its own seeds; brackets are the interval "
        "over patients and seeds (the verdicts and their tests are in the Decision section)."
    )
    rows = []
    for s in run.strategies():
        for a in run.architectures():
            e = run.comparison_entry(s, a)
            if e is None:
                continue
            pop, rare = e.get("population") or {}, e.get("rare") or {}
            cells = [diff_text(pop.get(m)) for m in ("accuracy", "f1_macro")]
            cells += [diff_text(rare.get(x)) for x in ("recall", "auroc", "ap")]
            verdict = (e.get("decision") or {}).get("verdict", NA)
            rows.append([run.label(s), a, *cells, verdict])
    if not rows:
        doc.p("No strategy besides the baseline was compared.")
        return
    doc.table(
        ["Strategy", "Arch", "Δ Acc", "Δ macro-F1", f"Δ {t} recall", f"Δ {t} AUROC", f"Δ {t} AP"]
        + ["Verdict"],
        rows,
    )


def seed_spread(run: RunOutputs, doc: Doc) -> None:
    doc.h(3, SEED_TITLE)
    document = run.get("comparison")
    if document is None:
        doc.p(missing(FILES["comparison"], "evaluate"))
        return
    t = run.target
    values = document.get("settings") or {}
    doc.p(
        "Pooled out-of-fold value of each training seed (metrics/comparison.json), so the seed "
        "noise each setting's interval includes can be seen; settings train on "
        "`train.seeds` unless `train.overrides` gives them others. A setting with one seed has "
        "no spread of its own."
    )
    rows = []
    for s in run.strategies():
        for a in run.architectures():
            v = values.get(f"{s}-{a}")
            if not v:
                continue
            seeds = run.params.train.seeds_of(s, a)
            cells = [
                ", ".join(pct(x) for x in (v.get(m) or {}).get("per_seed") or [])
                for m, _ in SEED_METRICS
            ]
            rows.append([run.label(s), a, ", ".join(map(str, seeds)), *cells])
    doc.table(
        [
            "Strategy",
            "Arch",
            "Seeds",
            *(f"{lab.format(target=t)} per seed" for _, lab in SEED_METRICS),
        ],
        rows,
    )


def evaluation_figures(run: RunOutputs, doc: Doc, figs: Figures) -> None:
    for name, caption in EVALUATE_FIGURES:
        name, caption = name.format(target=run.target), caption.format(target=run.target)
        figs.add(doc, run.repo / EVALUATE_DIR / name, f"evaluate/{name}", caption)


def table3_section(run: RunOutputs, doc: Doc) -> None:
    doc.h(2, TITLE)
    table3(run, doc)
    differences(run, doc)
    seed_spread(run, doc)
