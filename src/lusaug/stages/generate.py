"""Stage ``generate@k-G``: train generator G on the fold's rare-class training frames.

Pixel DDPMs train from scratch; textual inversion learns a token on the fold's base (or on the
Stable Diffusion of ``generate.base``); fine-tuning trains the base's UNet on the rare class with
its captions. Each writes ``models/.../generators/G`` (``generator.json`` says how to load and
sample it) and its candidate PNGs, logs to MLflow (tag ``fold``) and resumes from checkpoints.
Wall times, the step a training resumed from and the MLflow ids go to the model folder's
execution record (``execution.json``), so identical runs leave identical folders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd

from lusaug.core.config import (
    CONDITIONAL_KIND,
    BaseParams,
    GenerateParams,
    GeneratorSpec,
    MlflowParams,
    SamplingParams,
    as_flat_dict,
)
from lusaug.core.mlflow_store import log_data_inputs
from lusaug.core.utils import atomic_path, write_execution
from lusaug.generators import frame_io
from lusaug.generators.captions import captions
from lusaug.generators.ddpm import build_scheduler, save_ddpm, train_ddpm
from lusaug.generators.diffusion_loop import Checkpointing, fingerprint
from lusaug.generators.generator import (
    PIPELINE_DIR,
    TEXT_KINDS,
    TRAIN_SET_FILE,
    Generator,
    write_meta,
)
from lusaug.generators.mlflow_runs import MetricBuffer, log_generator_model
from lusaug.generators.plots import comparison_grid_figure, grid_figure, loss_figure, save_figure
from lusaug.generators.run_context import (
    derive_seed,
    finish_checkpoints,
    generator_tags,
    get_spec,
    label_of,
    prepare_checkpoints,
    remember_run,
    set_threads,
    setup_mlflow,
)
from lusaug.generators.sampling import sample_ddpm
from lusaug.generators.text_base import finetune_unet
from lusaug.generators.text_to_image import TextToImage, resolve_base
from lusaug.generators.textual_inversion import (
    EMBEDDINGS_FILE,
    save_embeddings,
    train_textual_inversion,
)

logger = logging.getLogger(__name__)

LOSSES_FILE = "losses.csv"
CANDIDATE_PREFIX = "cand"


@dataclass(frozen=True)
class GeneratePaths:
    splits: Path  # data/splits/fold-<k>.csv
    base: Path | None  # models/fold-<k>/base_model (textual inversion and fine-tuning build on it)
    model: Path  # models/fold-<k>/generators/<G>
    candidates: Path  # data/synthetic/fold-<k>/<G>/candidates
    checkpoints: Path | None = None  # models/checkpoints/fold-<k>/<G> (--resume)
    validation: Path | None = None  # metrics/validation.json (must have passed)


def _train_steps(spec: GeneratorSpec, gen: GenerateParams) -> int:
    return gen.ddpm.train_steps_3mixed if spec.train_set == "3mixed" else gen.ddpm.train_steps


def _train_ddpm(ctx: dict[str, Any], out: Path) -> dict[str, float]:
    spec, gen, meta = ctx["spec"], ctx["gen"], ctx["meta"]
    cfg, sp = gen.ddpm, gen.sampling
    conditional = spec.kind == CONDITIONAL_KIND
    labels = num_classes = None
    if conditional:
        labels = np.array([meta["classes"].index(c) for c in ctx["tset"].frames["label"]])
        num_classes = len(meta["classes"])
    schedule = build_scheduler(cfg).config
    buffer = MetricBuffer(ctx["run_id"])
    logged = {"n": len(buffer.client.get_metric_history(ctx["run_id"], "train_loss"))}

    def on_checkpoint(step: int, unet: Any, losses: list[float]) -> None:
        buffer.add("train_loss", losses[logged["n"] :], first_step=logged["n"] + 1)
        logged["n"] = len(losses)
        buffer.flush()
        imgs = sample_ddpm(
            unet,
            schedule,
            cfg.grid_size,
            sp.sampler,
            sp.steps,
            sp.batch_size,
            ctx["seed"] + 2,
            class_label=meta["class_index"] if conditional else None,
        )
        fig = grid_figure(
            frame_io.resize_batch(frame_io.from_unit(imgs), meta["image_size"]),
            f"{ctx['label']}: step {step} (EMA, {sp.sampler}-{sp.steps})",
        )
        mlflow.log_figure(fig, f"samples/step_{step:06d}.png")
        plt.close(fig)

    unet, unet_sched, res = train_ddpm(
        ctx["images"],
        cfg,
        ctx["seed"],
        labels=labels,
        num_classes=num_classes,
        checkpoints=ctx["checkpoints"],
        on_checkpoint=on_checkpoint,
        progress=ctx["progress"],
        train_steps=_train_steps(spec, gen),
    )
    meta.update(resolution=cfg.resolution, train_steps=res.steps)
    save_ddpm(out, unet, unet_sched, meta)
    metrics = _finish_training(ctx, out, res.losses, res.seconds, res.images_per_second)
    return {**metrics, "resumed_from": float(res.resumed_from)}


def _finish_training(
    ctx: dict[str, Any], out: Path, losses: list[float], seconds: float, ips: float
) -> dict[str, float]:
    pd.DataFrame({"step": np.arange(1, len(losses) + 1), "loss": losses}).to_csv(
        out / LOSSES_FILE, index=False
    )
    fig = loss_figure(losses, f"{ctx['label']}: training loss")
    mlflow.log_figure(fig, "loss.png")
    save_figure(fig, out / "loss.png")
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "train_seconds": seconds,
        "train_images_per_second": ips,
        "final_loss": float(np.mean(tail)),
        "train_steps": float(len(losses)),
    }


def _train_text(ctx: dict[str, Any], out: Path) -> dict[str, float]:
    """Textual inversion or fine-tuning on the base."""
    spec, gen, meta, seed = ctx["spec"], ctx["gen"], ctx["meta"], ctx["seed"]
    t2i = TextToImage.load(ctx["base_path"])
    meta.update(base=str(ctx["base_path"]), latent=t2i.latent, resolution=t2i.resolution)
    if spec.kind == "textual_inversion":
        cfg = gen.ti
        res = train_textual_inversion(
            t2i, ctx["images"], cfg, spec.template, seed, cfg.hflip, progress=ctx["progress"]
        )
        save_embeddings(out / EMBEDDINGS_FILE, cfg.placeholder_token, res.embeddings)
        meta.update(
            embeddings=EMBEDDINGS_FILE,
            placeholder_token=cfg.placeholder_token,
            template=spec.template,
            num_vectors=cfg.num_vectors,
            guidance_scale=cfg.guidance_scale,
            train_steps=len(res.losses),
        )
        write_meta(out, meta)
        out_metrics = _finish_training(
            ctx, out, res.losses, res.seconds, res.steps_per_second * cfg.batch_size
        )
        out_metrics["embeddings_kb"] = (out / EMBEDDINGS_FILE).stat().st_size / 1024
        out_metrics["ti_steps_per_second"] = res.steps_per_second
        return out_metrics
    cfg = gen.finetune
    texts = captions(ctx["tset"].frames)
    res = finetune_unet(
        t2i,
        ctx["images"],
        texts,
        cfg,
        seed,
        cfg.hflip,
        checkpoints=ctx["checkpoints"],
        progress=ctx["progress"],
    )
    t2i.pipe.save_pretrained(out / PIPELINE_DIR)
    meta.update(
        captions=sorted(set(texts)),
        guidance_scale=cfg.guidance_scale,
        method=cfg.method,
        train_steps=res.steps,
    )
    write_meta(out, meta)
    return _finish_training(ctx, out, res.losses, res.seconds, res.images_per_second)


def _comparison_grid(generator: Generator, ctx: dict[str, Any]) -> Any:
    """The study's figure: the same seeds with the learned token and with plain text."""
    gen = ctx["gen"]
    n = gen.ti.comparison_images
    rows = {
        "with token": generator.sample(n, ctx["seed"] + 3),
        f"'{gen.ti.comparison_text}'": generator.sample(
            n, ctx["seed"] + 3, replace_token_with=gen.ti.comparison_text
        ),
    }
    token = gen.ti.placeholder_token
    return comparison_grid_figure(rows, f"{ctx['label']}: same seeds with / without {token}")


