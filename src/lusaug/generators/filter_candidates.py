"""The filter of ``filter@k-G``: its inputs, its verdict on every candidate, the kept PNGs, the table.

A candidate is kept when it passes the study's std/entropy test, lies inside the sharpness band
of the real training frames and is not a near-copy of a training frame. A generator whose
memorisation rate is above ``filter.max_memorisation_rate`` is **blocked**: nothing is kept.
:mod:`lusaug.generators.filter_report` turns the verdict into metrics and figures,
:mod:`lusaug.generators.filter_classes` screens a class-conditional generator's other classes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from lusaug.core.config import BaseParams, FilterParams, GeneratorSpec
from lusaug.core.utils import atomic_path
from lusaug.generators import frame_io
from lusaug.generators.ddpm import read_meta
from lusaug.generators.fidelity import FeatureSpace
from lusaug.generators.filters import (
    FilterOutcome,
    FilterThresholds,
    apply_filter,
    blurred,
    high_frequency_ratio,
    image_stats,
    pass_mask,
    sharpness_band,
)
from lusaug.generators.generator import TRAIN_SET_FILE
from lusaug.generators.memorisation import (
    MemorisationResult,
    check_memorisation,
    video_copy_distance,
)

logger = logging.getLogger(__name__)


@dataclass
class FilterInputs:
    """What ``filter@k-G`` reads: the candidates, the generator's training pool, the target
    class's real frames and the fold's feature space."""

    spec: GeneratorSpec
    meta: dict[str, Any]  # the generator's meta.json
    leaky: bool  # the generator saw validation/test frames
    cands: np.ndarray  # candidates, uint8 (N, H, W), sorted by file name
    paths: list[Path]  # their files
    splits: pd.DataFrame  # the fold's split file
    train_rows: pd.DataFrame  # the generator's training set (train_set.csv)
    pool: np.ndarray  # its frames
    real_rows: pd.DataFrame  # the target class's real training frames (sorted by path)
    real: np.ndarray  # their images
    real_val: np.ndarray  # the target class's real validation frames
    space: FeatureSpace  # the encoder stage's classifier
    f_c: np.ndarray  # candidate features
    f_pool: np.ndarray  # training pool features


@dataclass
class Filtered:
    """The filter's verdict on every candidate, with the measurements behind it."""

    std: np.ndarray
    entropy: np.ndarray
    sharp: np.ndarray  # high-frequency energy ratio of the candidates
    sharp_real: np.ndarray  # ... of the real training frames
    sharp_val: np.ndarray  # ... of the real validation frames
    sharp_blur: np.ndarray  # ... of the real training frames blurred
    min_sharp: float | None  # sharpness band (None = criterion off or skipped)
    max_sharp: float | None
    sharpness_skipped: str | None  # why the sharpness criterion was skipped
    copy_d: float  # near-copy pixel distance (same-clip neighbours of real frames)
    mem: MemorisationResult
    mem_val: MemorisationResult | None  # real validation frames against the pool
    blocked: bool
    blocked_reason: str | None
    thresholds: FilterThresholds
    stats: dict[str, np.ndarray]
    outcome: FilterOutcome
    kept: np.ndarray  # the kept candidates' images
    nn_patient: list[str]  # patient of each candidate's nearest training frame


def load_inputs(
    spec: GeneratorSpec,
    splits_csv: Path | str,
    model_dir: Path | str,
    candidates_dir: Path | str,
    encoder_dir: Path | str,
    base: BaseParams,
) -> FilterInputs:
    """Read the candidates, the generator's training pool and the real frames; embed them."""
    meta = read_meta(model_dir)
    size, target = base.image_size, base.target_class
    splits = frame_io.read_splits(splits_csv)
    cands, paths = frame_io.load_folder(candidates_dir, size)
    train_rows = pd.read_csv(Path(model_dir) / TRAIN_SET_FILE, dtype=str, keep_default_na=False)
    pool = frame_io.load_frames(train_rows, splits_csv, size)
    real_rows = frame_io.class_frames(splits, target, "train")
    real = frame_io.load_frames(real_rows, splits_csv, size)  # sorted
    real_val = frame_io.load_frames(frame_io.class_frames(splits, target, "val"), splits_csv, size)
    space = FeatureSpace.from_encoder(encoder_dir)
    if space.meta.image_size != size:
        raise frame_io.GeneratorDataError(
            f"the encoder works at {space.meta.image_size} px but base.image_size is {size}: "
            "re-run the encoder stage"
        )
    return FilterInputs(
        spec=spec,
        meta=meta,
        leaky=bool(meta.get("leaky", spec.leaky)),
        cands=cands,
        paths=paths,
        splits=splits,
        train_rows=train_rows,
        pool=pool,
        real_rows=real_rows,
        real=real,
        real_val=real_val,
        space=space,
        f_c=space.features(cands),
        f_pool=space.features(pool),
    )


