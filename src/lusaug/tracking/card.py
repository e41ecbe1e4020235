"""The model card: the registered version's description and a Markdown artifact of its model.

It covers the data and the split (with their DVC hashes), the cross-validated estimate with its
intervals, the decision record, the lineage (runs, data hashes, git commit), intended use and
limitations.
"""

from __future__ import annotations

from pathlib import Path

from lusaug.core.config import RegisterParams
from lusaug.data.manifest import read_manifest
from lusaug.tracking.history import HISTORY_PREFIX
from lusaug.tracking.selection import RunSummary

CARD_EXTRA_METRICS = ("val_accuracy", "val_balanced_accuracy", "val_recall_macro")
CARD_FILE = "model_card.md"  # the card's artifact name (logged model and register run)
INTENDED_USE = "research tool; not for clinical use"


def fmt_metric(run: RunSummary, metric: str) -> str:
    """``0.700 [0.640, 0.760]`` (the interval only when both bounds are known)."""
    lo, hi = run.interval(metric)
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{run.value(metric):.3f}{ci}"


def split_counts(splits_csv: Path | str | None) -> dict[str, dict[str, int]]:
    """Frames per split and class from ``data/splits.csv`` ({} when it is not there)."""
    if splits_csv is None or not Path(splits_csv).exists():
        return {}
    df = read_manifest(splits_csv)
    return {
        s: {str(k): int(v) for k, v in g["label"].value_counts().items()}
        for s, g in df.groupby("split", sort=False)
    }


CV_METRICS = ("accuracy", "f1_macro", "balanced_accuracy", "precision_macro", "video_accuracy")
RARE_METRICS = ("rare_recall", "rare_auroc", "rare_ap")  # mean over the rare-class patients


def cv_record(setting: str, test: dict, comparison: dict) -> dict:
    """What the card says of a setting's cross-validation, from metrics/test.json and
    metrics/comparison.json: its pooled metrics, every verdict it is the strategy of, the
    pre-registered primary and the placebo of its architecture."""
    metrics = (test.get("settings") or {}).get(setting, {})
    arch = metrics.get("architecture") or setting.rpartition("-")[2]
    strategy = metrics.get("strategy") or setting.rpartition("-")[0]
    verdicts = [
        {
            "comparison": name,
            "verdict": (c.get("decision") or {}).get("verdict"),
            "reason": (c.get("decision") or {}).get("reason", ""),
        }
        for name, c in (comparison.get("comparisons") or {}).items()
        if c.get("strategy") == strategy and c.get("architecture") == arch
    ]
    pr = comparison.get("primary") or {}
    d = pr.get("decision") or {}
    placebo = (comparison.get("placebos") or {}).get(arch) or {}
    return {
        "setting": setting,
        "metrics": metrics,
        "test": test.get("test", {}),
        "verdicts": verdicts,
        "primary": {
            "name": pr.get("name"),
            "endpoint": pr.get("endpoint"),
            "verdict": d.get("verdict", "not evaluated"),
            "reason": d.get("reason") or pr.get("not_evaluated") or "",
            "estimate": d.get("estimate"),
            "lo": d.get("lo"),
            "hi": d.get("hi"),
            "p_value": d.get("p_value"),
        },
        "placebo": placebo.get("verdict") or f"not run ({placebo.get('not_run', 'no baseline')})",
    }


def _pct(metrics: dict, key: str) -> str:
    v, lo, hi = metrics.get(key), metrics.get(f"{key}_lo"), metrics.get(f"{key}_hi")
    if v is None:
        return "n/a"
    ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None and hi is not None else ""
    return f"{100 * v:.1f}{ci}"


def cross_validated_section(cv: dict | None, classes: list[str]) -> list[str]:
    """The cross-validated estimate of the registered setting and its decision record."""
    if not cv:
        return []
    m, test, pr = cv.get("metrics", {}), cv.get("test", {}), cv.get("primary") or {}
    keys = [*CV_METRICS, *RARE_METRICS, *(f"recall_{c}" for c in classes)]
    p = pr.get("p_value")
    primary = (
        f"- Pre-registered primary comparison `{pr.get('name')}` ({pr.get('endpoint')}): "
        f"**{pr.get('verdict')}**"
        + (
            f" ({100 * pr['estimate']:+.1f} [{100 * pr['lo']:.1f}, {100 * pr['hi']:.1f}] points, "
            f"exact p = {p:.4f})"
            if None not in (pr.get("estimate"), pr.get("lo"), pr.get("hi"), p)
            else ""
        )
        + (f": {pr['reason']}." if pr.get("reason") else ".")
    )
    own = [
        f"- `{v['comparison']}`: {v['verdict']} ({v['reason'] or 'no reason recorded'})."
        for v in cv.get("verdicts", [])
    ] or [f"- `{cv.get('setting')}` is the reference of its comparisons (the baseline)."]
    return [
        "",
        "## Cross-validated estimate (pooled out-of-fold test predictions, %)",
        (
            f"Setting `{cv.get('setting')}`: {test.get('folds', '?')} folds, "
            f"{test.get('frames', '?')} frames from {test.get('patients', '?')} patients, every "
            f"patient tested once; {round(100 * test.get('ci', 0.95))}% intervals over patients "
            "and seeds for accuracy, macro-F1, balanced accuracy and the rare class's per-patient "
            "endpoints (rare_*); percentile patient bootstrap (descriptive) for the others."
        ),
        *(f"- {k}: {_pct(m, k)}" for k in keys if k in m),
        "",
        "## Decision record",
        primary,
        f"- Placebo (baseline vs baseline, disjoint seeds): {cv.get('placebo')}.",
        *own,
    ]


