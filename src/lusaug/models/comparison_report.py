"""``reports/comparison.{md,html}``: the primary comparison and the placebo first, then the family's
table, the per-patient differences, what the design can detect, and the settings' metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lusaug.core.config import RARE_ENDPOINTS, EvaluateParams
from lusaug.core.markdown import Doc, interval, pct, plural, signed_pct, write_report
from lusaug.models.comparison import Findings
from lusaug.models.evaluation_files import RARE_PREFIX
from lusaug.models.verdict_text import (
    chance_text,
    comparisons_table,
    endpoint_label,
    limits_block,
    patient_differences,
    placebo_block,
    primary_block,
    reasons_list,
)

# Descriptive metrics (percentile patient bootstrap, no seed term).
MORE = ("precision_macro", "f1_weighted", "recall_macro", "roc_auc_macro", "video_accuracy")


def fmt(v: Any, lo: Any = None, hi: Any = None, signed: bool = False) -> str:
    """Percentage points with one decimal, ``n/a`` for undefined values; an optional interval
    (the report's own formats, :mod:`lusaug.core.markdown`)."""
    if lo is None:
        return signed_pct(v) if signed else pct(v)
    return interval(v, lo, hi, signed=signed)


def _settings_table(doc: Doc, found: Findings) -> None:
    """Accuracy, macro-F1 and the rare class's endpoints per setting, intervals with seeds."""
    t = found.target
    metrics = [("accuracy", "Acc"), ("f1_macro", "macro-F1")] + [
        (RARE_PREFIX + e, endpoint_label(e, t)) for e in RARE_ENDPOINTS
    ]
    rows = []
    for key, e in found.agg.items():
        v = found.flat.get(key)
        if v is None:
            rows.append([e["strategy"], e["architecture"], "-", *(["blocked"] * len(metrics))])
            continue
        rows.append(
            [e["strategy"], e["architecture"], ", ".join(map(str, v["seeds"]))]
            + [fmt(v.get(m), v.get(f"{m}_lo"), v.get(f"{m}_hi")) for m, _ in metrics]
        )
    doc.table(["Strategy", "Arch", "Seeds", *(lab for _, lab in metrics)], rows)


def _rare(doc: Doc, rows: list[dict], target: str, figures: dict[str, Path]) -> None:
    doc.h(2, f"{target} recall per {target} patient (out-of-fold)")
    settings = list(dict.fromkeys(s for r in rows for s in r["recall"]))
    doc.table(
        ["Patient", "Frames", "Videos", "Test fold", *settings],
        [
            [r["patient_id"], r["frames"], r["videos"], r["fold"]]
            + [fmt(r["recall"].get(s)) for s in settings]
            for r in rows
        ],
    )
    if "rare_patients" in figures:
        doc.image(figures["rare_patients"], f"{target} recall per patient")


def write_comparison_report(
    path: Path,
    info: dict,
    found: Findings,
    selection: dict,
    figures: dict[str, Path],
    cfg: EvaluateParams,
) -> None:
    """``reports/comparison.md`` (+ ``.html``): the verdicts first, then the settings' metrics,
    the per-patient tables, descriptive metrics and the final model's setting."""
    document, classes, target = found.verdicts, found.classes, found.target
    pct_ci = round(100 * cfg.ci)
    doc = Doc()
    doc.h(1, "Classifier comparison: pooled out-of-fold test predictions")
    doc.p(
        f"{info['folds']} folds; every frame is predicted once, by the model of the fold that "
        f"tests it: {info['frames']} frames, {info['videos']} videos, {info['patients']} "
        f"patients ({plural(info[f'{target}_patients'], target + ' patient')}, each tested "
        f"once). Differences are in percentage points with {pct_ci}% intervals over patients "
        "and seeds; the tests are exact over the rare-class patients."
    )
    primary_block(doc, document, target)
    placebo_block(doc, document, target)
    doc.h(2, "Every comparison")
    doc.p(
        "Each strategy against the baseline of its architecture, each `synthetic-<G>` against "
        "its same-share control `oversample_matched-<G>` (real frames repeated to the same "
        "rare-class count per epoch: only what G's images show differs), and the primary. "
        "'helps' needs the exact p (Holm-adjusted for a secondary) at alpha, the interval "
        "with seeds above 0 and macro-F1 non-inferior; 'cannot be shown' means that even if "
        "every patient moved the same way the test could not reach alpha."
    )
    comparisons_table(doc, document, target)
    doc.p(chance_text(document))
    for key in ("diff_f1_macro", *(f"diff_{e}_{target}" for e in RARE_ENDPOINTS)):
        if key in figures:
            doc.image(figures[key], key)
    reasons_list(doc, document)
    patient_differences(doc, document, target)
    limits_block(doc, document, target)
    unavailable = {k: e["unavailable"] for k, e in found.agg.items() if "unavailable" in e}
    doc.h(2, "Settings")
    doc.p(
        "Mean over seeds; the rare class's endpoints are the mean over its patients of each "
        f"patient's value; {pct_ci}% intervals over patients and seeds."
    )
    _settings_table(doc, found)
    if unavailable:
        doc.p(
            "Not evaluated (a fold's filter blocked the generator, so the setting has no "
            "out-of-fold prediction for every frame): "
            + "; ".join(f"{k}: {next(iter(v.values()))}" for k, v in unavailable.items())
        )
    if found.rare_rows:
        _rare(doc, found.rare_rows, target, figures)
    available = [e for e in found.agg.values() if "unavailable" not in e]
    doc.h(2, "Per-class recall (%), descriptive")
    doc.p(
        f"Frames pooled over patients; brackets are {pct_ci}% percentile intervals from "
        f"{cfg.bootstrap} bootstrap resamples of patients{' within each class' if cfg.stratify else ''}: "
        "no seed term, and with fewer than "
        f"{cfg.min_patients_for_bootstrap} patients in a class too few distinct draws: "
        "descriptive only, never a verdict basis."
    )
    if "recall_bars" in figures:
        doc.image(figures["recall_bars"], "per-class recall")
    doc.table(
        ["Strategy", "Arch", *classes],
        [
            [e["strategy"], e["architecture"]]
            + [
                fmt(e[f"recall_{c}"]["value"], e[f"recall_{c}"]["lo"], e[f"recall_{c}"]["hi"])
                for c in classes
            ]
            for e in available
        ],
    )
    doc.h(2, "More metrics (%), descriptive, and macro F1 per fold")
    folds = sorted({k for e in available for k in e["per_fold"]}, key=int)
    doc.table(
        ["Strategy", "Arch", "macro prec", "weighted F1", "macro recall", "ROC-AUC", "video acc"]
        + [f"F1 fold {k}" for k in folds],
        [
            [e["strategy"], e["architecture"]]
            + [fmt(e[m]["value"], e[m]["lo"], e[m]["hi"]) for m in MORE]
            + [fmt(e["per_fold"][k]["f1_macro"]) for k in folds]
            for e in available
        ],
    )
    if "confusion_grid" in figures:
        doc.h(2, "Confusion matrices (pooled out-of-fold, summed over seeds)")
        doc.image(figures["confusion_grid"], "confusion matrices")
    doc.h(2, "Training curves (validation macro-F1 per epoch, every run and fold)")
    doc.image(figures["curves_f1"], "validation macro-F1 per epoch")
    chosen = selection["chosen"]
    doc.h(2, "The final model's setting (chosen on validation)")
    doc.p(
        f"`{chosen['strategy']}` / `{chosen['architecture']}` has the best pooled validation "
        f"{selection['metric']} ({selection['value']:.3f}); the final stage refits it on all "
        "patients. The test numbers above played no part in this choice."
    )
    doc.h(2, "How to read this")
    doc.bullets(
        [
            "Video accuracy averages the class probabilities of each video's frames.",
            "ROC-AUC is one-vs-rest per class, macro-averaged over the classes present.",
            "Per-fold values are descriptive: folds are not independent, so no test across them.",
        ]
    )
    write_report(doc, path, "lusaug classifier comparison")
