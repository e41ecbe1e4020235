"""Generator benchmark: base training img/s, TI steps/s, sampling img/s per sampler, quality.

    .venv/bin/python benchmarks/generators.py --splits data/splits/fold-0.csv \
        --base models/fold-0/base_model --ddpm models/fold-0/generators/ddpm_all \
        --metrics metrics/fold-0 [--steps 20] [--n 16] [--out FILE.md]

- base: ``--steps`` optimiser steps of a fresh base (``base_model`` from params.yaml) on the
  fold's other-class training frames -> training images/s;
- TI: ``--steps`` textual-inversion steps on ``--base`` -> steps/s;
- sampling: ``--n`` images from the ``--ddpm`` generator with DDPM-1000, DDIM-50 and
  DPM-Solver++-20, and from the base with DPM-Solver++-20 under classifier-free guidance;
- quality: one row per ``synthetic_<G>.json`` in ``--metrics`` (filter@G's figures beside their
  real references).

Prints Markdown (command, machine, load first); ``--out`` also writes it to a file. Wall times on
a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

from lusaug.core.config import load_params
from lusaug.generators import frame_io
from lusaug.generators.generator import Generator
from lusaug.generators.run_context import set_threads
from lusaug.generators.text_base import base_training_data, train_base
from lusaug.generators.text_to_image import TextToImage
from lusaug.generators.textual_inversion import train_textual_inversion

SAMPLERS = [("ddpm", 1000), ("ddim", 50), ("dpmsolver++", 20)]


def _f(v, digits=3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def quality_rows(metrics_dir: Path) -> list[str]:
    """One Markdown row per generator of a fold."""
    rows = [
        (
            "| generator | kept / cand. | memorised (copy d) | blocked | recognition (real val) "
            "| KID to val [real train→val interval] | precision / coverage (real ref) "
            "| study filter pass: samples / real train | sharp pass: samples / real / blurred |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(metrics_dir.glob("synthetic_*.json")):
        m = json.loads(path.read_text())
        kid, ref = m.get("kid") or {}, m.get("kid_real_reference") or {}
        p, pr = m.get("prdc") or {}, m.get("prdc_real_reference") or {}
        sp, st = m["sharpness"]["pass_rate"], m["study_filter_pass_rate"]

        def prc(d):
            return (
                f"{_f(d['precision']['value'], 2)} / {_f(d['coverage']['value'], 2)}" if d else "–"
            )

        rows.append(
            f"| {m['generator']} | {m['kept']} / {m['candidates']} "
            f"| {_f(m['memorisation']['rate'], 2)} ({_f(m['memorisation'].get('copy_distance'), 2)}) "
            f"| {m['blocked']} | {_f(m['recognition']['rate'], 2)} "
            f"({_f(m['recognition_real_val']['rate'], 2)}) "
            f"| {_f(kid.get('mean'), 2)} [{_f(ref.get('low'), 2)}, {_f(ref.get('high'), 2)}] "
            f"| {prc(p)} ({prc(pr)}) | {_f(st['candidates'], 2)} / {_f(st['real_train'], 2)} "
            f"| {_f(sp['candidates'], 2)} / {_f(sp['real_train'], 2)} / "
            f"{_f(sp['real_train_blurred'], 2)} |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=Path, required=True)
    ap.add_argument("--base", type=Path, help="a trained base_model folder")
    ap.add_argument("--ddpm", type=Path, help="a trained pixel DDPM generator folder")
    ap.add_argument("--metrics", type=Path, help="a fold's metrics folder (synthetic_*.json)")
    ap.add_argument("--steps", type=int, default=20, help="training steps timed")
    ap.add_argument("--n", type=int, default=16, help="images sampled per sampler")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    p = load_params()
    set_threads(p.generate.threads)
    lines = [
        f"`python benchmarks/{' '.join([Path(__file__).name, *sys.argv[1:]])}`",
        "",
        f"Machine: {describe()}",
        "",
    ]
    splits = frame_io.read_splits(args.splits)
    data = base_training_data(splits, p.base.target_class, p.base.classes)
    images = frame_io.load_frames(data.rows, args.splits, p.base.image_size)
    cfg = dataclasses.replace(p.base_model, train_steps=args.steps, checkpoint_every=0)
    _, res = train_base(images, data, cfg, 0, progress=False)
    lines.append(
        f"- base training ({cfg.resolution} px, widths {cfg.block_out_channels}, batch "
        f"{cfg.batch_size}): {res.images_per_second:.1f} images/s, "
        f"{res.seconds / args.steps:.2f} s/step"
    )
    if args.base:
        rare = frame_io.load_frames(
            frame_io.class_frames(splits, p.base.target_class), args.splits, p.base.image_size
        )
        t2i = TextToImage.load(args.base)
        ti = train_textual_inversion(
            t2i, rare, p.generate.ti, "object", 0, train_steps=args.steps, progress=False
        )
        lines.append(
            f"- textual inversion (batch {p.generate.ti.batch_size}): "
            f"{ti.steps_per_second:.2f} steps/s"
        )
        t0 = time.perf_counter()
        t2i.sample(["covid lung ultrasound"] * args.n, 0, 20, p.base_model.guidance_scale)
        lines.append(
            f"- base sampling, DPM-Solver++-20 with guidance: "
            f"{args.n / (time.perf_counter() - t0):.2f} images/s"
        )
    if args.ddpm:
        gen = Generator.load(args.ddpm)
        lines += ["", "| sampler (pixel DDPM) | images/s |", "|---|---|"]
        for sampler, steps in SAMPLERS:
            t0 = time.perf_counter()
            gen.sample(args.n if sampler != "ddpm" else 2, 0, sampler, steps)
            n = args.n if sampler != "ddpm" else 2
            lines.append(f"| {sampler}-{steps} | {n / (time.perf_counter() - t0):.2f} |")
    if args.metrics:
        lines += ["", *quality_rows(args.metrics)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
