"""Generator benchmark: DDPM training speed and the sampler quality-speed table.

    .venv/bin/python benchmarks/generators.py [--splits data/splits.csv] [--train-steps N]
        [--n 100] [--ddpm-n 32] [--out FILE.md]

Trains one DDPM (``generate.ddpm`` from params.yaml, on every training frame of
``base.target_class``: the ``ddpm_all`` set), then samples it with DDPM-1000, DDIM-50 and
DPM-Solver++-20 and reports images/s and the KID (domain-encoder space, vs the real training
frames of the class; mean ± std over subsets and the 2.5-97.5 % interval). Target: a fast sampler
at least 40x faster than DDPM-1000 with its KID inside DDPM-1000's interval (or below it: lower
is better).

Needs ``data/splits.csv`` + frames (``make run`` or ``dvc repro validate``) and uses
``models/encoder`` when present (else trains the encoder here). Prints Markdown (command, machine,
load first); ``--out`` also writes it to a file. Wall times on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)


def _kid_cell(k) -> str:
    return f"{k.mean:.4f} ± {k.std:.4f} [{k.low:.4f}, {k.high:.4f}]"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=Path, default=Path("data/splits.csv"))
    ap.add_argument("--encoder", type=Path, default=Path("models/encoder"))
    ap.add_argument("--train-steps", type=int, default=None, help="default: generate.ddpm")
    ap.add_argument("--n", type=int, default=100, help="images per fast sampler")
    ap.add_argument("--ddpm-n", type=int, default=32, help="images for DDPM-1000 (slow)")
    ap.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    import torch

    from lusaug.config import load_params
    from lusaug.generators import data as gdata
    from lusaug.generators.ddpm import train_ddpm
    from lusaug.generators.fidelity import extract_features, kid, load_encoder, train_encoder
    from lusaug.generators.sampling import sample_ddpm
    from lusaug.generators.stages import set_threads

    params = load_params()
    set_threads(params)
    if not args.splits.exists():
        raise SystemExit(f"{args.splits} not found: run `make run` (or `dvc repro validate`)")
    splits = gdata.read_splits(args.splits)
    size, target = params.base.image_size, params.base.target_class
    real = gdata.load_frames(gdata.class_frames(splits, target), args.splits, size)
    if (args.encoder / "encoder.pt").exists():
        encoder, _ = load_encoder(args.encoder)
    else:
        train = splits[splits["split"] == "train"]
        imgs = gdata.load_frames(train, args.splits, size)
        labels = np.array([params.base.classes.index(c) for c in train["label"]])
        encoder, _ = train_encoder(
            imgs, labels, params.base.classes, params.filter.encoder, params.base.seed
        )
    f_real = extract_features(encoder, real)
    cfg = params.generate.ddpm
    steps = args.train_steps or cfg.train_steps
    cfg = dataclasses.replace(cfg, train_steps=steps, checkpoint_every=0)
    unet, sched, res = train_ddpm(real, cfg, params.base.seed)
    fk = params.filter

    subset = min(fk.kid_subset_size, args.ddpm_n)  # one subset size: comparable KIDs
    rows = []
    for sampler, n_steps, n in [
        ("ddpm", cfg.num_train_timesteps, args.ddpm_n),
        ("ddim", 50, args.n),
        ("dpmsolver++", 20, args.n),
    ]:
        t0 = time.perf_counter()
        imgs = sample_ddpm(
            unet,
            sched.config,
            n,
            sampler,
            n_steps,
            params.generate.sampling.batch_size,
            seed=1,
            progress=True,
        )
        dt = time.perf_counter() - t0
        frames = gdata.resize_batch(gdata.from_unit(imgs), size)
        k = kid(extract_features(encoder, frames), f_real, fk.kid_subsets, subset, 0)
        rows.append((f"{sampler}-{n_steps}", n, dt, n / dt, k))
    base_speed = rows[0][3]
    ddpm_kid = rows[0][4]
    cmd = " ".join(["python", "benchmarks/generators.py", *(argv or sys.argv[1:])])
    machine = describe(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    train_line = (
        f"DDPM training ({cfg.resolution} px, widths {cfg.block_out_channels}, "
        f"{cfg.prediction_type}, batch {cfg.batch_size}, {steps} steps on {len(real)} "
        f"{target} training frames): **{res.images_per_second:.1f} images/s** "
        f"({res.seconds:.1f} s)."
    )
    header = (
        "| sampler | images | seconds | images/s | speed-up vs DDPM-1000 "
        "| KID ± std [2.5-97.5 %] | inside DDPM-1000 interval | not worse than DDPM-1000 |"
    )
    lines = [
        "### Generators (benchmarks/generators.py)",
        "",
        f"`{cmd}` on {machine} (shared machine: times are noisy).",
        "",
        train_line,
        "",
        header,
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, n, dt, ips, k in rows:
        inside = ddpm_kid.low <= k.mean <= ddpm_kid.high
        not_worse = k.mean <= ddpm_kid.high  # lower KID is better
        lines.append(
            f"| {name} | {n} | {dt:.1f} | {ips:.2f} | {ips / base_speed:.0f}x | "
            f"{_kid_cell(k)} | {'yes' if inside else 'no'} | "
            f"{'yes' if not_worse else 'no'} |"
        )
    real_half = kid(f_real[::2], f_real[1::2], fk.kid_subsets, subset, 0)
    ref = (
        f"Reference: KID between two halves of the real frames = {_kid_cell(real_half)} "
        "(frames of one video are correlated, so this is a floor)."
    )
    lines += ["", ref]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
