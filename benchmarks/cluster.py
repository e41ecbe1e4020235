"""Wall time of `lusaug cluster repro` (1 and 2 local workers) against a plain `dvc repro`.

Each run gets a fresh clone of this repository's HEAD on the chosen profile (phantom data, its own DVC
remote folder and MLflow file), so nothing is adopted from an earlier run or restored from a
run-cache. The variants are interleaved round by round, so a machine shared with other work
slows them alike. The ratio of a 1-worker cluster run to `dvc repro` is the coordination
overhead (a worktree, pulls, pushes and the record per item); 2 workers on 2 cores can at best
halve the stage time.

    python benchmarks/cluster.py --profile micro --rounds 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    "dvc repro": ["dvc", "repro"],
    "cluster, 1 worker": ["lusaug", "cluster", "repro", "--workers", "1", "--dashboard", ""],
    "cluster, 2 workers": ["lusaug", "cluster", "repro", "--workers", "2", "--dashboard", ""],
}


def _env(repo: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "GX_ANALYTICS_ENABLED": "false",
        "HF_HUB_OFFLINE": "1",
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def run(cmd: list[str], repo: Path) -> None:
    subprocess.run(cmd, cwd=repo, env=_env(repo), check=True, capture_output=True)


def fresh_repo(dest: Path, profile: str) -> Path:
    """A clone of this repository's HEAD on ``profile``, the phantom, its own remote folder."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], check=True)
    run(["lusaug", "profile", profile], dest)
    run(["lusaug", "phantom", "--out", "data/raw", "--force"], dest)
    run(["dvc", "commit", "-q", "-f", "data.dvc"], dest)
    run(["dvc", "remote", "add", "-d", "bench", str(dest.parent / "remote")], dest)
    run(["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qam", "bench"], dest)
    return dest


def timed(cmd: list[str], repo: Path) -> float:
    if cmd[:2] == ["lusaug", "cluster"]:  # the bench commit lives in the clone, not its origin
        cmd = [*cmd, "--repo", str(repo)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=repo, env=_env(repo), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="micro")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=list(VARIANTS), help="variants to run")
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {v: [] for v in args.only}
    for r in range(args.rounds):
        for name in args.only:
            work = Path(tempfile.mkdtemp(prefix="lusaug-bench-cluster-"))
            try:
                repo = fresh_repo(work / "repo", args.profile)
                seconds = timed(VARIANTS[name], repo)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            times[name].append(seconds)
            print(f"round {r + 1} {name}: {seconds:.0f} s ({describe()})", flush=True)
    base = min(times.get("dvc repro", [0])) or None
    print(f"\nprofile {args.profile}, {args.rounds} round(s), best of each:")
    for name, values in times.items():
        best = min(values)
        ratio = f" ({best / base:.2f} x dvc repro)" if base else ""
        print(f"  {name}: {best:.0f} s{ratio}  [all: {', '.join(f'{v:.0f}' for v in values)}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