def _generator_meta(
    name: str,
    spec: GeneratorSpec,
    base: BaseParams,
    sp: SamplingParams,
    tset: frame_io.TrainingSet,
    n_images: int,
    seed: int,
    fold: int | str | None,
) -> dict[str, Any]:
    """The start of ``generator.json``: what G is, what it trained on, how it samples."""
    target = base.target_class
    return {
        "name": name,
        "kind": spec.kind,
        "train_set": spec.train_set,
        "leaky": spec.leaky,
        "target_class": target,
        "class_index": base.classes.index(target),
        "classes": list(base.classes),
        "image_size": base.image_size,
        "seed": seed,
        "fold": fold,
        "train_frames": n_images,
        "train_patients": int(tset.frames["patient_id"].nunique()),
        "splits_used": tset.splits_used,
        "notes": tset.notes,
        "sampler": sp.sampler,
        "steps": sp.steps,
        "batch_size": sp.batch_size,
    }


def _model_section(spec: GeneratorSpec, gen: GenerateParams) -> Any:
    """The config section G's kind trains with (ddpm, ti or finetune)."""
    if spec.kind.startswith("ddpm"):
        return gen.ddpm
    return getattr(gen, "ti" if spec.kind == "textual_inversion" else "finetune")


def _log_params(
    spec: GeneratorSpec,
    section: Any,
    sp: SamplingParams,
    n_images: int,
    seed: int,
    base_path: Path | None,
) -> None:
    """A new run's params: the generator spec, its model section, sampling, data and seed."""
    mlflow.log_params({f"generator.{k}": v for k, v in as_flat_dict(spec).items()})
    mlflow.log_params(as_flat_dict(section, f"{spec.kind}."))
    mlflow.log_params(as_flat_dict(sp, "sampling."))
    mlflow.log_params({"train_frames": n_images, "seed": seed, "base": str(base_path or "")})


