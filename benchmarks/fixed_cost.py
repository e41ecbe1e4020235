"""Benchmark: the fixed cost per classifier run, this tree against an older one.

Fixed cost (issue 13's definition) = process start to a run's first training batch, plus DVC's
bookkeeping per stage item, per run. Read from the training log's timestamps: a run's set-up is
the time from the process start (its first run) or from the previous run's "finished" line to its
"***** training" line, which is logged just before the first batch. DVC's bookkeeping per item is
a no-op ``dvc repro`` of an up-to-date repository divided by its items (``--dvc-repo``), spread
over the runs one item trains. Also printed: the whole wall time and the epochs (each run's
execution.json; history.csv in older trees).

- This tree: ``pipelines/train.py`` trains every run of one fold in one process (train@<fold>).
- ``--old-rev REV`` (e.g. f80ecd2): a git worktree of that revision, whose ``pipelines/train.py``
  trains one run per process (train@<strategy>-<arch>-<seed>), on the same frames.

Usage:
    .venv/bin/python benchmarks/fixed_cost.py --runs 9 [--old-rev f80ecd2] [--epochs 1]

It writes the phantom, runs frames and split in a scratch copy, then trains. Prints markdown rows
for BENCHMARKS.md with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml
from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STRATEGIES = ["baseline", "class_weights", "oversample"]
STAMP = re.compile(r"^.*?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO ")


def sh(cmd: list[str], cwd: Path, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def logged(cmd: list[str], cwd: Path, env: dict) -> tuple[float, float]:
    """(wall seconds, set-up seconds before first batches) of one training process."""
    started = datetime.now()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    setup, last = 0.0, started
    for line in (proc.stdout + proc.stderr).splitlines():
        stamp = STAMP.match(line)
        if not stamp:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        if "***** training" in line:
            setup += (when - last).total_seconds()
        elif "INFO lusaug.models.run_files: finished" in line:
            last = when
    return wall, setup


def copy_tree(src: Path, dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=src, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, files):
        if (src / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)
    return dest


def configure(repo: Path, runs: int, epochs: int) -> list[int]:
    """One architecture, the plain strategies, enough seeds for ``runs`` runs."""
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    seeds = list(range(-(-runs // len(STRATEGIES))))
    train = params["train"]
    arch = next(iter(train["architectures"]))
    train.update(strategies=STRATEGIES, seeds=seeds, epochs=epochs, patience=0)
    train["architectures"] = {arch: train["architectures"][arch]}
    for legacy in ("tuned_strategies", "generators"):  # keys of the older tree
        if legacy in train:
            train[legacy] = []
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return seeds


def epoch_seconds(run_dir: Path) -> float:
    """Wall time of a run's epochs: its execution record (older trees: history.csv)."""
    record = run_dir / "execution.json"
    if record.exists():
        return float(sum(json.loads(record.read_text())["epoch_seconds"]))
    return float(pd.read_csv(run_dir / "history.csv")["seconds"].sum())


def env_for(repo: Path) -> dict:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(repo / "src"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "GX_ANALYTICS_ENABLED": "false",
    }


def prepare(repo: Path, runs: int, epochs: int) -> dict:
    env = env_for(repo)
    seeds = configure(repo, runs, epochs)
    sh(
        [str(BIN / "python"), "-m", "lusaug.cli", "phantom", "--out", "data/raw", "--force"],
        repo,
        env,
    )
    sh([str(BIN / "python"), "pipelines/frames.py", "data/raw", "data/frames", "data/frames.csv",
        "reports/ingest.json"], repo, env)  # fmt: skip
    return {"env": env, "seeds": seeds}


