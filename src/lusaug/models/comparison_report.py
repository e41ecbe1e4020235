"""``reports/comparison.{md,html}``: the evaluate stage's results in the study's Table 3 layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lusaug.core.config import EvaluateParams
from lusaug.core.markdown import Doc, interval, pct, plural, signed_pct, write_report
from lusaug.models.comparison import Findings

# Columns of the study's Table 3 (per architecture), in order.
TABLE3 = (("accuracy", "Acc"), ("f1_macro", "F1"), ("precision_macro", "Prec"))
MORE = ("balanced_accuracy", "f1_weighted", "recall_macro", "roc_auc_macro", "video_accuracy")


def fmt(v: Any, lo: Any = None, hi: Any = None, signed: bool = False) -> str:
    """Percentage points with one decimal, ``n/a`` for undefined values; an optional interval
    (the report's own formats, :mod:`lusaug.core.markdown`)."""
    if lo is None:
        return signed_pct(v) if signed else pct(v)
    return interval(v, lo, hi, signed=signed)


def _table3(doc: Doc, agg: dict[str, dict]) -> None:
    archs = list(dict.fromkeys(e["architecture"] for e in agg.values()))
    strategies = list(dict.fromkeys(e["strategy"] for e in agg.values()))
    header = ["Strategy"] + [f"{a} {lab}" for a in archs for _, lab in TABLE3]
    rows = []
    for s in strategies:
        row = [s]
        for a in archs:
            e = agg.get(f"{s}-{a}")
            for m, _ in TABLE3:
                if e is None:
                    row.append("-")
                elif "unavailable" in e:
                    row.append("blocked")
                else:
                    row.append(fmt(e[m]["value"], e[m]["lo"], e[m]["hi"]))
        rows.append(row)
    doc.table(header, rows)


def _differences(doc: Doc, comparison: dict, target: str, baseline: str) -> None:
    doc.h(2, f"Paired differences with `{baseline}` (same architecture, seeds and draws)")
    doc.p(
        "Percentage points with the interval over patients; 'not significant' when it spans 0. "
        "MDD is the minimum detectable difference of that comparison at this sample size. The "
        "last column is the macro-F1 difference per training seed: when those disagree in sign, "
        "the seed matters as much as the strategy."
    )
    header = [
        "Strategy",
        "Arch",
        "Δ accuracy",
        "Δ macro F1 (MDD)",
        f"Δ {target} recall (MDD)",
        "Δ video accuracy",
        "macro F1 verdict",
        f"{target} recall verdict",
        "Δ macro F1 per seed",
    ]
    rows = []
    for e in comparison.values():
        f1, rare = e["f1_macro"], e[f"recall_{target}"]
        rows.append(
            [
                e["strategy"],
                e["architecture"],
                fmt(e["accuracy"]["diff"], e["accuracy"]["lo"], e["accuracy"]["hi"], True),
                f"{fmt(f1['diff'], f1['lo'], f1['hi'], True)} ({fmt(f1['mdd'])})",
                f"{fmt(rare['diff'], rare['lo'], rare['hi'], True)} ({fmt(rare['mdd'])})",
                fmt(
                    e["video_accuracy"]["diff"],
                    e["video_accuracy"]["lo"],
                    e["video_accuracy"]["hi"],
                    True,
                ),
                f1["verdict"],
                rare["verdict"],
                ", ".join(fmt(d, signed=True) for d in f1["per_seed"]),
            ]
        )
    doc.table(header, rows)


def _decision(doc: Doc, comparison: dict, mdd: dict, target: str, cfg: EvaluateParams) -> None:
    doc.h(2, "Decision")
    doc.p(
        f"A strategy helps the rare class ({target}) when the lower bound of its paired "
        f"{target}-recall difference is above 0 and its macro-F1 difference is not "
        f"significantly negative ({round(100 * cfg.ci)}% intervals)."
    )
    doc.table(
        ["Strategy", "Arch", "Verdict", "Why"],
        [
            [e["strategy"], e["architecture"], e["decision"], e["decision_reason"]]
            for e in comparison.values()
        ],
    )
    needed = mdd.get("patients_needed_for_reference_gain")
    rare_needed = mdd.get(f"{target}_patients_needed_for_reference_gain")
    doc.p(
        f"What this design can rule out ({mdd['patients']} patients, "
        f"{plural(mdd[f'{target}_patients'], target + ' patient')}; power {mdd['power']:.0%}): "
        f"differences smaller than about {fmt(mdd['accuracy'])} accuracy points, "
        f"{fmt(mdd['f1_macro'])} macro-F1 points and {fmt(mdd[f'recall_{target}'])} "
        f"{target}-recall points are indistinguishable from noise (median minimum detectable "
        "difference over the comparisons). "
        + (
            f"Detecting a {100 * mdd['reference_gain']:+.2f}-point accuracy gain would "
            f"need roughly {needed} patients ({rare_needed} of them {target}) with the same "
            "design (the detectable difference shrinks with the square root of the patients)."
            if needed
            else ""
        )
    )


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
    mdd: dict,
    selection: dict,
    figures: dict[str, Path],
    cfg: EvaluateParams,
) -> None:
    """``reports/comparison.md`` (+ ``.html``): the study's Table 3 layout, the differences, the
    decision, the per-patient table, more metrics and the final model's setting."""
    agg, comparison, rare_rows = found.agg, found.comparison, found.rare_rows
    classes, target = found.classes, found.target
    pct = round(100 * cfg.ci)
    doc = Doc()
    doc.h(1, "Classifier comparison: pooled out-of-fold test predictions")
    doc.p(
        f"{info['folds']} folds; every frame is predicted once, by the model of the fold that "
        f"tests it: {info['frames']} frames, {info['videos']} videos, {info['patients']} "
        f"patients ({plural(info[f'{target}_patients'], target + ' patient')}, each tested "
        f"once). Every setting is the mean over its seeds; brackets are {pct}% intervals from "
        f"{cfg.bootstrap} bootstrap resamples of patients"
        f"{' within each class' if cfg.stratify else ''} (frames of a patient are not independent)."
    )
    unavailable = {k: e["unavailable"] for k, e in agg.items() if "unavailable" in e}
    if unavailable:
        doc.p(
            "Not evaluated (a fold's filter blocked the generator, so the setting has no "
            "out-of-fold prediction for every frame): "
            + "; ".join(f"{k}: {next(iter(v.values()))}" for k, v in unavailable.items())
        )
    doc.h(2, "Accuracy, macro F1 and macro precision (%), as the study's Table 3")
    _table3(doc, agg)
    if comparison:
        _differences(doc, comparison, target, cfg.baseline)
        for key in ("diff_f1_macro", f"diff_recall_{target}"):
            if key in figures:
                doc.image(figures[key], key)
        _decision(doc, comparison, mdd, target, cfg)
    if rare_rows:
        _rare(doc, rare_rows, target, figures)
    available = [e for e in agg.values() if "unavailable" not in e]
    doc.h(2, "Per-class recall (%)")
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
    doc.h(2, "More metrics (%), and macro F1 per fold")
    folds = sorted({k for e in available for k in e["per_fold"]}, key=int)
    doc.table(
        ["Strategy", "Arch", "balanced acc", "weighted F1", "macro recall", "ROC-AUC", "video acc"]
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