def _candidates(
    generator: Generator, ctx: dict[str, Any], candidates_dir: Path | str, out: Path
) -> np.ndarray:
    """Sample and write the candidate PNGs, with their grid (and TI's with/without figure)."""
    spec, gen, label = ctx["spec"], ctx["gen"], ctx["label"]
    cands = generator.sample(gen.sampling.candidates, ctx["seed"] + 1, progress=ctx["progress"])
    frame_io.write_pngs(cands, candidates_dir, CANDIDATE_PREFIX)
    grid = grid_figure(cands[: gen.ddpm.grid_size], f"{label}: candidates")
    mlflow.log_figure(grid, "samples/candidates.png")
    save_figure(grid, out / "candidates_grid.png")
    if spec.kind == "textual_inversion":
        fig = _comparison_grid(generator, ctx)
        mlflow.log_figure(fig, "samples/with_without_token.png")
        save_figure(fig, out / "with_without_token.png")
    if spec.kind == CONDITIONAL_KIND:
        _other_class_candidates(generator, ctx, Path(candidates_dir))
    return cands


def _other_class_candidates(
    generator: Generator, ctx: dict[str, Any], candidates_dir: Path
) -> None:
    """A class-conditional G also samples every other class, into ``candidates/<class>/``
    (what ``synthetic_only-<G>`` trains on once the filter has screened them)."""
    gen, meta = ctx["gen"], ctx["meta"]
    others = [c for c in meta["classes"] if c != meta["target_class"]]
    for i, label in enumerate(others, start=1):
        imgs = generator.sample(
            gen.sampling.candidates, ctx["seed"] + 1 + i, label=label, progress=ctx["progress"]
        )
        frame_io.write_pngs(imgs, candidates_dir / label, CANDIDATE_PREFIX)
        grid = grid_figure(imgs[: gen.ddpm.grid_size], f"{ctx['label']}: {label} candidates")
        mlflow.log_figure(grid, f"samples/candidates_{label}.png")
        plt.close(grid)


