"""Section "Table 3": the study's Table 3 layout on pooled out-of-fold predictions, with
patient-bootstrap intervals, the paired differences with the baseline and the seed spread."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, interval, pct, plural, signed_pct
from lusaug.reporting.figures import Figures
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Table 3: pooled out-of-fold test metrics per strategy"
DIFF_TITLE = "Paired differences with the baseline"
SEED_TITLE = "Seed spread"
# Figures copied from plots/evaluate/figures ({target} = base.target_class), with captions.
EVALUATE_DIR = "plots/evaluate/figures"
EVALUATE_FIGURES = (
    ("confusion_grid.png", "Pooled out-of-fold confusion matrices, summed over seeds"),
    ("recall_bars.png", "Per-class recall with patient-bootstrap intervals"),
    ("differences_f1_macro.png", "Paired macro-F1 differences with the baseline"),
    ("differences_recall_{target}.png", "Paired {target} recall differences with the baseline"),
    ("curves_val_macro_f1.png", "Validation macro-F1 per epoch, every run and fold"),
)
# Seed-spread metrics of metrics/test_runs.json (pooled per run; it holds no per-class recall).
SEED_METRICS = (("f1_macro", "macro-F1"), ("accuracy", "Acc"))


def table3_metrics(target: str) -> list[tuple[str, str]]:
    """(metric key, column label) of Table 3, in order."""
    return [
        ("accuracy", "Acc"),
        ("f1_macro", "macro-F1"),
        ("precision_macro", "macro-Prec"),
        (f"recall_{target}", f"{target} recall"),
        ("video_accuracy", "video Acc"),
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
        "patient-bootstrap interval. Columns are grouped by architecture family; '-' = not "
        "evaluated."
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
    metrics = table3_metrics(run.target)
    doc.p(
        f"Difference with `{run.params.evaluate.baseline}` of the same architecture in "
        "percentage points, the same seeds and bootstrap draws on both sides, then the verdict "
        "of metrics/comparison.json ('better'/'worse' when the interval excludes 0, 'not "
        "significant' when it spans 0)."
    )
    rows = []
    for s in run.strategies():
        for a in run.architectures():
            e = run.comparison_entry(s, a)
            if e is None:
                continue
            cells = []
            for m, _ in metrics:
                d = e.get(m)
                if not isinstance(d, dict):
                    cells.append(NA)
                    continue
                text = interval(d.get("diff"), d.get("lo"), d.get("hi"), signed=True)
                cells.append(f"{text} — {d['verdict']}" if d.get("verdict") else text)
            rows.append([run.label(s), a, *cells])
    if not rows:
        doc.p("No strategy besides the baseline was compared.")
        return
    doc.table(["Strategy", "Arch", *(f"Δ {lab}" for _, lab in metrics)], rows)


def _runs_by_setting(run: RunOutputs) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in (run.get("test_runs") or {}).values():
        if isinstance(entry, dict) and "strategy" in entry:
            out.setdefault((entry["strategy"], entry["architecture"]), []).append(entry)
    return out


def seed_spread(run: RunOutputs, doc: Doc) -> None:
    doc.h(3, SEED_TITLE)
    if run.get("test_runs") is None:
        doc.p(missing(FILES["test_runs"], "evaluate"))
        return
    seeds = run.params.train.seeds
    doc.p(
        f"Pooled out-of-fold metrics of each training seed ({plural(len(seeds), 'seed')}: "
        f"{', '.join(map(str, seeds))}) from metrics/test_runs.json, and the paired macro-F1 "
        "difference with the baseline per seed; when those disagree in sign, the seed matters "
        "as much as the strategy."
        + (" With one seed there is no spread to show." if len(seeds) == 1 else "")
    )
    by_setting = _runs_by_setting(run)
    rows = []
    for s in run.strategies():
        for a in run.architectures():
            runs = sorted(by_setting.get((s, a), []), key=lambda r: r.get("seed", 0))
            if not runs:
                continue
            cells = [
                ", ".join(pct((r.get(m) or {}).get("value")) for r in runs)
                for m, _ in SEED_METRICS
            ]
            per_seed = (run.comparison_entry(s, a) or {}).get("f1_macro", {}).get("per_seed", [])
            rows.append(
                [run.label(s), a, ", ".join(str(r.get("seed")) for r in runs), *cells]
                + [", ".join(signed_pct(x) for x in per_seed) or "-"]
            )
    doc.table(
        ["Strategy", "Arch", "Seeds", *(f"{lab} per seed" for _, lab in SEED_METRICS)]
        + ["Δ macro-F1 per seed"],
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
