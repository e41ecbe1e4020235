"""Figures people look at: sample grids, the filter scatter (as the study's Fig. 10), pairs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from lusaug.core.utils import atomic_path


def save_figure(fig: Figure, path: Path | str, dpi: int = 110) -> Path:
    """Write a figure atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def grid_figure(
    images: np.ndarray,
    title: str = "",
    cols: int | None = None,
    labels: Sequence[str] | None = None,
) -> Figure:
    """uint8 (N, H, W) images in a grid (an empty grid says so)."""
    n = len(images)
    cols = cols or max(1, min(8, math.ceil(math.sqrt(max(n, 1)))))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(1.4 * cols, 1.4 * rows + (0.4 if title else 0)), squeeze=False
    )
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            if labels is not None:
                ax.set_title(labels[i], fontsize=6)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no images", ha="center", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def comparison_grid_figure(rows: dict[str, np.ndarray], title: str = "") -> Figure:
    """One row of images per named set (e.g. with / without the learned token)."""
    names = list(rows)
    cols = max(1, max(len(v) for v in rows.values()))
    fig, axes = plt.subplots(
        len(names), cols, figsize=(1.4 * cols, 1.5 * len(names)), squeeze=False
    )
    for r, name in enumerate(names):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(rows[name]):
                ax.imshow(rows[name][c], cmap="gray", vmin=0, vmax=255)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def filter_scatter_figure(
    std: np.ndarray,
    entropy: np.ndarray,
    kept: np.ndarray,
    min_std: float,
    min_entropy: float,
    memorised: np.ndarray | None = None,
    title: str = "",
) -> Figure:
    """Std vs entropy of every candidate, kept/rejected, with the two thresholds drawn."""
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    kept = np.asarray(kept, bool)
    mem = np.zeros_like(kept) if memorised is None else np.asarray(memorised, bool)
    rej = ~kept & ~mem
    ax.scatter(std[kept], entropy[kept], s=14, c="tab:green", label=f"kept ({kept.sum()})")
    ax.scatter(
        std[rej],
        entropy[rej],
        s=14,
        c="tab:red",
        marker="x",
        label=f"rejected: quality ({rej.sum()})",
    )
    if mem.any():
        ax.scatter(
            std[mem],
            entropy[mem],
            s=22,
            facecolors="none",
            edgecolors="tab:purple",
            label=f"rejected: memorised ({mem.sum()})",
        )
    ax.axvline(min_std, color="k", ls="--", lw=1)
    ax.axhline(min_entropy, color="k", ls=":", lw=1)
    ax.text(min_std, ax.get_ylim()[1], f" std > {min_std:g}", fontsize=7, va="top")
    ax.text(
        ax.get_xlim()[1],
        min_entropy,
        f"entropy > {min_entropy:g} bits ",
        fontsize=7,
        va="bottom",
        ha="right",
    )
    ax.set_xlabel("pixel std (grey levels)")
    ax.set_ylabel("grey-level entropy (bits)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "quality filter", fontsize=9)
    fig.tight_layout()
    return fig


def closest_pairs_figure(
    candidates: np.ndarray,
    train: np.ndarray,
    pairs: Sequence[tuple[int, int, float, bool]],
    title: str = "",
) -> Figure:
    """Candidate | nearest training frame side by side, closest first (distance, flag)."""
    n = max(1, len(pairs))
    fig, axes = plt.subplots(n, 2, figsize=(3.0, 1.5 * n + 0.4), squeeze=False)
    for r in range(n):
        for c in range(2):
            axes[r, c].axis("off")
        if r >= len(pairs):
            axes[r, 0].text(0.5, 0.5, "no candidates", ha="center", va="center")
            continue
        ci, ti, dist, flagged = pairs[r]
        axes[r, 0].imshow(candidates[ci], cmap="gray", vmin=0, vmax=255)
        axes[r, 1].imshow(train[ti], cmap="gray", vmin=0, vmax=255)
        mark = " COPY" if flagged else ""
        axes[r, 0].set_title(
            f"cand {ci}: d={dist:.3f}{mark}", fontsize=6, color="tab:red" if flagged else "k"
        )
        axes[r, 1].set_title(f"train {ti}", fontsize=6)
    fig.suptitle(title or "closest candidate / training pairs", fontsize=8)
    fig.tight_layout()
    return fig


def loss_figure(losses: Sequence[float], title: str = "") -> Figure:
    """Training loss per step with a moving average."""
    fig, ax = plt.subplots(figsize=(5, 3))
    y = np.asarray(losses, float)
    ax.plot(np.arange(1, len(y) + 1), y, lw=0.6, alpha=0.5, label="loss")
    if len(y) >= 10:
        w = max(5, len(y) // 20)
        ma = np.convolve(y, np.ones(w) / w, mode="valid")
        ax.plot(np.arange(w, len(y) + 1), ma, lw=1.5, label=f"moving average ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE (noise prediction)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title(title or "training loss", fontsize=9)
    fig.tight_layout()
    return fig


def beside_real_figure(real: np.ndarray, samples: np.ndarray, n: int, title: str = "") -> Figure:
    """Real training frames of the rare class (top rows) above samples (bottom rows)."""
    cols = max(1, min(8, n))
    rows = {
        "real (train)": real[:cols],
        "real (train) ": real[cols : 2 * cols],
        "samples": samples[:cols],
        "samples ": samples[cols : 2 * cols],
    }
    return comparison_grid_figure({k: v for k, v in rows.items() if len(v)}, title)


def sharpness_figure(
    groups: dict[str, np.ndarray],
    threshold: float | None,
    title: str = "",
    threshold_high: float | None = None,
) -> Figure:
    """Histograms of the high-frequency energy ratio per group, with the filter's threshold."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    values = [v for v in groups.values() if len(v)]
    hi = max((float(np.max(v)) for v in values), default=1.0)
    bins = np.linspace(0.0, hi * 1.05 + 1e-9, 30)
    for name, v in groups.items():
        if len(v):
            ax.hist(v, bins=bins, alpha=0.5, label=f"{name} ({len(v)})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.4f}")
    if threshold_high is not None:
        ax.axvline(threshold_high, color="k", ls=":", lw=1, label=f"upper {threshold_high:.4f}")
    ax.set_xlabel("high-frequency energy ratio")
    ax.set_ylabel("images")
    ax.legend(fontsize=7)
    ax.set_title(title or "sharpness", fontsize=9)
    fig.tight_layout()
    return fig
