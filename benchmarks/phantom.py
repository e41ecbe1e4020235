"""Benchmark: wall time of `lusaug phantom` (write_phantom) for a params file's phantom section.

Usage:  .venv/bin/python benchmarks/phantom.py [--params params.yaml] [--repeats 3]

Writes the phantom ``--repeats`` times into a temporary folder (rendering, mp4v encoding, the
decode-back check, metadata) and prints one markdown row for BENCHMARKS.md with the median and
best wall time, the data set size, the machine (nproc, load average) and the command. Wall times on
a shared machine are noisy; the load average is printed with the result.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine import describe  # benchmarks/machine.py (the script folder is on sys.path)

from lusaug.core.config import load_params
from lusaug.data.phantom import write_phantom


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    ph = params.phantom
    times = []
    summary: dict = {}
    with tempfile.TemporaryDirectory(prefix="lusaug-phantom-bench-") as tmp:
        for i in range(max(1, args.repeats)):
            start = time.perf_counter()
            summary = write_phantom(Path(tmp) / f"raw{i}", params)
            times.append(time.perf_counter() - start)
    cmd = shlex.join(
        ["python", "benchmarks/phantom.py", *(argv if argv is not None else sys.argv[1:])]
    )
    size = (
        f"{summary['patients']} patients, {summary['clips']} clips, {summary['frames']} frames "
        f"+ {summary['images']} images at {ph.height}x{ph.width}"
    )
    print("| benchmark | data | wall time | machine | command |")
    print("|---|---|---|---|---|")
    print(
        f"| phantom generation (profile `{params.base.profile}`) | {size} "
        f"| {statistics.median(times):.1f} s median of {len(times)} (best {min(times):.1f} s) "
        f"| {describe()} | `{cmd}` |"
    )


if __name__ == "__main__":
    main()