def run(
    paths: GeneratePaths,
    name: str,
    base: BaseParams,
    gen: GenerateParams,
    mlflow_cfg: MlflowParams,
    *,
    resume: bool = False,
    fold: int | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train generator ``name``, save it, write its candidate PNGs; returns the summary."""
    spec = get_spec(gen, name)
    base_path = None
    if spec.kind in TEXT_KINDS:  # fail before any work when there is no base
        base_path = resolve_base(paths.base or "", gen.base)
    frame_io.check_validation(paths.validation)
    set_threads(gen.threads)
    splits = frame_io.read_splits(paths.splits)
    target = base.target_class
    seed = derive_seed(base.seed, name)
    tset = frame_io.build_training_set(
        splits, spec, target, base.classes, gen.mixed_patients, seed
    )
    images = frame_io.load_frames(tset.frames, paths.splits, base.image_size)
    meta = _generator_meta(name, spec, base, gen.sampling, tset, len(images), seed, fold)
    section = _model_section(spec, gen)
    fp = fingerprint(
        name, spec, section, base.image_size, str(base_path), list(tset.frames["path"])
    )
    ckpt_dir = Path(paths.checkpoints) if paths.checkpoints is not None else None
    run_id = prepare_checkpoints(ckpt_dir, resume, fp)
    setup_mlflow(mlflow_cfg)
    label = label_of(name, spec)
    with mlflow.start_run(run_id=run_id, run_name=f"generate-{name}") as active:
        remember_run(ckpt_dir, active.info.run_id, fp)
        mlflow.set_tags(generator_tags(name, spec, target, fold))
        log_data_inputs(active.info.run_id, ".", paths.splits)  # lineage: data + fold split
        if spec.leaky:
            mlflow.set_tag("warning", "LEAKY: trained on validation/test frames")
        if run_id is None:
            _log_params(spec, section, gen.sampling, len(images), seed, base_path)
        mlflow.log_text(tset.frames.to_csv(index=False), TRAIN_SET_FILE)
        ctx = {
            "spec": spec,
            "gen": gen,
            "meta": meta,
            "seed": seed,
            "images": images,
            "tset": tset,
            "checkpoints": Checkpointing(ckpt_dir, resume, fp),
            "progress": progress,
            "run_id": active.info.run_id,
            "label": label,
            "base_path": base_path,
        }
        with atomic_path(paths.model, is_dir=True) as tmp:
            train = _train_text if spec.kind in TEXT_KINDS else _train_ddpm
            result = train(ctx, tmp)
            tset.frames.to_csv(tmp / TRAIN_SET_FILE, index=False)
            cands = _candidates(Generator.load(tmp), ctx, paths.candidates, tmp)
            model_uri = log_generator_model(
                tmp, base_dir=base_path if spec.kind == "textual_inversion" else None
            )
        mlflow.log_metrics({"candidates": float(len(cands)), **result})
    execution = {
        **result,
        "mlflow_run_id": active.info.run_id,
        "experiment_id": active.info.experiment_id,
        "model_uri": model_uri,
    }
    write_execution(paths.model, execution)
    finish_checkpoints(ckpt_dir)
    logger.info("generate@%s: %d candidates from %d frames", name, len(cands), len(images))
    return {**meta, **execution, "candidates": len(cands)}
