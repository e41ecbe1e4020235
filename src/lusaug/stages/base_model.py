"""Stage ``base_model@k``: the text-conditioned base, trained on the fold's OTHER classes.

Writes a diffusers pipeline folder (``LusTextToImagePipeline.from_pretrained`` loads it) with
``train_captions.csv`` (exactly what it was given), a per-class sample grid and the loss curve;
logs the run to MLflow (tag ``fold``) and registers it as ``lus-base``. A base whose fingerprint
(its section, the image size, the seed and the frames it learns from) is unchanged is kept as it
is (the folder is a persistent DVC output), so a change elsewhere (``generate.enabled``) costs
seconds. Nothing trains when no generator reads the base: with ``generate.base`` set to a local
Stable Diffusion folder the folder only says which checkpoint the downstream stages use, and
when no enabled generator builds on a base (textual inversion, fine-tuning) it says so.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from lusaug.core.config import (
    BaseModelParams,
    BaseParams,
    GenerateParams,
    MlflowParams,
    as_flat_dict,
)
from lusaug.core.mlflow_store import log_data_inputs
from lusaug.core.utils import atomic_path, write_execution, write_json
from lusaug.generators.captions import caption
from lusaug.generators.diffusion_loop import Checkpointing, TrainResult, fingerprint
from lusaug.generators.frame_io import check_validation, from_unit, load_frames, read_splits
from lusaug.generators.generator import TEXT_KINDS
from lusaug.generators.mlflow_runs import log_base_model, register_base_model
from lusaug.generators.plots import comparison_grid_figure, loss_figure, save_figure
from lusaug.generators.run_context import (
    derive_seed,
    finish_checkpoints,
    prepare_checkpoints,
    remember_run,
    set_threads,
    setup_mlflow,
    tags,
)
from lusaug.generators.text_base import CAPTIONS_FILE, BaseData, base_training_data, train_base
from lusaug.generators.text_to_image import TextToImage, resolve_base

logger = logging.getLogger(__name__)

EXTERNAL_FILE = "external_base.json"  # written instead of a model when generate.base is set
SKIPPED_FILE = "skipped.json"  # written instead of a model when no enabled generator needs one
SUMMARY_FILE = "base.json"
SAMPLE_STEPS = 20  # DPM-Solver++ steps of the per-class sample grid


@dataclass(frozen=True)
class BaseModelPaths:
    splits: Path  # data/splits/fold-<k>.csv
    out: Path  # models/fold-<k>/base_model
    checkpoints: Path | None = None  # models/checkpoints/fold-<k>/base_model (--resume)
    validation: Path | None = None  # metrics/validation.json (must have passed)


def skip_reason(generate: GenerateParams) -> str | None:
    """Why no enabled generator reads the fold's base (None when one does)."""
    if any(generate.generators[g].kind in TEXT_KINDS for g in generate.enabled):
        return None
    return (
        f"no generator of generate.enabled {generate.enabled} builds on a base "
        f"(kinds {', '.join(TEXT_KINDS)})"
    )


def class_grid(t2i: TextToImage, rows: pd.DataFrame, cfg: BaseModelParams, seed: int) -> Any:
    """One row of samples per class the base knows (prompt = a caption of that class)."""
    grid = {}
    for label, group in rows.groupby("label", sort=True):
        prompt = caption(group.iloc[0])
        imgs = t2i.sample([prompt] * cfg.grid_per_class, seed, SAMPLE_STEPS, cfg.guidance_scale)
        grid[f"{label}"] = from_unit(imgs)
    grid["'' (unconditional)"] = from_unit(
        t2i.sample([""] * cfg.grid_per_class, seed, SAMPLE_STEPS, 1.0)
    )
    return comparison_grid_figure(grid, "base model: same seeds, one caption per class")


def _untrained(out_dir: Path, name: str, summary: dict[str, Any]) -> dict[str, Any]:
    """A folder that says why no base was trained (``generate.base`` set, or nothing needs one)."""
    with atomic_path(out_dir, is_dir=True) as tmp:
        write_json(tmp / name, summary)
    return summary


def _kept(out_dir: Path, fp: str) -> dict[str, Any] | None:
    """The summary of the base already in ``out_dir`` when it was trained on exactly this."""
    path = out_dir / SUMMARY_FILE
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    return summary if summary.get("fingerprint") == fp else None


