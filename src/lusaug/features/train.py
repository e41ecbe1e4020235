"""Train the self-supervised encoder on a fold's training frames (all classes, no labels).

:func:`train_ssl` takes an :class:`SslRequest` (the training :class:`FrameTable`, the
``features.ssl`` params, an output folder) and returns an :class:`SslResult`. It refuses any
frame outside the training split (:func:`check_training_only`). Positives are two views of two
frames of one clip (:mod:`lusaug.features.pairs`), augmented by :func:`ssl_view`; the loss is
lightly's NT-Xent (``simclr``), decoupled contrastive (``dcl``) or VICReg (``vicreg``).

After every epoch ``ssl_state.pt`` (weights, optimiser, schedule, losses) is written
atomically; a call with the same inputs and params resumes after the last finished epoch and
ends with the weights an uninterrupted run would have (all draws depend on seed and epoch only).
``encoder.pt`` is written at the end and the state removed; a finished folder whose fingerprint
matches is returned without training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lusaug.core.config.features_sections import SslParams
from lusaug.core.utils import atomic_path
from lusaug.features.augment import ssl_view
from lusaug.features.encoder import (
    INPUT_MEAN,
    INPUT_STD,
    EncoderMeta,
    SslEncoder,
    SslNet,
    to_input,
)
from lusaug.features.frame_table import FrameTable, check_training_only
from lusaug.features.pairs import ClipIndex, epoch_pairs

logger = logging.getLogger(__name__)

ENCODER_FILE = "encoder.pt"
STATE_FILE = "ssl_state.pt"
FINAL_LR_SHARE = 0.01  # the cosine schedule ends at this share of the peak learning rate


@dataclass
class SslRequest:
    frames: FrameTable  # the fold's training frames (every class; labels are not used)
    cfg: SslParams
    out_dir: Path
    progress: bool = True


@dataclass
class SslResult:
    encoder: SslEncoder
    losses: list[float]  # mean loss per epoch
    seconds: float  # wall time of this call
    epochs_trained: int  # epochs this call ran (0 = the finished encoder was reused)
    resumed_from: int  # finished epochs found on disk (0 = fresh start)
    counts: dict[str, int] = field(default_factory=dict)  # frames, clips, patients


def _fingerprint(frames: FrameTable, cfg: SslParams) -> str:
    blob = json.dumps(
        {"cfg": asdict(cfg), "paths": frames.rows["path"].tolist(), "shape": frames.images.shape},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _loss(cfg: SslParams) -> torch.nn.Module:
    from lightly.loss import DCLLoss, NTXentLoss, VICRegLoss

    if cfg.method == "vicreg":
        return VICRegLoss()
    if cfg.method == "dcl":
        return DCLLoss(temperature=cfg.temperature)
    return NTXentLoss(temperature=cfg.temperature)


def _schedule(optimiser: torch.optim.Optimizer, cfg: SslParams, steps_per_epoch: int):
    from lightly.utils.scheduler import cosine_warmup_schedule

    total = cfg.epochs * steps_per_epoch
    warmup = min(cfg.warmup_epochs * steps_per_epoch, total - 1)
    return torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: cosine_warmup_schedule(
            min(step, total - 1), total, 1.0, FINAL_LR_SHARE, warmup, 1.0 / max(warmup, 1)
        ),
    )


@dataclass
class _Run:
    """Everything one training run mutates."""

    net: SslNet
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: torch.nn.Module
    losses: list[float]


def _new_run(cfg: SslParams, steps_per_epoch: int) -> _Run:
    torch.manual_seed(cfg.seed)
    net = SslNet(cfg)
    optimiser = torch.optim.AdamW(
        net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    return _Run(net, optimiser, _schedule(optimiser, cfg, steps_per_epoch), _loss(cfg), [])


def _restore(run: _Run, state_file: Path, fingerprint: str) -> int:
    if not state_file.exists():
        return 0
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    if state.get("fingerprint") != fingerprint:
        logger.info("ssl: %s is from other inputs or params; starting afresh", state_file)
        return 0
    run.net.load_state_dict(state["net"])
    run.optimiser.load_state_dict(state["optimiser"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.losses = [float(v) for v in state["losses"]]
    return int(state["epoch"])


def _train_epoch(run: _Run, images: torch.Tensor, index: ClipIndex, cfg: SslParams, epoch: int):
    gen = torch.Generator().manual_seed(
        int(np.random.default_rng([cfg.seed, epoch]).integers(2**62))
    )
    run.net.train()
    total = 0.0
    batches = epoch_pairs(index, cfg.batch_size, cfg.seed, epoch)
    for pairs in batches:
        views = []
        for column in (0, 1):
            x = images[torch.from_numpy(pairs[:, column])].float() / 255.0
            v = ssl_view(x.unsqueeze(1), cfg.augment, gen)
            views.append(to_input(v, _resolution(cfg, images), INPUT_MEAN, INPUT_STD))
        loss = run.loss_fn(run.net(views[0]), run.net(views[1]))
        run.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        run.optimiser.step()
        run.scheduler.step()
        total += float(loss.detach())
    return total / len(batches)


def _resolution(cfg: SslParams, images: torch.Tensor) -> int:
    return cfg.resolution or int(images.shape[-1])


def _save_state(run: _Run, path: Path, epoch: int, fingerprint: str) -> None:
    state = {
        "net": run.net.state_dict(),
        "optimiser": run.optimiser.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "losses": run.losses,
        "epoch": epoch,
        "fingerprint": fingerprint,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _finished(out_dir: Path, fingerprint: str) -> SslEncoder | None:
    path = out_dir / ENCODER_FILE
    if not path.exists():
        return None
    encoder = SslEncoder.load(path)
    return encoder if encoder.meta.extra.get("fingerprint") == fingerprint else None


def train_ssl(req: SslRequest) -> SslResult:
    """Train (or resume, or reuse) the fold's self-supervised encoder; see the module docstring."""
    check_training_only(req.frames.rows)
    cfg, out_dir = req.cfg, Path(req.out_dir)
    index = ClipIndex.build(req.frames.column("video_id"), req.frames.column("patient_id"))
    patients = sorted(set(index.patient_of_clip))
    counts = {"frames": len(req.frames), "clips": len(index.clips), "patients": len(patients)}
    fingerprint = _fingerprint(req.frames, cfg)
    start = time.perf_counter()
    done = _finished(out_dir, fingerprint)
    if done is not None:
        losses = list(done.meta.extra.get("losses", []))
        return SslResult(done, losses, time.perf_counter() - start, 0, cfg.epochs, counts)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    images = torch.from_numpy(np.ascontiguousarray(req.frames.images))
    steps = len(epoch_pairs(index, cfg.batch_size, cfg.seed, 0))
    run = _new_run(cfg, steps)
    state_file = out_dir / STATE_FILE
    first = _restore(run, state_file, fingerprint)
    bar = tqdm(
        range(first, cfg.epochs), desc="ssl", unit="epoch", disable=not req.progress, initial=first
    )
    for epoch in bar:
        run.losses.append(_train_epoch(run, images, index, cfg, epoch))
        bar.set_postfix(loss=f"{run.losses[-1]:.3f}")
        _save_state(run, state_file, epoch + 1, fingerprint)
    meta = EncoderMeta(
        model=cfg.model,
        kwargs=dict(cfg.kwargs),
        resolution=_resolution(cfg, images),
        num_features=int(run.net.backbone.num_features),
        method=cfg.method,
        extra={
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "losses": run.losses,
            "train_patients": patients,
            "fingerprint": fingerprint,
            **counts,
        },
    )
    encoder = SslEncoder(run.net.backbone, meta)
    encoder.save(out_dir / ENCODER_FILE)
    state_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    logger.info(
        "ssl: %d epochs in %.1f s, last loss %.3f", cfg.epochs - first, seconds, run.losses[-1]
    )
    return SslResult(encoder, run.losses, seconds, cfg.epochs - first, first, counts)