def filter_candidates(name: str, inp: FilterInputs, cfg: FilterParams) -> Filtered:
    """The filter: study std/entropy, sharpness, memorisation, blocking."""
    cutoff = cfg.sharpness.cutoff
    std, entropy = image_stats(inp.cands)
    sharp = high_frequency_ratio(inp.cands, cutoff)
    sharp_real = high_frequency_ratio(inp.real, cutoff)
    sharp_val = high_frequency_ratio(inp.real_val, cutoff)
    sharp_blur = high_frequency_ratio(blurred(inp.real, cfg.sharpness.blur_sigma), cutoff)
    min_sharp, max_sharp, sharpness_skipped = sharpness_band(sharp_real, cfg)
    if sharpness_skipped:
        logger.warning("filter@%s: sharpness criterion skipped (%s)", name, sharpness_skipped)
    copy_d = video_copy_distance(
        inp.real, inp.real_rows["video_id"], cfg.memorisation.video_quantile
    )
    mem = check_memorisation(inp.cands, inp.pool, cfg.memorisation, inp.f_c, inp.f_pool, copy_d)
    mem_val = (
        check_memorisation(inp.real_val, inp.pool, cfg.memorisation, copy_distance=copy_d)
        if len(inp.real_val)
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
    return Filtered(
        std=std,
        entropy=entropy,
        sharp=sharp,
        sharp_real=sharp_real,
        sharp_val=sharp_val,
        sharp_blur=sharp_blur,
        min_sharp=min_sharp,
        max_sharp=max_sharp,
        sharpness_skipped=sharpness_skipped,
        copy_d=copy_d,
        mem=mem,
        mem_val=mem_val,
        blocked=blocked,
        blocked_reason=reason,
        thresholds=thresholds,
        stats=stats,
        outcome=outcome,
        kept=inp.cands[outcome.kept],
        nn_patient=[inp.train_rows["patient_id"].iloc[i] for i in mem.nn_index],
    )


def write_kept(kept_dir: Path | str, inp: FilterInputs, res: Filtered) -> None:
    """The kept candidates' PNGs, under their own names (the folder replaced atomically)."""
    with atomic_path(kept_dir, is_dir=True) as tmp:
        for img, p, k in zip(inp.cands, inp.paths, res.outcome.kept, strict=True):
            if k and not cv2.imwrite(str(tmp / p.name), img):
                raise OSError(f"cannot write {tmp / p.name}")


def filter_table(inp: FilterInputs, res: Filtered, cfg: FilterParams) -> pd.DataFrame:
    """One row per candidate: its measurements, its nearest training frame, the verdict."""
    mem, outcome = res.mem, res.outcome
    return pd.DataFrame(
        {
            "file": [p.name for p in inp.paths],
            "std": res.std,
            "entropy": res.entropy,
            "sharpness": res.sharp,
            "quality_ok": outcome.quality_ok,
            "study_ok": pass_mask(res.stats, FilterThresholds(cfg.min_std, cfg.min_entropy, None)),
            "nn_train_path": [inp.train_rows["path"].iloc[i] for i in mem.nn_index],
            "nn_train_patient": res.nn_patient,
            "nn_pixel_distance": mem.nn_distance,
            "carlini_ratio": mem.ratio,
            "nn_feature_cosine": mem.feature_cosine,
            "memorised": mem.memorised,
            "kept": outcome.kept,
            "reasons": [";".join(r) for r in outcome.reasons],
        }
    )