def _summary(
    fold: int | str | None,
    target_class: str,
    data: BaseData,
    n_images: int,
    t2i: TextToImage,
    res: TrainResult,
    fp: str,
) -> dict[str, Any]:
    """``base.json``: what the base trained on, its size and how training went (wall times and
    MLflow ids go to its execution record: they differ between identical runs)."""
    return {
        "fold": fold,
        "trained": True,
        "classes": sorted(set(data.rows["label"])),
        "target_class_excluded": target_class,
        "train_frames": n_images,
        "train_patients": int(data.rows["patient_id"].nunique()),
        "vocabulary": len(data.vocab),
        "unet_parameters": sum(p.numel() for p in t2i.unet.parameters()),
        "text_encoder_parameters": sum(p.numel() for p in t2i.text_encoder.parameters()),
        "train_steps": res.steps,
        "final_loss": float(np.mean(res.losses[-max(1, len(res.losses) // 10) :])),
        "fingerprint": fp,
    }


def _write_figures(
    tmp: Path,
    t2i: TextToImage,
    data: BaseData,
    cfg: BaseModelParams,
    seed: int,
    losses: list[float],
) -> None:
    """The per-class sample grid and the loss curve, to the folder and to MLflow."""
    grid = class_grid(t2i, data.rows, cfg, seed)
    mlflow.log_figure(grid, "samples/final.png")
    save_figure(grid, tmp / "samples.png")
    fig = loss_figure(losses, "base model: denoising loss")
    mlflow.log_figure(fig, "loss.png")
    save_figure(fig, tmp / "loss.png")


def run(
    paths: BaseModelPaths,
    base: BaseParams,
    cfg: BaseModelParams,
    generate: GenerateParams,
    mlflow_cfg: MlflowParams,
    *,
    resume: bool = False,
    fold: int | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (keep, point at, or skip) the fold's base; returns the summary in its folder.

    ``generate`` gives ``enabled`` and the generators' kinds (is a base needed?), ``base`` (a
    local Stable Diffusion instead) and ``threads``.
    """
    check_validation(paths.validation)
    out_dir = Path(paths.out)
    if generate.base:
        path = resolve_base("", generate.base)
        summary = {"fold": fold, "external": str(path.resolve()), "trained": False}
        return _untrained(out_dir, EXTERNAL_FILE, summary)
    reason = skip_reason(generate)
    if reason is not None:
        logger.info("base_model: skipped (%s)", reason)
        return _untrained(
            out_dir, SKIPPED_FILE, {"fold": fold, "trained": False, "skipped": reason}
        )
    set_threads(generate.threads)
    splits = read_splits(paths.splits)
    data = base_training_data(splits, base.target_class, base.classes)
    seed = derive_seed(base.seed, "base_model")
    fp = fingerprint("base_model", cfg, base.image_size, seed, list(data.rows["path"]))
    kept = _kept(out_dir, fp)
    if kept is not None:
        logger.info("base_model: kept the base in %s (same settings and frames)", out_dir)
        return kept
    images = load_frames(data.rows, paths.splits, base.image_size)
    ckpt_dir = Path(paths.checkpoints) if paths.checkpoints is not None else None
    run_id = prepare_checkpoints(ckpt_dir, resume, fp)
    setup_mlflow(mlflow_cfg)
    with mlflow.start_run(run_id=run_id, run_name="base_model") as active:
        remember_run(ckpt_dir, active.info.run_id, fp)
        mlflow.set_tags(tags(fold, stage="base_model", target_class=base.target_class))
        log_data_inputs(active.info.run_id, ".", paths.splits)  # lineage: data + fold split
        if run_id is None:
            mlflow.log_params(as_flat_dict(cfg, "base_model."))
            mlflow.log_params({"train_frames": len(images), "seed": seed})

        def on_checkpoint(step: int, t2i: TextToImage, losses: list[float]) -> None:
            fig = class_grid(t2i, data.rows, cfg, seed + 1)
            mlflow.log_figure(fig, f"samples/step_{step:06d}.png")
            plt.close(fig)

        t2i, res = train_base(
            images,
            data,
            cfg,
            seed,
            Checkpointing(ckpt_dir, resume, fp),
            on_checkpoint=on_checkpoint if cfg.checkpoint_every else None,
            progress=progress,
        )
        summary = _summary(fold, base.target_class, data, len(images), t2i, res, fp)
        execution: dict[str, Any] = {
            "mlflow_run_id": active.info.run_id,
            "train_seconds": round(res.seconds, 2),
            "train_images_per_second": round(res.images_per_second, 2),
            "resumed_from": res.resumed_from,
        }
        with atomic_path(out_dir, is_dir=True) as tmp:
            t2i.pipe.save_pretrained(tmp)
            pd.DataFrame(
                {"path": data.rows["path"], "label": data.rows["label"], "caption": data.texts}
            ).to_csv(tmp / CAPTIONS_FILE, index=False)
            _write_figures(tmp, t2i, data, cfg, seed + 1, res.losses)
            mlflow.log_metrics(
                {
                    "train_seconds": res.seconds,
                    "train_images_per_second": res.images_per_second,
                    "final_loss": summary["final_loss"],
                    "train_steps": float(res.steps),
                }
            )
            if cfg.register:
                uri = log_base_model(tmp)
                execution["model_uri"] = uri
                execution["registry"] = register_base_model(uri, fold, active.info.run_id)
            write_json(tmp / SUMMARY_FILE, summary)
    write_execution(out_dir, execution)
    finish_checkpoints(ckpt_dir)
    logger.info("base_model: %d frames, %.0f s", len(images), res.seconds)
    return {**summary, **execution}
