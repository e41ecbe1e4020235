"""Matplotlib figures of the classifier comparison (Agg backend: files only, no display)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lusaug.core.utils import atomic_path


def save(fig: Figure, path: Path | str, dpi: int = 110) -> Path:
    """Write a figure atomically as PNG and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_confusion(ax, cm: np.ndarray, classes: list[str], title: str) -> None:
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{int(cm[i, j])}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if share[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("actual", fontsize=8)
    ax.set_title(title, fontsize=8)


def confusion_figure(cm: np.ndarray, classes: list[str], title: str) -> Figure:
    """One confusion matrix: counts and row shares (recall on the diagonal)."""
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    _draw_confusion(ax, cm, classes, title)
    return fig


def confusion_grid(cms: dict[str, np.ndarray], classes: list[str], cols: int = 4) -> Figure:
    """A grid of confusion matrices, one per title (e.g. strategy x architecture)."""
    n = max(len(cms), 1)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 3.2 * rows), squeeze=False)
    for ax, (title, cm) in zip(axes.flat, cms.items(), strict=False):
        _draw_confusion(ax, cm, classes, title)
    for ax in list(axes.flat)[len(cms) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def recall_bars(table: pd.DataFrame, classes: list[str], ci: float = 0.95) -> Figure:
    """Per-class recall with intervals: one bar group per class, one bar per setting.

    ``table`` has columns setting, class, value, lo, hi.
    """
    settings = list(dict.fromkeys(table["setting"]))
    width = 0.8 / max(len(settings), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(classes) + 0.25 * len(settings)), 3.8))
    x = np.arange(len(classes))
    cmap = plt.get_cmap("tab20")
    for i, setting in enumerate(settings):
        sub = table[table["setting"] == setting].set_index("class").reindex(classes)
        val = sub["value"].to_numpy(dtype=float)
        err = np.vstack([val - sub["lo"].to_numpy(float), sub["hi"].to_numpy(float) - val])
        ax.bar(
            x + (i - (len(settings) - 1) / 2) * width,
            val,
            width,
            yerr=np.nan_to_num(np.clip(err, 0, None)),
            capsize=2,
            label=setting,
            color=cmap(i % 20),
        )
    ax.set_xticks(x, classes)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall (test, mean over seeds)")
    ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(
        f"Per-class recall with {ci:.0%} patient-bootstrap intervals (descriptive)", fontsize=9
    )
    fig.tight_layout()
    return fig


def curves_figure(histories: dict[str, pd.DataFrame], metric: str, ylabel: str) -> Figure:
    """One line per run of ``metric`` over epochs."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    cmap = plt.get_cmap("tab20")
    for i, (name, hist) in enumerate(histories.items()):
        if metric in hist:
            ax.plot(hist["epoch"], hist[metric], label=name, color=cmap(i % 20), lw=1.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if histories:
        ax.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def difference_figure(table: pd.DataFrame, metric: str, ci: float = 0.95) -> Figure:
    """Differences strategy - control with their intervals over patients and seeds (a forest
    plot, one row per comparison).

    ``table`` has columns setting (the comparison's name), diff, lo, hi.
    """
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * max(len(table), 1) + 1.2))
    y = np.arange(len(table))
    diff = table["diff"].to_numpy(float)
    err = np.vstack([diff - table["lo"].to_numpy(float), table["hi"].to_numpy(float) - diff])
    ax.errorbar(diff, y, xerr=np.nan_to_num(np.clip(err, 0, None)), fmt="o", capsize=3)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, table["setting"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric}: strategy - control (test, {ci:.0%} interval, patients and seeds)")
    fig.tight_layout()
    return fig


def patient_recall_figure(rows: list[dict], target: str) -> Figure:
    """Recall of each rare-class patient (rows) per setting (columns), as a heat map.

    ``rows`` are metrics/rare_patients.json's entries (patient_id, frames, recall by setting).
    """
    settings = list(dict.fromkeys(s for r in rows for s in r["recall"]))
    grid = np.array([[r["recall"].get(s, np.nan) for s in settings] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(settings), 1.2 + 0.45 * len(rows)))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < 0.5 else "black",
                )
    ax.set_xticks(range(len(settings)), settings, rotation=60, ha="right", fontsize=7)
    labels = [f"{r['patient_id']} ({r['frames']} frames, fold {r['fold']})" for r in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.set_title(
        f"{target} recall per {target} patient (out-of-fold, mean over seeds)", fontsize=9
    )
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
