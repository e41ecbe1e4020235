"""The three generator stages as library functions: ``encoder``, ``generate@G``, ``filter@G``.

``pipelines/{encoder,generate,filter}.py`` only parse paths and call these. Each returns the
summary it wrote, so tests and benchmarks can call them directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lusaug.config import GeneratorSpec, Params, as_flat_dict
from lusaug.generators import data as gdata
from lusaug.generators.ddpm import META_FILE, fingerprint, read_meta, save_ddpm, train_ddpm
from lusaug.generators.filters import apply_filter, image_stats
from lusaug.generators.plots import (
    closest_pairs_figure,
    filter_scatter_figure,
    grid_figure,
    loss_figure,
    save_figure,
)
from lusaug.utils import atomic_path, sha256_file, write_json

logger = logging.getLogger(__name__)

TRAIN_SET_FILE = "train_set.csv"
LOSSES_FILE = "losses.csv"
CANDIDATE_PREFIX = "cand"


def derive_seed(base_seed: int, name: str) -> int:
    """A per-generator seed that does not change when other generators are added."""
    return (base_seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def set_threads(params: Params) -> None:
    """Apply ``generate.threads``: small models on shared cores run faster on one thread."""
    import torch

    if params.generate.threads > 0:
        torch.set_num_threads(params.generate.threads)


def get_spec(params: Params, name: str) -> GeneratorSpec:
    try:
        return params.generate.generators[name]
    except KeyError:
        known = ", ".join(sorted(params.generate.generators))
        raise gdata.GeneratorDataError(f"unknown generator {name!r}; known: {known}") from None


def _label_of(name: str, spec: GeneratorSpec) -> str:
    return f"{name} [LEAKY]" if spec.leaky else name


# ---------------------------------------------------------------------------------------------
# encoder


def run_encoder(
    splits_csv: Path | str,
    out_dir: Path | str,
    metrics_json: Path | str,
    params: Params,
    validation_json: Path | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the domain encoder on all classes' training frames; write it and its metrics."""
    from lusaug.generators.fidelity import save_encoder, train_encoder

    gdata.check_validation(validation_json)
    set_threads(params)
    splits = gdata.read_splits(splits_csv)
    classes = params.base.classes
    size = params.base.image_size
    rows = splits[(splits["split"] == "train") & splits["label"].isin(classes)]
    val = splits[(splits["split"] == "val") & splits["label"].isin(classes)]
    images = gdata.load_frames(rows, splits_csv, size)
    labels = np.array([classes.index(c) for c in rows["label"]])
    val_images = gdata.load_frames(val, splits_csv, size)
    val_labels = np.array([classes.index(c) for c in val["label"]])
    model, meta = train_encoder(
        images,
        labels,
        classes,
        params.filter.encoder,
        derive_seed(params.base.seed, "encoder"),
        val_images,
        val_labels,
        progress=progress,
    )
    with atomic_path(out_dir, is_dir=True) as tmp:
        save_encoder(tmp, model, meta)
    summary = {
        "train_frames": len(images),
        "val_frames": len(val_images),
        "num_features": meta.num_features,
        "train_accuracy": meta.train_accuracy,
        "val_accuracy": meta.val_accuracy,
        "val_balanced_accuracy": meta.val_balanced_accuracy,
        "seconds": round(meta.seconds, 2),
        "note": "domain encoder for KID/FID and feature-space memorisation; not a classifier "
        "result (the test split is never read)",
    }
    write_json(metrics_json, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# generate@G


def _setup_mlflow(params: Params) -> None:
    from lusaug.mlflow_store import setup_experiment

    setup_experiment("generators", params.mlflow.tracking_uri)


def _tags(name: str, spec: GeneratorSpec, params: Params) -> dict[str, str]:
    from lusaug.mlflow_store import standard_tags

    return standard_tags(
        ".",
        generator=name,
        kind=spec.kind,
        target_class=params.base.target_class,
        train_set=spec.train_set,
        leaky=str(spec.leaky).lower(),
        strategy=name,
    )


def run_generate(
    name: str,
    splits_csv: Path | str,
    model_dir: Path | str,
    candidates_dir: Path | str,
    params: Params,
    checkpoint_dir: Path | str | None = None,
    resume: bool = False,
    validation_json: Path | str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train generator ``name`` on its training set, save it, write its candidate PNGs."""
    import mlflow

    spec = get_spec(params, name)
    if spec.kind == "textual_inversion":  # fail before any work when TI cannot run
        from lusaug.generators.textual_inversion import require_checkpoint

        require_checkpoint(params.generate.ti.checkpoint, name)
    gdata.check_validation(validation_json)
    set_threads(params)
    splits = gdata.read_splits(splits_csv)
    target = params.base.target_class
    seed = derive_seed(params.base.seed, name)
    tset = gdata.build_training_set(
        splits, spec, target, params.base.classes, params.generate.mixed_patients, seed
    )
    images = gdata.load_frames(tset.frames, splits_csv, params.base.image_size)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        gitignore = ckpt_dir.parent / ".gitignore"
        if not gitignore.exists():  # scratch space for --resume, never versioned
            gitignore.write_text("*\n")
    meta: dict[str, Any] = {
        "name": name,
        "kind": spec.kind,
        "train_set": spec.train_set,
        "leaky": spec.leaky,
        "target_class": target,
        "class_index": params.base.classes.index(target),
        "classes": list(params.base.classes),
        "image_size": params.base.image_size,
        "seed": seed,
        "train_frames": len(images),
        "train_patients": int(tset.frames["patient_id"].nunique()),
        "train_patients_target": int(
            tset.frames.loc[tset.frames["label"] == target, "patient_id"].nunique()
        ),
        "splits_used": tset.splits_used,
        "notes": tset.notes,
    }
    fp = fingerprint(
        name,
        spec,
        params.generate.ddpm,
        params.generate.ti,
        params.base.image_size,
        list(tset.frames["sha1"] if "sha1" in tset.frames else tset.frames["path"]),
    )
    meta["fingerprint"] = fp
    _setup_mlflow(params)
    prev = gdata_run_file(ckpt_dir) if resume else {}
    run_id = prev.get("run_id") if prev.get("fingerprint") == fp else None
    if ckpt_dir is not None and run_id is None:  # fresh start: drop another run's checkpoints
        shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
    from lusaug.generators.tracking import run_exists

    with mlflow.start_run(
        run_id=run_id if run_exists(run_id) else None, run_name=f"generate-{name}"
    ) as run:
        if ckpt_dir is not None:
            write_json(ckpt_dir / "run.json", {"run_id": run.info.run_id, "fingerprint": fp})
        mlflow.set_tags(_tags(name, spec, params))
        if spec.leaky:
            mlflow.set_tag("warning", "LEAKY: trained on validation/test frames")
        if not run_id:
            mlflow.log_params({f"generator.{k}": v for k, v in as_flat_dict(spec).items()})
            mlflow.log_params(
                {
                    "train_frames": meta["train_frames"],
                    "train_patients": meta["train_patients"],
                    "seed": seed,
                    "image_size": params.base.image_size,
                    "mixed_patients": params.generate.mixed_patients,
                }
            )
            if spec.kind == "textual_inversion":
                mlflow.log_params(as_flat_dict(params.generate.ti, "ti."))
            else:
                mlflow.log_params(as_flat_dict(params.generate.ddpm, "ddpm."))
            mlflow.log_params(as_flat_dict(params.generate.sampling, "sampling."))
        mlflow.log_text(tset.frames.to_csv(index=False), "train_set.csv")
        with atomic_path(model_dir, is_dir=True) as tmp:
            if spec.kind == "textual_inversion":
                result = _train_ti(name, spec, images, params, seed, tmp, meta, progress)
            else:
                result = _train_ddpm(
                    name,
                    spec,
                    images,
                    tset,
                    params,
                    seed,
                    tmp,
                    meta,
                    ckpt_dir,
                    resume,
                    fp,
                    run.info.run_id,
                    progress,
                )
            tset.frames.to_csv(tmp / TRAIN_SET_FILE, index=False)
            from lusaug.generators.sampling import Generator

            gen = Generator.load(tmp)
            sp = params.generate.sampling
            cands = gen.sample(
                sp.candidates, seed + 1, batch_size=sp.batch_size, progress=progress
            )
            gdata.write_pngs(cands, candidates_dir, CANDIDATE_PREFIX)
            grid = grid_figure(
                cands[: params.generate.ddpm.grid_size], f"{_label_of(name, spec)}: candidates"
            )
            mlflow.log_figure(grid, "samples/candidates.png")
            save_figure(grid, tmp / "candidates_grid.png")
            from lusaug.generators.tracking import log_generator_model, write_run_file

            model_uri = log_generator_model(tmp)
            write_run_file(
                tmp,
                run_id=run.info.run_id,
                model_uri=model_uri,
                experiment_id=run.info.experiment_id,
            )
        mlflow.log_metrics({"candidates": float(len(cands)), **result})
    if ckpt_dir is not None and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)  # finished: nothing to resume
    summary = {
        **meta,
        **result,
        "candidates": len(cands),
        "mlflow_run_id": run.info.run_id,
        "model_uri": model_uri,
    }
    logger.info(
        "generate@%s: %d candidates from %d training frames", name, len(cands), len(images)
    )
    return summary


def gdata_run_file(ckpt_dir: Path | None) -> dict[str, Any]:
    """The MLflow run of an interrupted training (checkpoint folder's run.json)."""
    if ckpt_dir is None or not (ckpt_dir / "run.json").exists():
        return {}
    return json.loads((ckpt_dir / "run.json").read_text())


def _train_ddpm(
    name: str,
    spec: GeneratorSpec,
    images: np.ndarray,
    tset: gdata.TrainingSet,
    params: Params,
    seed: int,
    out: Path,
    meta: dict[str, Any],
    ckpt_dir: Path | None,
    resume: bool,
    fp: str,
    run_id: str,
    progress: bool,
) -> dict[str, float]:
    import mlflow

    from lusaug.generators.sampling import sample_ddpm
    from lusaug.generators.tracking import MetricBuffer

    cfg = params.generate.ddpm
    sp = params.generate.sampling
    conditional = spec.kind == "ddpm_conditional"
    labels = num_classes = None
    if conditional:
        labels = np.array([params.base.classes.index(c) for c in tset.frames["label"]])
        num_classes = len(params.base.classes)
    buffer = MetricBuffer(run_id)
    # a resumed run already holds the losses logged before the interruption
    logged = {"n": len(buffer.client.get_metric_history(run_id, "train_loss"))}

    def on_checkpoint(step: int, unet: Any, losses: list[float]) -> None:
        buffer.add("train_loss", losses[logged["n"] :], first_step=logged["n"] + 1)
        logged["n"] = len(losses)
        buffer.flush()
        imgs = sample_ddpm(
            unet,
            scheduler_config,
            cfg.grid_size,
            sp.sampler,
            sp.steps,
            sp.batch_size,
            seed + 2,
            class_label=meta["class_index"] if conditional else None,
        )
        fig = grid_figure(
            gdata.resize_batch(gdata.from_unit(imgs), params.base.image_size),
            f"{_label_of(name, spec)}: step {step} (EMA, {sp.sampler}-{sp.steps})",
        )
        mlflow.log_figure(fig, f"samples/step_{step:06d}.png")
        import matplotlib.pyplot as plt

        plt.close(fig)

    from lusaug.generators.ddpm import build_scheduler

    scheduler_config = build_scheduler(cfg).config
    unet, scheduler, res = train_ddpm(
        images,
        cfg,
        seed,
        labels=labels,
        num_classes=num_classes,
        checkpoint_dir=ckpt_dir,
        resume=resume,
        run_fingerprint=fp,
        on_checkpoint=on_checkpoint,
        progress=progress,
    )
    meta.update(
        resolution=cfg.resolution,
        sampler=sp.sampler,
        steps=sp.steps,
        batch_size=sp.batch_size,
        train_steps=res.steps,
        resumed_from=res.resumed_from,
    )
    save_ddpm(out, unet, scheduler, meta)
    pd.DataFrame({"step": np.arange(1, len(res.losses) + 1), "loss": res.losses}).to_csv(
        out / LOSSES_FILE, index=False
    )
    fig = loss_figure(res.losses, f"{_label_of(name, spec)}: DDPM loss")
    mlflow.log_figure(fig, "loss.png")
    save_figure(fig, out / "loss.png")
    tail = res.losses[-max(1, len(res.losses) // 10) :]
    return {
        "train_seconds": res.seconds,
        "train_images_per_second": res.images_per_second,
        "final_loss": float(np.mean(tail)),
        "train_steps": float(res.steps),
    }


def _train_ti(
    name: str,
    spec: GeneratorSpec,
    images: np.ndarray,
    params: Params,
    seed: int,
    out: Path,
    meta: dict[str, Any],
    progress: bool,
) -> dict[str, float]:
    import mlflow

    from lusaug.generators import textual_inversion as ti
    from lusaug.generators.plots import comparison_grid_figure

    cfg = params.generate.ti
    ckpt = ti.require_checkpoint(cfg.checkpoint, name)
    pipe = ti.load_sd_pipeline(ckpt)
    res = ti.train_textual_inversion(pipe, images, cfg, spec.template, seed, progress=progress)
    ti.save_embeddings(out / ti.EMBEDDINGS_FILE, cfg.placeholder_token, res.embeddings)
    meta.update(
        checkpoint=str(ckpt.resolve()),
        embeddings=ti.EMBEDDINGS_FILE,
        placeholder_token=cfg.placeholder_token,
        template=spec.template,
        num_vectors=cfg.num_vectors,
        resolution=cfg.resolution,
        steps=cfg.inference_steps,
        guidance_scale=cfg.guidance_scale,
        batch_size=params.generate.sampling.batch_size,
        train_steps=len(res.losses),
    )
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    n = min(8, params.generate.sampling.candidates)
    common = {
        "template": spec.template,
        "n": n,
        "seed": seed + 3,
        "resolution": cfg.resolution,
        "steps": cfg.inference_steps,
        "guidance_scale": cfg.guidance_scale,
        "batch_size": n,
    }
    with_tok = ti.generate_ti(pipe, cfg.placeholder_token, **common)
    without = ti.generate_ti(
        pipe, cfg.placeholder_token, replace_token_with=cfg.comparison_text, **common
    )
    size = params.base.image_size
    fig = comparison_grid_figure(
        {
            "with token": gdata.resize_batch(gdata.from_unit(with_tok), size),
            f"'{cfg.comparison_text}'": gdata.resize_batch(gdata.from_unit(without), size),
        },
        f"{_label_of(name, spec)}: same seeds with / without {cfg.placeholder_token}",
    )
    mlflow.log_figure(fig, "samples/with_without_token.png")
    save_figure(fig, out / "with_without_token.png")
    fig = loss_figure(res.losses, f"{_label_of(name, spec)}: textual inversion loss")
    mlflow.log_figure(fig, "loss.png")
    save_figure(fig, out / "loss.png")
    size_kb = (out / ti.EMBEDDINGS_FILE).stat().st_size / 1024
    return {
        "train_seconds": res.seconds,
        "final_loss": float(np.mean(res.losses[-10:])),
        "embeddings_kb": size_kb,
        "train_steps": float(len(res.losses)),
    }


# ---------------------------------------------------------------------------------------------
# filter@G


def _closest_pairs(mem: Any, k: int) -> list[tuple[int, int, float, bool]]:
    order = np.argsort(mem.nn_distance, kind="stable")[:k]
    return [
        (int(i), int(mem.nn_index[i]), float(mem.nn_distance[i]), bool(mem.memorised[i]))
        for i in order
    ]


def _kid_or_none(a: np.ndarray, b: np.ndarray, params: Params, seed: int) -> dict | None:
    from lusaug.generators.fidelity import kid

    if len(a) < 2 or len(b) < 2:
        return None
    return kid(a, b, params.filter.kid_subsets, params.filter.kid_subset_size, seed).as_dict()


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
    params: Params,
    validation_json: Path | str | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Quality filter + memorisation check + KID/FID for generator ``name``; register the best."""
    from lusaug.generators.fidelity import extract_features, fid, fid_caveat, load_encoder
    from lusaug.generators.memorisation import check_memorisation

    spec = get_spec(params, name)
    gdata.check_validation(validation_json)
    set_threads(params)
    meta = read_meta(model_dir)
    leaky = bool(meta.get("leaky", spec.leaky))
    size = params.base.image_size
    target = params.base.target_class
    fcfg = params.filter
    splits = gdata.read_splits(splits_csv)
    cands, paths = gdata.load_folder(candidates_dir, size)
    train_rows = pd.read_csv(Path(model_dir) / TRAIN_SET_FILE, dtype=str, keep_default_na=False)
    pool = gdata.load_frames(train_rows, splits_csv, size)
    real = gdata.load_frames(gdata.class_frames(splits, target, "train"), splits_csv, size)
    real_val = gdata.load_frames(gdata.class_frames(splits, target, "val"), splits_csv, size)
    encoder, emeta = load_encoder(encoder_dir)
    if emeta.image_size != size:
        raise gdata.GeneratorDataError(
            f"encoder was trained at {emeta.image_size} px but base.image_size is {size}: "
            "run `dvc repro encoder`"
        )
    f_c, f_pool = extract_features(encoder, cands), extract_features(encoder, pool)
    f_real, f_val = extract_features(encoder, real), extract_features(encoder, real_val)

    std, entropy = image_stats(cands)
    mem = check_memorisation(cands, pool, fcfg.memorisation, f_c, f_pool)
    mem_val = check_memorisation(real_val, pool, fcfg.memorisation, f_val, f_pool)
    outcome = apply_filter(std, entropy, fcfg.min_std, fcfg.min_entropy, mem.memorised)
    kept = cands[outcome.kept]
    kept_names = [p.name for p, k in zip(paths, outcome.kept, strict=True) if k]
    with atomic_path(kept_dir, is_dir=True) as tmp:
        for img, fname in zip(kept, kept_names, strict=True):
            import cv2

            if not cv2.imwrite(str(tmp / fname), img):
                raise OSError(f"cannot write {tmp / fname}")

    table = pd.DataFrame(
        {
            "file": [p.name for p in paths],
            "std": std,
            "entropy": entropy,
            "quality_ok": outcome.quality_ok,
            "nn_train_path": [train_rows["path"].iloc[i] for i in mem.nn_index],
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

    seed = derive_seed(params.base.seed, f"kid-{name}")
    f_kept = f_c[outcome.kept]
    kid_kept = _kid_or_none(f_kept, f_real, params, seed)
    fid_val = float(fid(f_kept, f_real)) if len(f_kept) >= 2 and len(f_real) >= 2 else None
    label = _label_of(name, spec)
    metrics: dict[str, Any] = {
        "generator": name,
        "kind": spec.kind,
        "target_class": target,
        "train_set": spec.train_set,
        "leaky": leaky,
        "leakage": "LEAKY: the generator saw validation/test frames; never compare it with "
        "non-leaky results"
        if leaky
        else "none: trained on the train split only",
        "candidates": len(cands),
        "kept": int(outcome.kept.sum()),
        "rejected": int((~outcome.kept).sum()),
        "kept_fraction": float(outcome.kept.mean()) if len(cands) else 0.0,
        "rejected_by_reason": outcome.rejected_by_reason(),
        "thresholds": {"min_std": fcfg.min_std, "min_entropy": fcfg.min_entropy},
        "memorisation": {
            "rate": mem.rate,
            "flags": mem.counts(),
            "training_pool": len(pool),
            "median_nn_pixel_distance": float(np.median(mem.nn_distance)) if len(cands) else None,
            "real_val_rate": mem_val.rate if len(real_val) else None,
            "real_val_note": "share of REAL validation frames of the class the same criterion "
            "flags against this training pool (its false-positive reference)",
        },
        "kid": kid_kept,
        "kid_reason": None if kid_kept else "fewer than 2 kept samples or real frames",
        "kid_all_candidates": _kid_or_none(f_c, f_real, params, seed),
        "kid_real_val_reference": _kid_or_none(f_val, f_real, params, seed),
        "fid": fid_val,
        "fid_caveat": fid_caveat(len(f_kept), len(f_real), f_real.shape[1]),
        "feature_space": f"domain encoder ({emeta.num_features}-d, val balanced accuracy "
        f"{emeta.val_balanced_accuracy})",
        "real_train_frames": len(real),
        "train_frames": meta.get("train_frames"),
        "train_patients": meta.get("train_patients"),
        "train_notes": meta.get("notes", []),
    }
    run_info = _read_run(model_dir)
    metrics["mlflow_run_id"] = run_info.get("run_id")
    metrics["model_uri"] = run_info.get("model_uri")
    metrics["scored_against"] = score_basis(splits_csv, encoder_dir)

    scatter = filter_scatter_figure(
        std,
        entropy,
        outcome.kept,
        fcfg.min_std,
        fcfg.min_entropy,
        mem.memorised,
        f"{label}: quality filter",
    )
    kept_grid = grid_figure(kept[: fcfg.grid_size], f"{label}: kept ({len(kept)})")
    rej = cands[~outcome.kept]
    rej_grid = grid_figure(rej[: fcfg.grid_size], f"{label}: rejected ({len(rej)})")
    real_grid = grid_figure(real[: fcfg.grid_size], f"real training frames: {target}")
    pairs = closest_pairs_figure(
        cands,
        pool,
        _closest_pairs(mem, fcfg.closest_pairs),
        f"{label}: closest candidate / training pairs",
    )
    figures = {
        "filter_scatter.png": scatter,
        "kept_grid.png": kept_grid,
        "rejected_grid.png": rej_grid,
        "real_grid.png": real_grid,
        "closest_pairs.png": pairs,
    }
    if track:
        metrics["registry"] = _track_filter(
            name, spec, params, metrics, figures, table_csv, metrics_json
        )
    with atomic_path(plots_dir, is_dir=True) as tmp:
        for fname, fig in figures.items():
            save_figure(fig, tmp / fname)
    write_json(metrics_json, metrics)
    logger.info(
        "filter@%s: kept %d of %d (memorised %d); KID %s",
        name,
        metrics["kept"],
        metrics["candidates"],
        mem.counts()["any"],
        None if kid_kept is None else f"{kid_kept['mean']:.4f}",
    )
    return metrics


def _read_run(model_dir: Path | str) -> dict[str, Any]:
    from lusaug.generators.tracking import read_run_file

    return read_run_file(model_dir)


def _track_filter(
    name: str,
    spec: GeneratorSpec,
    params: Params,
    metrics: dict[str, Any],
    figures: dict[str, Any],
    table_csv: Path | str,
    metrics_json: Path | str,
) -> dict[str, Any]:
    """Log the filter into the generator's MLflow run, then update the registry.

    Headline metrics and the scatter go on the generator run (so the MLflow compare view lines
    generators up); the thresholds and all figures go on a nested ``filter-<G>`` run, because a
    re-filter with other thresholds must not change a logged param.
    """
    import mlflow

    from lusaug.generators.tracking import numeric_metrics, register_best_generator, run_exists

    _setup_mlflow(params)
    run_id = metrics.get("mlflow_run_id")
    flat = numeric_metrics(
        {
            k: metrics[k]
            for k in (
                "candidates",
                "kept",
                "rejected",
                "kept_fraction",
                "rejected_by_reason",
                "memorisation",
                "kid",
                "kid_all_candidates",
                "kid_real_val_reference",
                "fid",
            )
            if metrics.get(k) is not None
        },
        "filter.",
    )
    tags = _tags(name, spec, params)
    with mlflow.start_run(
        run_id=run_id if run_exists(run_id) else None, run_name=f"generate-{name}"
    ):
        mlflow.set_tags(tags)
        mlflow.log_metrics(flat)
        mlflow.log_figure(figures["filter_scatter.png"], "filter/filter_scatter.png")
        with mlflow.start_run(run_name=f"filter-{name}", nested=True):
            mlflow.set_tags(tags)
            mlflow.log_params(as_flat_dict(params.filter, "filter."))
            mlflow.log_metrics(flat)
            for fname, fig in figures.items():
                mlflow.log_figure(fig, f"filter/{fname}")
            mlflow.log_artifact(str(table_csv), "filter")
            mlflow.log_dict(dict(metrics), "filter/metrics.json")
    if not params.filter.register:
        return {"status": "disabled (filter.register = false)"}
    all_metrics, not_comparable = [metrics], {}
    for g in params.generate.enabled:
        path = Path(metrics_json).with_name(f"synthetic_{g}.json")
        if g == name or not path.exists():
            continue
        other = json.loads(path.read_text())
        # KIDs compare only on the same split and encoder, and only a generator logged in this
        # tracking store can be registered (a metrics file from git may describe another run).
        if other.get("scored_against") != metrics["scored_against"]:
            not_comparable[g] = "scored on other data or another encoder (stale metrics file)"
        elif not run_exists(other.get("mlflow_run_id")):
            not_comparable[g] = "its run is not in this tracking store"
        else:
            all_metrics.append(other)
    summary = register_best_generator(
        all_metrics, params.base.target_class, params.filter.max_memorisation_rate
    )
    if not_comparable:
        summary["not_comparable"] = not_comparable
    return summary


def score_basis(splits_csv: Path | str, encoder_dir: Path | str) -> dict[str, str]:
    """What a generator's KID was measured against: the split and the encoder (sha256s)."""
    encoder = hashlib.sha256()
    for f in sorted(Path(encoder_dir).rglob("*")):
        if f.is_file():
            encoder.update(f"{f.relative_to(encoder_dir)}:{sha256_file(f)}".encode())
    return {"splits_sha256": sha256_file(splits_csv), "encoder_sha256": encoder.hexdigest()}
