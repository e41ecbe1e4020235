"""Stage ``filter@k-G``: keep good, non-copied candidates; measure fidelity against real patients.

Every number has its real reference beside it: the study's std/entropy pass rate on real frames,
the sharpness pass rate on real and on blurred real frames, KID and PRDC of real training vs
real validation frames (patient-disjoint: what a perfect generator would score against unseen
patients), the recognition rate of real validation frames. A generator whose memorisation rate
is above ``filter.max_memorisation_rate`` is **blocked**: nothing is kept, ``blocked`` is true in
its metrics (training strategies skip it) and it is never registered.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lusaug.config import BaseParams, FilterParams, GenerateParams, MlflowParams
from lusaug.generators import data as gdata
from lusaug.generators.ddpm import read_meta
from lusaug.generators.fidelity import FeatureSpace, fidelity_report, ratio, recognition
from lusaug.generators.filters import (
    FilterThresholds,
    apply_filter,
    blurred,
    high_frequency_ratio,
    image_stats,
    pass_mask,
)
from lusaug.generators.memorisation import check_memorisation, video_copy_distance
from lusaug.generators.mlflow_runs import (
    read_run_file,
)
from lusaug.generators.plots import (
    beside_real_figure,
    closest_pairs_figure,
    filter_scatter_figure,
    grid_figure,
    save_figure,
    sharpness_figure,
)
from lusaug.generators.stages.common import (
    derive_seed,
    get_spec,
    label_of,
    score_basis,
    set_threads,
)
from lusaug.generators.stages.encoder import CHECKPOINT
from lusaug.generators.stages.filter_tracking import track_filter
from lusaug.models.train import FILES
from lusaug.utils import atomic_path, write_json

logger = logging.getLogger(__name__)

TRAIN_SET_FILE = "train_set.csv"


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


def run_filter(
    name: str,
    splits_csv: Path | str,
    model_dir: Path | str,
    candidates_dir: Path | str,
    encoder_dir: Path | str,
    kept_dir: Path | str,
    table_csv: Path | str,
    metrics_json: Path | str,
    plots_dir: Path | str,
    base: BaseParams,
    cfg: FilterParams,
    gen: GenerateParams,
    mlflow_cfg: MlflowParams,
    validation_json: Path | str | None = None,
    fold: int | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Filter generator ``name``'s candidates and score them; returns the metrics it wrote."""
    spec = get_spec(gen, name)
    gdata.check_validation(validation_json)
    set_threads(gen.threads)
    meta = read_meta(model_dir)
    leaky = bool(meta.get("leaky", spec.leaky))
    size, target = base.image_size, base.target_class
    splits = gdata.read_splits(splits_csv)
    cands, paths = gdata.load_folder(candidates_dir, size)
    train_rows = pd.read_csv(Path(model_dir) / TRAIN_SET_FILE, dtype=str, keep_default_na=False)
    pool = gdata.load_frames(train_rows, splits_csv, size)
    real = gdata.load_frames(
        gdata.class_frames(splits, target, "train"), splits_csv, size
    )  # sorted
    real_val = gdata.load_frames(gdata.class_frames(splits, target, "val"), splits_csv, size)
    space = FeatureSpace.load(Path(encoder_dir) / CHECKPOINT)
    if space.meta.image_size != size:
        raise gdata.GeneratorDataError(
            f"the encoder works at {space.meta.image_size} px but base.image_size is {size}: "
            "re-run the encoder stage"
        )
    f_c, f_pool = space.features(cands), space.features(pool)

    # ---- the filter: study std/entropy, sharpness, memorisation, blocking ----
    std, entropy = image_stats(cands)
    sharp = high_frequency_ratio(cands, cfg.sharpness.cutoff)
    sharp_real = high_frequency_ratio(real, cfg.sharpness.cutoff)
    sharp_val = high_frequency_ratio(real_val, cfg.sharpness.cutoff)
    sharp_blur = high_frequency_ratio(
        blurred(real, cfg.sharpness.blur_sigma), cfg.sharpness.cutoff
    )
    min_sharp = max_sharp = None
    sharpness_skipped = None
    if cfg.use_sharpness and len(sharp_real) < cfg.sharpness.min_real_frames:
        sharpness_skipped = (
            f"{len(sharp_real)} real training frames < filter.sharpness.min_real_frames "
            f"{cfg.sharpness.min_real_frames}: too few for a quantile band"
        )
        logger.warning("filter@%s: sharpness criterion skipped (%s)", name, sharpness_skipped)
    elif cfg.use_sharpness:
        min_sharp = float(np.quantile(sharp_real, cfg.sharpness.real_quantile))
        if cfg.sharpness.real_quantile_high < 1.0:
            max_sharp = float(np.quantile(sharp_real, cfg.sharpness.real_quantile_high))
    real_rows = gdata.class_frames(splits, target, "train")
    copy_d = video_copy_distance(real, real_rows["video_id"], cfg.memorisation.video_quantile)
    mem = check_memorisation(cands, pool, cfg.memorisation, f_c, f_pool, copy_d)
    mem_val = (
        check_memorisation(real_val, pool, cfg.memorisation, copy_distance=copy_d)
        if len(real_val)
        else None
    )
    blocked = mem.rate > cfg.max_memorisation_rate
    reason = (
        f"memorisation rate {mem.rate:.3f} > filter.max_memorisation_rate "
        f"{cfg.max_memorisation_rate}: never used by a training strategy, never registered"
        if blocked
        else None
    )
    thresholds = FilterThresholds(cfg.min_std, cfg.min_entropy, min_sharp, blocked, max_sharp)
    stats = {"std": std, "entropy": entropy, "sharpness": sharp}
    outcome = apply_filter(stats, thresholds, mem.memorised)
    kept = cands[outcome.kept]
    with atomic_path(kept_dir, is_dir=True) as tmp:
        for img, p, k in zip(cands, paths, outcome.kept, strict=True):
            if k and not cv2.imwrite(str(tmp / p.name), img):
                raise OSError(f"cannot write {tmp / p.name}")
    nn_patient = [train_rows["patient_id"].iloc[i] for i in mem.nn_index]
    table = pd.DataFrame(
        {
            "file": [p.name for p in paths],
            "std": std,
            "entropy": entropy,
            "sharpness": sharp,
            "quality_ok": outcome.quality_ok,
            "study_ok": pass_mask(stats, FilterThresholds(cfg.min_std, cfg.min_entropy, None)),
            "nn_train_path": [train_rows["path"].iloc[i] for i in mem.nn_index],
            "nn_train_patient": nn_patient,
            "nn_pixel_distance": mem.nn_distance,
            "carlini_ratio": mem.ratio,
            "nn_feature_cosine": mem.feature_cosine,
            "memorised": mem.memorised,
            "kept": outcome.kept,
            "reasons": [";".join(r) for r in outcome.reasons],
        }
    )
    with atomic_path(table_csv) as tmp:
        table.to_csv(tmp, index=False)

    # ---- fidelity against real patients, each beside its real reference ----
    seed = derive_seed(base.seed, f"fidelity-{name}")
    f_kept = f_c[outcome.kept] if not blocked else f_c[outcome.quality_ok & ~mem.memorised]
    feats = {
        "kept": f_kept,
        "cands": f_c,
        "train": space.features(real),
        "val": space.features(real_val),
    }
    target_idx = base.classes.index(target)
    scored = kept if not blocked else cands[outcome.quality_ok & ~mem.memorised]
    rec = recognition(space.predict(scored), target_idx, cfg.ci)
    rec_val = recognition(space.predict(real_val), target_idx, cfg.ci)
    rec_train = recognition(space.predict(real), target_idx, cfg.ci)  # seen: an upper bound
    enc_val = json.loads((Path(encoder_dir) / FILES["val_metrics"]).read_text())["val"]
    flagged = pd.Series([p for p, m in zip(nn_patient, mem.memorised, strict=True) if m])
    label = label_of(name, spec)
    metrics: dict[str, Any] = {
        "generator": name,
        "kind": spec.kind,
        "target_class": target,
        "fold": fold,
        "train_set": spec.train_set,
        "leaky": leaky,
        "leakage": "LEAKY: the generator saw validation/test frames; never compare it with "
        "non-leaky results"
        if leaky
        else "none: trained on the train split only",
        "blocked": blocked,
        "blocked_reason": reason,
        "candidates": len(cands),
        "kept": int(outcome.kept.sum()),
        "rejected": int((~outcome.kept).sum()),
        "kept_fraction": float(outcome.kept.mean()) if len(cands) else 0.0,
        "rejected_by_reason": outcome.rejected_by_reason(),
        "thresholds": thresholds.as_dict(),
        "study_filter_pass_rate": {
            "candidates": _study_pass(cands, cfg),
            "real_train": _study_pass(real, cfg),
            "real_val": _study_pass(real_val, cfg),
        },
        "sharpness": {
            "threshold": min_sharp,
            "skipped": sharpness_skipped,
            "threshold_high": max_sharp,
            "quantile_of_real_train": cfg.sharpness.real_quantile,
            "pass_rate": {
                "candidates": _sharp_pass(sharp, min_sharp, max_sharp),
                "real_train": _sharp_pass(sharp_real, min_sharp, max_sharp),
                "real_val": _sharp_pass(sharp_val, min_sharp, max_sharp),
                "real_train_blurred": _sharp_pass(sharp_blur, min_sharp, max_sharp),
            },
            "real_above_own_blur": float((sharp_real > sharp_blur).mean()) if len(real) else None,
            "median": {
                "candidates": float(np.median(sharp)) if len(sharp) else None,
                "real_train": float(np.median(sharp_real)) if len(real) else None,
            },
        },
        "recognition": rec,
        "recognition_real_val": rec_val,
        "recognition_real_train": rec_train,
        "recognition_ratio": ratio(rec["rate"], rec_val["rate"]),
        "recognition_note": "scored on the kept images (on the would-be-kept ones if blocked); "
        "real_val is the reference (unseen patients), real_train an upper bound (seen frames)",
        **fidelity_report(feats, cfg, seed),
        "memorisation": {
            "rate": mem.rate,
            "flags": mem.counts(),
            "training_pool": len(pool),
            "copy_distance": copy_d,
            "copy_distance_note": f"{cfg.memorisation.video_quantile} quantile of the real "
            "training frames' distance to their nearest same-clip neighbour",
            "copied_patients": {str(k): int(v) for k, v in flagged.value_counts().items()},
            "median_nn_pixel_distance": float(np.median(mem.nn_distance)) if len(cands) else None,
            "real_val_rate": mem_val.rate if mem_val is not None else None,
            "real_val_note": "share of REAL validation frames of the class the same pixel "
            "criteria flag against this training pool (its false-positive reference)",
        },
        "feature_space": {
            "what": "penultimate layer of the fold's real-trained classifier (stage encoder)",
            "strategy": space.meta.extra.get("strategy"),
            "num_features": int(f_c.shape[1]) if len(f_c) else None,
            "val_balanced_accuracy": enc_val.get("balanced_accuracy"),
        },
        "real_train_frames": len(real),
        "real_val_frames": len(real_val),
        "train_frames": meta.get("train_frames"),
        "train_patients": meta.get("train_patients"),
        "train_splits": meta.get("splits_used"),
        "train_notes": meta.get("notes", []),
    }
    run_info = read_run_file(model_dir)
    metrics["mlflow_run_id"] = run_info.get("run_id")
    metrics["model_uri"] = run_info.get("model_uri")
    metrics["scored_against"] = score_basis(splits_csv, encoder_dir)

    order = np.argsort(mem.nn_distance, kind="stable")[: cfg.closest_pairs]
    pairs = [
        (int(i), int(mem.nn_index[i]), float(mem.nn_distance[i]), bool(mem.memorised[i]))
        for i in order
    ]
    figures = {
        "filter_scatter.png": filter_scatter_figure(
            std,
            entropy,
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
            {"real train": sharp_real, "real train, blurred": sharp_blur, "candidates": sharp},
            min_sharp,
            f"{label}: high-frequency energy ratio",
            max_sharp,
        ),
        "closest_pairs.png": closest_pairs_figure(
            cands, pool, pairs, f"{label}: closest candidate / training pairs"
        ),
    }
    if track:
        metrics["registry"] = track_filter(
            name,
            spec,
            target,
            cfg,
            gen,
            mlflow_cfg,
            metrics,
            figures,
            table_csv,
            metrics_json,
            fold,
        )
    with atomic_path(plots_dir, is_dir=True) as tmp:
        for fname, fig in figures.items():
            save_figure(fig, tmp / fname)
    write_json(metrics_json, metrics)
    logger.info(
        "filter@%s: kept %d of %d (memorised %d)%s",
        name,
        metrics["kept"],
        len(cands),
        mem.counts()["any"],
        " BLOCKED" if blocked else "",
    )
    return metrics
