"""Section "Tuning": the values each fold's Optuna studies chose, and whether tuning moved the
pooled result (``class_weights_tuned`` vs ``class_weights``, ``synthetic_tuned-<G>`` vs
``synthetic-<G>``)."""

from __future__ import annotations

from typing import Any

from lusaug.core.config import SYNTHETIC_PREFIX, parse_strategy
from lusaug.core.markdown import NA, Doc, fixed, pct, signed_pct
from lusaug.reporting.figures import Figures
from lusaug.reporting.outputs import TUNED_YAML, RunOutputs
from lusaug.reporting.synthetic import figure_folds

TITLE = "Tuning (Optuna, per fold)"
TUNE_FIGURE = (
    "plots/tune/fold-{k}/{s}/optimization_history.png",
    "`{s}`, fold {k}: Optuna history",
)
UNTUNED = {"class_weights_tuned": "class_weights", "synthetic_tuned-": SYNTHETIC_PREFIX}
WEIGHT_DIGITS = 2
THRESHOLD_DIGITS = 2
LR_FORMAT = ".3g"


def tuned_strategies(run: RunOutputs) -> list[str]:
    return [s for s in run.strategies() if parse_strategy(s).tuned]


def untuned_of(strategy: str) -> str:
    """``class_weights_tuned`` -> ``class_weights``; ``synthetic_tuned-G`` -> ``synthetic-G``."""
    for tuned, plain in UNTUNED.items():
        if strategy == tuned:
            return plain
        if tuned.endswith("-") and strategy.startswith(tuned):
            return plain + strategy.removeprefix(tuned)
    return ""


def _row(k: int, s: str, section: Any, metric: str) -> list[Any]:
    if not isinstance(section, dict):
        return [k, f"`{s}`", f"missing from {TUNED_YAML.format(k=k)}", "", "", "", ""]
    for status in ("blocked", "skipped"):
        if section.get(status):
            return [k, f"`{s}`", f"{status}: {section[status]}", "", "", "", ""]
    weights = section.get("class_weights") or {}
    flt = section.get("filter") or {}
    study = section.get("study") or {}
    lr = section.get("lr")
    return [
        k,
        f"`{s}`",
        "tuned" + ("" if study.get("feasible", True) else " (no trial met the constraint)"),
        ", ".join(f"{c} {fixed(w, WEIGHT_DIGITS)}" for c, w in weights.items()) or NA,
        format(lr, LR_FORMAT) if isinstance(lr, int | float) else NA,
        (
            f"std > {fixed(flt.get('min_std'), THRESHOLD_DIGITS)}, entropy > "
            f"{fixed(flt.get('min_entropy'), THRESHOLD_DIGITS)}: {len(flt.get('kept', []))} kept"
            if flt
            else "-"
        ),
        (
            f"{study.get('finished_trials', NA)} trials ({study.get('pruned', NA)} pruned), best "
            f"{metric} {fixed(study.get(metric), WEIGHT_DIGITS)}"
        ),
    ]


def tuned_values(run: RunOutputs, doc: Doc, strategies: list[str]) -> None:
    p = run.params
    doc.p(
        f"Each fold's studies tune on that fold's training/validation patients only. Untuned "
        f"values: lr {format(p.train.lr, LR_FORMAT)}, inverse-frequency class weights (N / "
        f"N_i), filter std > {p.filter.min_std} and entropy > {p.filter.min_entropy} bits."
    )
    metric = p.tune.metric  # the study's objective, the key of its best value
    rows = []
    for k, fold in run.folds.items():
        if fold.tuned is None:
            rows.append([k, "all", f"missing: {TUNED_YAML.format(k=k)} (stage tune@{k})"])
            rows[-1] += ["", "", "", ""]
            continue
        rows += [_row(k, s, fold.tuned.get(s), metric) for s in strategies]
    doc.table(["Fold", "Strategy", "Status", "Class weights", "lr", "Filter", "Study"], rows)


def _cells(run: RunOutputs, s: str, a: str) -> tuple[dict[str, Any] | None, str]:
    v = run.settings().get((s, a))
    return v, (v or {}).get("decision", "baseline" if s == run.params.evaluate.baseline else NA)


def moved(run: RunOutputs, doc: Doc, strategies: list[str]) -> None:
    t = run.target
    doc.p(
        "Did tuning move the result? Pooled out-of-fold point estimates of each tuned strategy "
        "against its untuned counterpart (percentage points). Evaluate pairs every strategy "
        "with the baseline only, so these pairs have no interval: a difference below the "
        "minimum detectable difference of the Decision section is noise."
    )
    rows, notes = [], []
    for s in strategies:
        plain = untuned_of(s)
        if plain not in run.strategies():
            notes.append(f"`{s}`: `{plain}` is not in train.strategies, nothing to compare.")
            continue
        for a in run.architectures():
            (mine, verdict), (theirs, their_verdict) = _cells(run, s, a), _cells(run, plain, a)
            if mine is None or theirs is None:
                rows.append([f"`{s}` vs `{plain}`", a, "not evaluated", "", ""])
                continue
            cells = [
                f"{pct(mine.get(m))} vs {pct(theirs.get(m))} "
                f"({signed_pct(mine[m] - theirs[m]) if m in mine and m in theirs else NA})"
                for m in ("f1_macro", f"recall_{t}")
            ]
            rows.append([f"`{s}` vs `{plain}`", a, *cells, f"{verdict} / {their_verdict}"])
    if rows:
        doc.table(
            ["Tuned vs untuned", "Arch", "macro-F1", f"{t} recall", "Decision (tuned / untuned)"],
            rows,
        )
    if notes:
        doc.bullets(notes)


def tuning_section(run: RunOutputs, doc: Doc, figs: Figures) -> None:
    doc.h(2, TITLE)
    strategies = tuned_strategies(run)
    if not strategies:
        doc.p("No tuned strategy in this run (train.strategies has none).")
        return
    tuned_values(run, doc, strategies)
    moved(run, doc, strategies)
    for k in figure_folds(list(run.folds)):
        for s in strategies:
            section = (run.folds[k].tuned or {}).get(s)
            if isinstance(section, dict) and "study" in section:
                rel, caption = TUNE_FIGURE
                src = run.repo / rel.format(k=k, s=s)
                figs.add(doc, src, f"tune/fold-{k}/{s}/{src.name}", caption.format(k=k, s=s))