def lineage_section(tags: dict[str, str]) -> list[str]:
    """Which runs, data and code the version comes from (the version's tags)."""
    rows = [
        ("registered by MLflow run", "register_run_id"),
        ("trained in MLflow run", "train_run_id"),
        ("data/raw DVC hash", "data_hash"),
        ("split file", "split_file"),
        ("split file DVC hash", "split_hash"),
        ("git commit", "git_commit"),
    ]
    lines = ["", "## Lineage"]
    lines += [f"- {label}: `{tags[key]}`" for label, key in rows if tags.get(key)]
    lines.append(
        "- Both runs list `data/raw` and the split file as MLflow dataset inputs whose digests "
        "are these DVC hashes (content addresses in the DVC cache and remote: `dvc pull`)."
    )
    return lines


def model_card(
    run: RunSummary,
    cfg: RegisterParams,
    split_counts: dict[str, dict[str, int]],
    classes: list[str],
    tags: dict[str, str],
    cv: dict | None = None,
) -> str:
    """A short Markdown model card: data, split, metrics, promotion history, use, limitations.

    Args:
        run: The registered model with its validation metrics and intervals.
        cfg: The ``register`` section (model name, selection metric, aliases).
        split_counts: Frames per split and class (:func:`split_counts`).
        classes: Class names in model output order.
        tags: The version's tags (``data_hash``, ``split_hash``, ``git_commit``, run ids).
        cv: The setting's cross-validation record (:func:`cv_record`; None = no section).
    """
    metrics = [
        m
        for m in (cfg.metric, *CARD_EXTRA_METRICS, *(f"val_recall_{c}" for c in classes))
        if m in run.entry
    ]
    arch = run.entry.get("model") or run.entry.get("architecture")
    lines = [
        f"# {cfg.model_name}: {run.name}",
        "",
        (
            f"Lung-ultrasound frame classifier ({', '.join(classes)}), timm `{arch}` trained from "
            f"scratch with strategy `{run.entry.get('strategy')}` (seed {run.entry.get('seed')}), "
            "served as ONNX."
        ),
        "",
        "## Data",
        (
            f"- Frames from data/raw (DVC data hash `{tags.get('data_hash', 'unknown')}`), "
            f"code at git `{tags.get('git_commit', 'unknown')}`."
        ),
        *(
            [f"- Split file `{tags['split_file']}` (DVC hash `{tags.get('split_hash', '?')}`)."]
            if tags.get("split_file")
            else []
        ),
        (
            "- Split by patient (no patient, video or near-identical frame in two splits; "
            "checked by the validate stage). Frames per split and class:"
        ),
    ]
    for split, counts in split_counts.items():
        lines.append(f"  - {split}: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in classes))
    lines += cross_validated_section(cv, classes)
    lines += [
        "",
        "## Metrics of this model (its own validation split, 95% patient-bootstrap intervals)",
        (
            "The strategy and architecture were chosen on pooled cross-validation validation "
            "metrics and refit on every patient (a patient-disjoint validation set stops "
            "training early); no test number exists for this model, its estimate is the "
            "cross-validated one above. The test splits were never used for any choice."
        ),
        *(f"- {m}: {fmt_metric(run, m)}" for m in metrics),
        "",
        "## Promotion history",
        (
            f"Aliases move in the order {' -> '.join([cfg.alias, *cfg.promote_to])}. Every "
            f"move of `{cfg.model_name}` (from, to, version, previous holder, who, when, reason, "
            f"gates) is kept append-only in its registered-model tags `{HISTORY_PREFIX}<n>`; "
            "`lusaug models --history` prints it."
        ),
        (
            "Move aliases with `lusaug promote` and `lusaug rollback` only: the MLflow UI's own "
            "alias and promote buttons bypass lusaug's gates (metric, ONNX parity, order) and "
            "write no history entry."
        ),
        *lineage_section(tags),
        "",
        "## Intended use",
        (
            f"A {INTENDED_USE}. Research on whether synthetic rare-class images help a small, "
            "imbalanced ultrasound classifier; a demonstrator of the MLOps pipeline. Input: one "
            "grey ultrasound frame (or a clip, averaged over sampled frames)."
        ),
        "",
        "## Limitations",
        "- Not a medical device; not for diagnosis or triage.",
        (
            "- Trained on few patients (the rare class from a handful); intervals are wide and "
            "the model may not transfer to other scanners, probes, presets or populations."
        ),
        "- Frame-level model: no temporal context beyond averaging over a clip.",
    ]
    return "\n".join(lines)
