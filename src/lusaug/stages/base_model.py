"""Stage ``base_model@k``: the text-conditioned base, trained on the fold's OTHER classes.

Writes a diffusers pipeline folder (``LusTextToImagePipeline.from_pretrained`` loads it) with
``train_captions.csv`` (exactly what it was given), a per-class sample grid and the loss curve;
logs the run to MLflow (tag ``fold``) and registers it as ``lus-base``. With ``generate.base``
set to a local Stable Diffusion folder nothing is trained: the folder then only says which
checkpoint the downstream stages use.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from lusaug.core.config import BaseModelParams, BaseParams, MlflowParams, as_flat_dict
from lusaug.core.mlflow_store import log_data_inputs
from lusaug.core.utils import atomic_path, write_json
from lusaug.generators.captions import caption
from lusaug.generators.diffusion_loop import TrainResult, fingerprint
from lusaug.generators.frame_io import check_validation, from_unit, load_frames, read_splits
from lusaug.generators.mlflow_runs import log_base_model, register_base_model
from lusaug.generators.plots import comparison_grid_figure, loss_figure, save_figure
from lusaug.generators.stages.common import (
    derive_seed,
    finish_checkpoints,
    prepare_checkpoints,
    remember_run,
    set_threads,
    setup_mlflow,
    tags,
)
from lusaug.generators.text_base import CAPTIONS_FILE, BaseData, base_training_data, train_base
from lusaug.generators.text_to_image import TextToImage, pipeline_class

logger = logging.getLogger(__name__)

EXTERNAL_FILE = "external_base.json"  # written instead of a model when generate.base is set
SAMPLE_STEPS = 20  # DPM-Solver++ steps of the per-class sample grid


def resolve_base(base_dir: Path | str, external: str) -> Path:
    """The pipeline folder generators build on: ``generate.base`` when set, else ``base_dir``."""
    path = Path(external).expanduser() if external else Path(base_dir)
    pipeline_class(path)  # a clear error when it is not a pipeline folder
    return path


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


def _external_base(external: str, out_dir: Path | str, fold: int | None) -> dict[str, Any]:
    """``generate.base`` is set: nothing trains, the folder only says which checkpoint to use."""
    path = resolve_base("", external)
    summary = {"fold": fold, "external": str(path.resolve()), "trained": False}
    with atomic_path(out_dir, is_dir=True) as tmp:
        write_json(tmp / EXTERNAL_FILE, summary)
    return summary


def _summary(
    fold: int | None,
    target_class: str,
    data: BaseData,
    n_images: int,
    t2i: TextToImage,
    res: TrainResult,
    run_id: str,
) -> dict[str, Any]:
    """``base.json``: what the base trained on, its size and how training went."""
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
        "train_seconds": round(res.seconds, 2),
        "train_images_per_second": round(res.images_per_second, 2),
        "final_loss": float(np.mean(res.losses[-max(1, len(res.losses) // 10) :])),
        "mlflow_run_id": run_id,
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


def run_base_model(
    splits_csv: Path | str,
    out_dir: Path | str,
    base: BaseParams,
    cfg: BaseModelParams,
    mlflow_cfg: MlflowParams,
    external: str = "",
    threads: int = 0,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    validation_json: Path | str | None = None,
    fold: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or point at) the fold's base; returns the summary written to ``base.json``."""
    check_validation(validation_json)
    if external:
        return _external_base(external, out_dir, fold)
    set_threads(threads)
    splits = read_splits(splits_csv)
    data = base_training_data(splits, base.target_class, base.classes)
    images = load_frames(data.rows, splits_csv, base.image_size)
    seed = derive_seed(base.seed, "base_model")
    fp = fingerprint("base_model", cfg, base.image_size, list(data.rows["path"]))
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    run_id = prepare_checkpoints(ckpt_dir, resume, fp)
    setup_mlflow(mlflow_cfg)
    with mlflow.start_run(run_id=run_id, run_name="base_model") as run:
        remember_run(ckpt_dir, run.info.run_id, fp)
        mlflow.set_tags(tags(fold, stage="base_model", target_class=base.target_class))
        log_data_inputs(run.info.run_id, ".", splits_csv)  # lineage: data + fold split
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
            checkpoint_dir=ckpt_dir,
            resume=resume,
            run_fingerprint=fp,
            on_checkpoint=on_checkpoint if cfg.checkpoint_every else None,
            progress=progress,
        )
        summary = _summary(fold, base.target_class, data, len(images), t2i, res, run.info.run_id)
        with atomic_path(out_dir, is_dir=True) as tmp:
            t2i.pipe.save_pretrained(tmp)
            pd.DataFrame(
                {"path": data.rows["path"], "label": data.rows["label"], "caption": data.texts}
            ).to_csv(tmp / CAPTIONS_FILE, index=False)
            _write_figures(tmp, t2i, data, cfg, seed + 1, res.losses)
            mlflow.log_metrics(
                {
                    k: float(summary[k])
                    for k in (
                        "train_seconds",
                        "train_images_per_second",
                        "final_loss",
                        "train_steps",
                    )
                }
            )
            if cfg.register:
                uri = log_base_model(tmp)
                summary["model_uri"] = uri
                summary["registry"] = register_base_model(uri, fold, run.info.run_id)
            write_json(tmp / "base.json", summary)
    finish_checkpoints(ckpt_dir)
    logger.info("base_model: %d frames, %.0f s", len(images), res.seconds)
    return summary
