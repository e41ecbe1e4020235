"""Benchmark: classifier training and evaluation throughput, and the wall time of one train run.

Usage:  .venv/bin/python benchmarks/train.py [--params params.yaml] [--steps 12]
            [--run-frames 1500] [--precisions fp32 bf16]

1. Training images/s of each ``train.architectures`` family at ``base.image_size``: the real
   training step (augmentation, forward under accelerate autocast, weighted loss, backward, AdamW,
   scheduler) at ``train.batch_size`` with ``train.threads`` threads, per precision.
2. Evaluation images/s (``predict_proba`` at ``evaluate.batch_size``, fp32).
3. With ``--run-frames N`` (0 = skip): ``python pipelines/train.py`` end to end (imports, data,
   MLflow into a temporary SQLite store, outputs) for each family on a stand-in data set of about
   N training frames, wall time and peak RSS, and the estimate for the whole default matrix.

Prints markdown rows for BENCHMARKS.md. Wall times on a shared machine are noisy; the load average
is printed with the results.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

from lusaug.core.config import PROJ_ROOT, Params, load_params
from lusaug.models.augment import augment_batch
from lusaug.models.classifier import ClassifierMeta, build_classifier
from lusaug.models.epochs import make_accelerator
from lusaug.models.frame_sets import predict_proba, to_input
from tests.helpers.toy import write_toy_dataset


def _machine() -> str:
    return describe(f"torch {torch.__version__}")


def _meta(params: Params, arch: str) -> ClassifierMeta:
    return ClassifierMeta.for_architecture(params, arch)


def train_images_per_s(
    params: Params, arch: str, precision: str, steps: int
) -> tuple[float, float]:
    """Images per wall second and per CPU second of the real training step (medians of
    ``steps`` steps after 3 warm-up steps). On a busy shared machine the CPU-second figure is
    the better estimate of an idle machine's speed with one thread."""
    cfg = params.train
    acc = make_accelerator(precision)
    torch.manual_seed(0)
    meta = _meta(params, arch)
    model = build_classifier(meta)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model, opt = acc.prepare(model, opt)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    b, s = cfg.batch_size, params.base.image_size
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (b, 1, s, s), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, len(meta.classes), (b,), generator=gen)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.ones(len(meta.classes)))
    model.train()
    times, cpu = [], []
    for i in range(steps + 3):
        t, c = time.perf_counter(), time.process_time()
        x = to_input(augment_batch(images.float() / 255.0, cfg.augment, gen), meta.mean, meta.std)
        with acc.autocast():
            logits = model(x.to(acc.device))
        loss = loss_fn(logits.float(), labels.to(acc.device))
        acc.backward(loss)
        if cfg.grad_clip > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if i >= 3:
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    times.sort()
    cpu.sort()
    return b / times[len(times) // 2], b / cpu[len(cpu) // 2]


def eval_images_per_s(params: Params, arch: str, n: int = 1024) -> tuple[float, float]:
    torch.manual_seed(0)
    meta = _meta(params, arch)
    model = build_classifier(meta).eval()
    s = params.base.image_size
    images = torch.randint(0, 256, (n, 1, s, s), dtype=torch.uint8)
    predict_proba(model, images[:64], meta.mean, meta.std, params.evaluate.batch_size)  # warm-up
    t, c = time.perf_counter(), time.process_time()
    predict_proba(model, images, meta.mean, meta.std, params.evaluate.batch_size)
    return n / (time.perf_counter() - t), n / (time.process_time() - c)


def run_wall_times(params_path: Path, params: Params, frames: int) -> list[tuple[str, float]]:
    """``pipelines/train.py`` end to end per family on ~``frames`` training frames."""
    out = []
    with tempfile.TemporaryDirectory(prefix="lusaug-bench-") as tmp:
        root = Path(tmp)
        per_patient = 20  # 2 videos x 10 frames
        n_train = max(1, round(frames / (per_patient * len(params.base.classes))))
        patients = {
            "train": {c: n_train for c in params.base.classes},
            "val": {c: max(1, n_train // 3) for c in params.base.classes},
            "test": {c: max(1, n_train // 3) for c in params.base.classes},
        }
        write_toy_dataset(
            root / "data",
            params.base.classes,
            params.base.image_size,
            patients,
            videos_per_patient=2,
            frames_per_video=10,
        )
        (root / "params.yaml").write_text(params_path.read_text())
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}")
        for arch in params.train.architectures:
            cmd = [sys.executable, str(PROJ_ROOT / "pipelines" / "train.py"), "data/splits.csv",
                   f"models/classifiers/baseline-{arch}-0", "--strategy", "baseline",
                   "--arch", arch, "--seed", "0"]  # fmt: skip
            t = time.perf_counter()
            proc = subprocess.run(
                cmd, check=False, cwd=root, env=env, capture_output=True, text=True
            )
            if proc.returncode != 0:
                raise SystemExit(f"{shlex.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            out.append((arch, time.perf_counter() - t))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=PROJ_ROOT / "params.yaml")
    ap.add_argument("--steps", type=int, default=12, help="timed training steps per setting")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--run-frames", type=int, default=1500, help="0 = skip the end-to-end runs")
    ap.add_argument("--threads", type=int, default=None, help="override train.threads")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    params = load_params(args.params)
    if args.threads is not None:
        params = dataclasses.replace(
            params, train=dataclasses.replace(params.train, threads=args.threads)
        )
    if params.train.threads > 0:
        torch.set_num_threads(params.train.threads)
    command = "python benchmarks/train.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n<!-- {stamp}; {_machine()} -->")
    print(f"Command: `{command}` ({params.base.image_size} px, batch {params.train.batch_size}, "
          f"{params.train.threads} threads)\n")  # fmt: skip
    print(
        "| architecture | timm model | params (M) | precision | train img/s (wall) | "
        "train img/CPU-s | eval img/s (wall) | eval img/CPU-s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arch, a in params.train.architectures.items():
        n_params = sum(p.numel() for p in build_classifier(_meta(params, arch)).parameters())
        ev, ev_cpu = eval_images_per_s(params, arch)
        for prec in args.precisions:
            tr, tr_cpu = train_images_per_s(params, arch, prec, args.steps)
            evs = f"{ev:.0f} | {ev_cpu:.0f}" if prec == args.precisions[0] else "- | -"
            print(f"| {arch} | {a.model} | {n_params / 1e6:.2f} | {prec} | {tr:.0f} | "
                  f"{tr_cpu:.0f} | {evs} |", flush=True)  # fmt: skip
    if args.run_frames > 0:
        print(f"\nOne `pipelines/train.py` run end to end (imports, ~{args.run_frames} training "
              f"frames, up to {params.train.epochs} epochs, MLflow incl. model logging: "
              f"{params.train.log_model}):\n")  # fmt: skip
        print("| architecture | wall s |")
        print("|---|---|")
        walls = run_wall_times(args.params, params, args.run_frames)
        for arch, wall in walls:
            print(f"| {arch} | {wall:.1f} |", flush=True)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        t = params.train
        n_runs = len(t.strategies) * len(t.seeds)
        total = sum(w for _, w in walls) * n_runs
        print(f"\nPeak RSS of a run: {rss:.0f} MB. Default matrix estimate: {n_runs} runs per "
              f"family x {len(walls)} families = {total / 60:.1f} min of training.")  # fmt: skip


if __name__ == "__main__":
    main()
