"""What ``filter@k-G`` reports: its metrics (``metrics/fold-<k>/synthetic_<G>.json``) and figures.

Both are built from the stage's inputs and the filter's verdict
(:mod:`lusaug.generators.filter_candidates`); every number has its real reference beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lusaug.core.config import BaseParams, FilterParams
from lusaug.generators.fidelity import fidelity_report, ratio, recognition
from lusaug.generators.filter_candidates import Filtered, FilterInputs
from lusaug.generators.filters import image_stats
from lusaug.generators.plots import (
    beside_real_figure,
    closest_pairs_figure,
    filter_scatter_figure,
    grid_figure,
    sharpness_figure,
)
from lusaug.generators.run_context import derive_seed
from lusaug.models.run_files import FILES


def _study_pass(images: np.ndarray, cfg: FilterParams) -> float | None:
    if not len(images):
        return None
    std, ent = image_stats(images)
    return float(((std > cfg.min_std) & (ent > cfg.min_entropy)).mean())


def _sharp_pass(values: np.ndarray, low: float | None, high: float | None) -> float | None:
    """Share of ``values`` inside [low, high] (None when the sharpness test is off)."""
    if low is None or not len(values):
        return None
    ok = values >= low
    if high is not None:
        ok &= values <= high
    return float(ok.mean())


def _scored(res: Filtered) -> np.ndarray:
    """Which candidates fidelity is scored on: the kept ones (the would-be-kept if blocked)."""
    return res.outcome.kept if not res.blocked else res.outcome.quality_ok & ~res.mem.memorised


def _recognition(inp: FilterInputs, res: Filtered, base: BaseParams, cfg: FilterParams) -> dict:
    target_idx = base.classes.index(base.target_class)
    rec = recognition(inp.space.predict(inp.cands[_scored(res)]), target_idx, cfg.ci)
    rec_val = recognition(inp.space.predict(inp.real_val), target_idx, cfg.ci)
    rec_train = recognition(inp.space.predict(inp.real), target_idx, cfg.ci)  # seen: upper bound
    return {
        "recognition": rec,
        "recognition_real_val": rec_val,
        "recognition_real_train": rec_train,
        "recognition_ratio": ratio(rec["rate"], rec_val["rate"]),
        "recognition_note": "scored on the kept images (on the would-be-kept ones if blocked); "
        "real_val is the reference (unseen patients), real_train an upper bound (seen frames)",
    }


def _sharpness(inp: FilterInputs, res: Filtered, cfg: FilterParams) -> dict[str, Any]:
    low, high = res.min_sharp, res.max_sharp
    return {
        "threshold": low,
        "skipped": res.sharpness_skipped,
        "threshold_high": high,
        "quantile_of_real_train": cfg.sharpness.real_quantile,
        "pass_rate": {
            "candidates": _sharp_pass(res.sharp, low, high),
            "real_train": _sharp_pass(res.sharp_real, low, high),
            "real_val": _sharp_pass(res.sharp_val, low, high),
            "real_train_blurred": _sharp_pass(res.sharp_blur, low, high),
        },
        "real_above_own_blur": float((res.sharp_real > res.sharp_blur).mean())
        if len(inp.real)
        else None,
        "median": {
            "candidates": float(np.median(res.sharp)) if len(res.sharp) else None,
            "real_train": float(np.median(res.sharp_real)) if len(inp.real) else None,
        },
    }


def _memorisation(inp: FilterInputs, res: Filtered, cfg: FilterParams) -> dict[str, Any]:
    mem = res.mem
    flagged = pd.Series([p for p, m in zip(res.nn_patient, mem.memorised, strict=True) if m])
    return {
        "rate": mem.rate,
        "flags": mem.counts(),
        "training_pool": len(inp.pool),
        "copy_distance": res.copy_d,
        "copy_distance_note": f"{cfg.memorisation.video_quantile} quantile of the real "
        "training frames' distance to their nearest same-clip neighbour",
        "copied_patients": {str(k): int(v) for k, v in flagged.value_counts().items()},
        "median_nn_pixel_distance": float(np.median(mem.nn_distance)) if len(inp.cands) else None,
        "real_val_rate": res.mem_val.rate if res.mem_val is not None else None,
        "real_val_note": "share of REAL validation frames of the class the same pixel "
        "criteria flag against this training pool (its false-positive reference)",
    }


def filter_metrics(
    name: str,
    inp: FilterInputs,
    res: Filtered,
    base: BaseParams,
    cfg: FilterParams,
    encoder_dir: Path | str,
    fold: int | str | None,
) -> dict[str, Any]:
    """The stage's metrics: what was kept and why, fidelity against real patients (each beside
    its real reference), memorisation, the feature space and the generator's training data."""
    spec, meta, outcome = inp.spec, inp.meta, res.outcome
    feats = {
        "kept": inp.f_c[_scored(res)],
        "cands": inp.f_c,
        "train": inp.space.features(inp.real),
        "val": inp.space.features(inp.real_val),
    }
    enc_val = json.loads((Path(encoder_dir) / FILES["val_metrics"]).read_text())["val"]
    return {
        "generator": name,
        "kind": spec.kind,
        "target_class": base.target_class,
        "fold": fold,
        "train_set": spec.train_set,
        "leaky": inp.leaky,
        "leakage": "LEAKY: the generator saw validation/test frames; never compare it with "
        "non-leaky results"
        if inp.leaky
        else "none: trained on the train split only",
        "blocked": res.blocked,
        "blocked_reason": res.blocked_reason,
        "candidates": len(inp.cands),
        "kept": int(outcome.kept.sum()),
        "rejected": int((~outcome.kept).sum()),
        "kept_fraction": float(outcome.kept.mean()) if len(inp.cands) else 0.0,
        "rejected_by_reason": outcome.rejected_by_reason(),
        "thresholds": res.thresholds.as_dict(),
        "study_filter_pass_rate": {
            "candidates": _study_pass(inp.cands, cfg),
            "real_train": _study_pass(inp.real, cfg),
            "real_val": _study_pass(inp.real_val, cfg),
        },
        "sharpness": _sharpness(inp, res, cfg),
        **_recognition(inp, res, base, cfg),
        **fidelity_report(feats, cfg, derive_seed(base.seed, f"fidelity-{name}")),
        "memorisation": _memorisation(inp, res, cfg),
        "feature_space": {
            "what": "penultimate layer of the fold's real-trained classifier (stage encoder)",
            "strategy": inp.space.meta.extra.get("strategy"),
            "num_features": int(inp.f_c.shape[1]) if len(inp.f_c) else None,
            "val_balanced_accuracy": enc_val.get("balanced_accuracy"),
        },
        "real_train_frames": len(inp.real),
        "real_val_frames": len(inp.real_val),
        "train_frames": meta.get("train_frames"),
        "train_patients": meta.get("train_patients"),
        "train_splits": meta.get("splits_used"),
        "train_notes": meta.get("notes", []),
    }