def bench_new(repo: Path, runs: int, epochs: int) -> dict:
    ctx = prepare(repo, runs, epochs)
    sh([str(BIN / "python"), "pipelines/split.py", "data/frames.csv", "data/splits",
        "reports/split.json"], repo, ctx["env"])  # fmt: skip
    out = repo / "models/classifiers/fold-0"
    wall, setup = logged([str(BIN / "python"), "pipelines/train.py", "data/splits/fold-0.csv",
                          str(out), "--fold", "0"], repo, ctx["env"])  # fmt: skip
    dirs = sorted(p for p in out.iterdir() if (p / "history.csv").exists())
    trained = sum(epoch_seconds(d) for d in dirs)
    return {"runs": len(dirs), "wall": wall, "epochs": trained, "setup": setup, "items": 1}


def bench_old(repo: Path, runs: int, epochs: int) -> dict:
    ctx = prepare(repo, runs, epochs)
    sh([str(BIN / "python"), "pipelines/split.py", "data/frames.csv", "data/splits.csv",
        "reports/split.json"], repo, ctx["env"])  # fmt: skip
    params = yaml.safe_load((repo / "params.yaml").read_text())
    arch = next(iter(params["train"]["architectures"]))
    wall, setup, trained, n = 0.0, 0.0, 0.0, 0
    for s in STRATEGIES:
        for seed in ctx["seeds"]:
            out = repo / "models/classifiers" / f"{s}-{arch}-{seed}"
            cmd = [str(BIN / "python"), "pipelines/train.py", "data/splits.csv", str(out),
                   "--strategy", s, "--arch", arch, "--seed", str(seed)]  # fmt: skip
            w, su = logged(cmd, repo, ctx["env"])
            wall, setup = wall + w, setup + su
            trained += epoch_seconds(out)
            n += 1
    return {"runs": n, "wall": wall, "epochs": trained, "setup": setup, "items": n}


def dvc_per_item(repo: Path) -> dict:
    """A no-op `dvc repro` of this repository's pipeline (it must be up to date) per item."""
    items = subprocess.run([str(BIN / "dvc"), "stage", "list", "--name-only"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    wall = sh([str(BIN / "dvc"), "repro"], repo, env_for(repo))
    return {"items": len(items), "wall": wall, "per_item": wall / max(len(items), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="classifier runs to train")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per run (short: cost is fixed)")
    ap.add_argument("--old-rev", default="", help="an older revision to compare with")
    ap.add_argument("--dvc-repo", type=Path, help="an up-to-date repo for the no-op repro")
    args = ap.parse_args()
    print(describe())
    rows = []
    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as tmp:
        new = bench_new(copy_tree(ROOT, Path(tmp) / "new"), args.runs, args.epochs)
        rows.append(("this tree (one process per fold)", new))
        if args.old_rev:
            old_dir = Path(tmp) / "old"
            subprocess.run(["git", "worktree", "add", "--detach", str(old_dir), args.old_rev],
                           cwd=ROOT, check=True, capture_output=True)  # fmt: skip
            try:
                rows.append(
                    (
                        f"{args.old_rev} (one process per run)",
                        bench_old(old_dir, args.runs, args.epochs),
                    )
                )
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(old_dir)], cwd=ROOT,
                               check=False, capture_output=True)  # fmt: skip
    dvc = dvc_per_item(args.dvc_repo) if args.dvc_repo else None
    per_item = dvc["per_item"] if dvc else 0.0
    print("| design | runs | DVC items | wall s | epochs s | set-up s per run | + DVC s per run |")
    print("|---|---|---|---|---|---|---|")
    for label, r in rows:
        setup = r["setup"] / r["runs"]
        total = setup + per_item * r["items"] / r["runs"]
        print(f"| {label} | {r['runs']} | {r['items']} | {r['wall']:.1f} | {r['epochs']:.1f} | "
              f"{setup:.2f} | {total:.2f} |")  # fmt: skip
    if dvc:
        print(f"\nno-op dvc repro of {args.dvc_repo}: {dvc['wall']:.1f} s over {dvc['items']} "
              f"items = {per_item:.2f} s per item")  # fmt: skip
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
