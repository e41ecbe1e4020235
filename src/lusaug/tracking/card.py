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


CV_METRICS = ("accuracy", "f1_macro", "precision_macro", "balanced_accuracy", "video_accuracy")


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
    m, test = cv.get("metrics", {}), cv.get("test", {})
    keys = [*CV_METRICS, *(f"recall_{c}" for c in classes)]
    return [
        "",
        "## Cross-validated estimate (pooled out-of-fold test predictions, %)",
        (
            f"{test.get('folds', '?')} folds, {test.get('frames', '?')} frames from "
            f"{test.get('patients', '?')} patients, every patient tested once; "
            f"{round(100 * test.get('ci', 0.95))}% patient-bootstrap intervals."
        ),
        *(f"- {k}: {_pct(m, k)}" for k in keys if k in m),
        "",
        "## Decision record",
        f"- Versus the baseline: {cv.get('decision')} ({cv.get('decision_reason') or 'reference'}).",
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
) -> str:
    """A short Markdown model card: data, split, metrics, promotion history, use, limitations.

    Args:
        run: The registered model with its validation metrics and intervals.
        cfg: The ``register`` section (model name, selection metric, aliases).
        split_counts: Frames per split and class (:func:`split_counts`).
        classes: Class names in model output order.
        tags: The version's tags (``data_hash``, ``split_hash``, ``git_commit``, run ids).
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
    lines += cross_validated_section(run.entry.get("cross_validated"), classes)
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