def filter_figures(
    label: str, target: str, inp: FilterInputs, res: Filtered, cfg: FilterParams
) -> dict[str, Any]:
    """The stage's figures by file name (plots/synthetic/<G>/...)."""
    cands, kept, real, mem, outcome = inp.cands, res.kept, inp.real, res.mem, res.outcome
    order = np.argsort(mem.nn_distance, kind="stable")[: cfg.closest_pairs]
    pairs = [
        (int(i), int(mem.nn_index[i]), float(mem.nn_distance[i]), bool(mem.memorised[i]))
        for i in order
    ]
    return {
        "filter_scatter.png": filter_scatter_figure(
            res.std,
            res.entropy,
            outcome.kept,
            cfg.min_std,
            cfg.min_entropy,
            mem.memorised,
            f"{label}: quality filter",
        ),
        "kept_grid.png": grid_figure(kept[: cfg.grid_size], f"{label}: kept ({len(kept)})"),
        "rejected_grid.png": grid_figure(
            cands[~outcome.kept][: cfg.grid_size], f"{label}: rejected"
        ),
        "real_grid.png": grid_figure(real[: cfg.grid_size], f"real training frames: {target}"),
        "beside_real.png": beside_real_figure(
            real,
            kept if len(kept) else cands,
            cfg.grid_size // 2,
            f"{label}: real {target} training frames (top) and "
            f"{'kept samples' if len(kept) else 'candidates (none kept)'} (bottom)",
        ),
        "sharpness.png": sharpness_figure(
            {
                "real train": res.sharp_real,
                "real train, blurred": res.sharp_blur,
                "candidates": res.sharp,
            },
            res.min_sharp,
            f"{label}: high-frequency energy ratio",
            res.max_sharp,
        ),
        "closest_pairs.png": closest_pairs_figure(
            cands, inp.pool, pairs, f"{label}: closest candidate / training pairs"
        ),
    }
