"""Section "Generators, per fold": filter outcome, fidelity beside its real references, the
targets met, and the figures (samples beside real frames, filter scatter, TI with/without token)
of the folds shown."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, fixed, interval, pct, plural
from lusaug.reporting.figures import Figures
from lusaug.reporting.outputs import ENCODER_JSON, SYNTHETIC_JSON, RunOutputs
from lusaug.reporting.targets import (
    KID_DIGITS,
    MET,
    RATIO_DIGITS,
    TARGET_NAMES,
    generator_targets,
)

TITLE = "Generators, per fold"
# Figures of every generator in the folds shown: plots/fold-<k>/synthetic/<G>/...
FILTER_DIR = "plots/fold-{k}/synthetic/{g}"
GENERATOR_FIGURES = (
    ("beside_real.png", "`{g}`, fold {k}: real training frames (top) and kept samples (bottom)"),
    ("filter_scatter.png", "`{g}`, fold {k}: pixel std vs grey-level entropy, filter thresholds"),
)
# ... and of textual-inversion generators: models/fold-<k>/generators/<G>/with_without_token.png
TI_KIND = "textual_inversion"
TI_FIGURE = (
    "models/fold-{k}/generators/{g}/with_without_token.png",
    "`{g}`, fold {k}: the same prompts with the learned token (top) and without it (bottom)",
)
ALL_FOLDS_UP_TO = 2  # figures of every fold up to this many folds, else of the first fold only
PRDC_KEYS = ("precision", "recall", "density", "coverage")


def figure_folds(folds: list[int]) -> list[int]:
    return list(folds) if len(folds) <= ALL_FOLDS_UP_TO else list(folds[:1])


def _rows(run: RunOutputs) -> list[tuple[str, int, dict[str, Any] | None]]:
    return [
        (g, k, fold.synthetic.get(g)) for g in run.generators() for k, fold in run.folds.items()
    ]


def _absent(g: str, k: int) -> str:
    return f"missing: {SYNTHETIC_JSON.format(k=k, g=g)} (stage filter@{k}-{g})"


def feature_spaces(run: RunOutputs, doc: Doc) -> None:
    t = run.target
    rows = []
    for k, fold in run.folds.items():
        e = fold.encoder
        if not isinstance(e, dict):
            rows.append(
                [k, f"missing: {ENCODER_JSON.format(k=k)} (stage encoder@{k})", "", "", ""]
            )
            continue
        rec = e.get("val_recognition_rare") or {}
        rows.append(
            [
                k,
                (
                    f"`{e.get('strategy', NA)}-{e.get('architecture', NA)}`, "
                    f"{e.get('num_features') or NA} features"
                ),
                pct(e.get("val_balanced_accuracy")),
                pct(e.get("val_macro_f1")),
                interval(rec.get("rate"), rec.get("low"), rec.get("high")),
            ]
        )
    doc.p(
        "KID, PRDC, feature-space memorisation and the recognition rate use each fold's "
        "real-trained classifier (stage encoder, its validation split only) as the feature space; "
        "its quality bounds what they can show:"
    )
    doc.table(["Fold", "Encoder", "val balanced Acc", "val macro-F1", f"val {t} recognised"], rows)


def _train_set(m: dict[str, Any]) -> str:
    text = f"{m.get('train_set', NA)}: {m.get('train_frames', NA)} frames"
    if isinstance(m.get("train_patients"), int):
        text += f" / {plural(m['train_patients'], 'patient')}"
    splits = m.get("train_splits")
    return text + (f" ({'+'.join(splits)})" if splits else "")


def _sharpness(m: dict[str, Any]) -> str:
    sh = m.get("sharpness") or {}
    if sh.get("skipped"):
        return "skipped"
    rate = sh.get("pass_rate") or {}
    if rate.get("candidates") is None:
        return "off"
    return " / ".join(pct(rate.get(k)) for k in ("candidates", "real_val", "real_train_blurred"))


def filter_table(run: RunOutputs, doc: Doc) -> None:
    doc.p(
        "The filter per fold: the generator's training set (the fold's training patients only "
        "unless leaky), candidates kept, rejections by reason, the study's std/entropy filter "
        "pass rate on candidates / real training / real validation frames, and the sharpness "
        "band's pass rate on candidates / real validation / blurred real frames (%)."
    )
    rows, notes = [], []
    for g, k, m in _rows(run):
        if m is None:
            rows.append([f"`{g}`", k, _absent(g, k), "", "", "", ""])
            continue
        rejected = m.get("rejected_by_reason") or {}
        reasons = ", ".join(f"{r} {n}" for r, n in rejected.items() if n) or "none"
        study = m.get("study_filter_pass_rate") or {}
        kept = f"{m.get('kept', NA)} of {m.get('candidates', NA)}"
        rows.append(
            [
                f"`{g}` ({m.get('kind', NA)})" + (" **leaky**" if m.get("leaky") else ""),
                k,
                _train_set(m),
                f"**blocked** ({kept} would be kept)" if m.get("blocked") else kept,
                reasons,
                " / ".join(pct(study.get(s)) for s in ("candidates", "real_train", "real_val")),
                _sharpness(m),
            ]
        )
        if m.get("blocked"):
            notes.append(f"`{g}` fold {k}: blocked: {m.get('blocked_reason')}.")
        notes += [f"`{g}` fold {k}: {n}." for n in m.get("train_notes", [])]
        if (m.get("sharpness") or {}).get("skipped"):
            notes.append(f"`{g}` fold {k}: sharpness skipped: {m['sharpness']['skipped']}.")
        if m.get("leaky"):
            notes.append(f"`{g}` fold {k}: {m.get('leakage')}.")
    header = ["Generator", "Fold", "Training set", "Kept", "Rejected", "Study filter", "Sharpness"]
    doc.table(header, rows)
    if notes:
        doc.bullets(notes)


def _prdc(m: dict[str, Any], key: str) -> str:
    def value(p: Any) -> Any:
        return (p.get(key) or {}).get("value") if isinstance(p, dict) else None

    return (
        f"{fixed(value(m.get('prdc')), RATIO_DIGITS)} "
        f"({fixed(value(m.get('prdc_real_reference')), RATIO_DIGITS)})"
    )


def _kid(m: dict[str, Any]) -> str:
    kid, ref = m.get("kid") or {}, m.get("kid_real_reference") or {}
    ref_text = f"{fixed(ref.get('mean'), KID_DIGITS)} [{fixed(ref.get('low'), KID_DIGITS)}, "
    return (
        f"{fixed(kid.get('mean'), KID_DIGITS)} ({ref_text}{fixed(ref.get('high'), KID_DIGITS)}])"
    )


def fidelity_table(run: RunOutputs, doc: Doc) -> None:
    doc.p(
        "Fidelity of the kept samples (of the would-be-kept ones when blocked) against the "
        "fold's real validation frames of the class, each beside its real reference in "
        "brackets: the recognition rate (% recognised as the class; real validation frames), "
        "memorisation (% of candidates flagged as copies; real validation frames flagged the "
        "same way) with the training patients copied, KID (real training vs real validation: "
        "mean [interval]) and precision / recall / density / coverage (real training vs real "
        "validation)."
    )
    rows = []
    for g, k, m in _rows(run):
        if m is None:
            rows.append([f"`{g}`", k, _absent(g, k), "", "", "", "", "", ""])
            continue
        rec, ref = m.get("recognition") or {}, m.get("recognition_real_val") or {}
        mem = m.get("memorisation") or {}
        copied = ", ".join(f"{p} ({n})" for p, n in (mem.get("copied_patients") or {}).items())
        rows.append(
            [
                f"`{g}`",
                k,
                (
                    f"{interval(rec.get('rate'), rec.get('low'), rec.get('high'))} "
                    f"({pct(ref.get('rate'))})"
                ),
                f"{pct(mem.get('rate'))} ({pct(mem.get('real_val_rate'))})"
                + (f"; copied: {copied}" if copied else ""),
                _kid(m),
                *(_prdc(m, key) for key in PRDC_KEYS),
            ]
        )
    header = ["Generator", "Fold", "Recognition", "Memorisation", "KID"]
    doc.table(header + [key.capitalize() for key in PRDC_KEYS], rows)


def targets_table(run: RunOutputs, doc: Doc) -> None:
    max_rate = run.params.filter.max_memorisation_rate
    doc.p(
        "Targets, computed from the metrics above: recognition rate ≥ 0.8 × its real "
        "reference; PRDC precision ≥ 0.8 × the real-vs-real precision and coverage > 0; "
        f"memorisation ≤ {pct(max_rate)}% (filter.max_memorisation_rate); KID no larger than "
        "the upper end of the real-vs-real interval. A target whose reference is 0 or undefined "
        "is **not assessable**, not met."
    )
    rows, met_count = [], {}  # generator -> (fold, targets met)
    for g, k, m in _rows(run):
        if m is None:
            rows.append([f"`{g}`", k, _absent(g, k), "", "", ""])
            continue
        targets = generator_targets(m, max_rate)
        rows.append([f"`{g}`", k, *(t.cell() for t in targets)])
        met_count.setdefault(g, []).append((k, sum(t.status == MET for t in targets)))
    doc.table(["Generator", "Fold", *TARGET_NAMES], rows)
    summary = [
        f"`{g}`: targets met: "
        + ", ".join(f"fold {k}: {n} of {len(TARGET_NAMES)}" for k, n in per_fold)
        for g, per_fold in met_count.items()
    ]
    if summary:
        doc.bullets(summary)


def generator_figures(run: RunOutputs, doc: Doc, figs: Figures) -> None:
    for k in figure_folds(list(run.folds)):
        for g in run.generators():
            m = run.folds[k].synthetic.get(g)
            if m is None:
                continue
            doc.h(3, f"`{g}`, fold {k}")
            for name, caption in GENERATOR_FIGURES:
                src = run.repo / FILTER_DIR.format(k=k, g=g) / name
                figs.add(doc, src, f"fold-{k}/{g}/{name}", caption.format(g=g, k=k))
            if m.get("kind") == TI_KIND:
                rel, caption = TI_FIGURE
                src = run.repo / rel.format(k=k, g=g)
                figs.add(doc, src, f"fold-{k}/{g}/{src.name}", caption.format(g=g, k=k))


def generators_section(run: RunOutputs, doc: Doc, figs: Figures) -> None:
    doc.h(2, TITLE)
    if not run.generators():
        doc.p("No generator in this run (generate.enabled is empty).")
        return
    if all(m is None for _, _, m in _rows(run)):
        doc.p(
            "Not available: no metrics/fold-<k>/synthetic_<G>.json in this run (stage filter; "
            f"generators planned: {', '.join(f'`{g}`' for g in run.generators())})."
        )
        return
    feature_spaces(run, doc)
    filter_table(run, doc)
    fidelity_table(run, doc)
    targets_table(run, doc)
    if run.left_out:
        doc.p(f"Left out (generator not in generate.enabled): {', '.join(run.left_out)}.")
    shown = figure_folds(list(run.folds))
    doc.p(f"Figures of fold{'s' if len(shown) > 1 else ''} {', '.join(map(str, shown))}:")
    generator_figures(run, doc, figs)
