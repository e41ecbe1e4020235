"""Small shared helpers: atomic writes, seeding, logging set-up."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(target: Path | str, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``target``; rename it over ``target`` only on success.

    An interrupted or failing writer leaves the previous ``target`` untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent
        )
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir:
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            if old.exists():
                shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def file_hash(path: Path | str, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path | str) -> str:
    return file_hash(path, "sha256")


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically, sorted and indented so diffs stay readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


# What one execution of a stage was like, not what it made: wall-clock seconds, MLflow run ids,
# registry versions. It sits beside the outputs it describes (``<folder>/execution.json``, or
# ``<name>.execution.json`` beside a file), and .dvcignore keeps it out of DVC's hashes, so two
# runs on the same inputs leave byte-identical outputs (and nothing downstream re-runs).
EXECUTION_FILE = "execution.json"


def execution_path(output: Path | str) -> Path:
    """The execution record of ``output``: inside it when it is a folder, beside it when a file."""
    output = Path(output)
    if output.is_dir() or not output.suffix:
        return output / EXECUTION_FILE
    return output.with_name(f"{output.stem}.{EXECUTION_FILE}")


def write_execution(output: Path | str, info: dict[str, Any]) -> None:
    """Write (or replace) the execution record of ``output``."""
    write_json(execution_path(output), info)


def read_execution(output: Path | str) -> dict[str, Any]:
    """The execution record of ``output`` ({} when there is none, e.g. outputs pulled by DVC)."""
    path = execution_path(output)
    return json.loads(path.read_text()) if path.exists() else {}


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    with contextlib.suppress(ImportError):
        import torch

        torch.manual_seed(seed)


STAGE_COSTS_ENV = "LUSAUG_STAGE_COSTS"


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    record_stage_costs()


def record_stage_costs() -> None:
    """When $LUSAUG_STAGE_COSTS names a file, append this process's wall time and peak memory.

    Every pipeline script calls this (through ``setup_logging``), so a ``dvc repro`` run with the
    variable set leaves one JSON line per stage (per matrix item) for the runtime/memory table.
    Peak memory is the larger of this process's and its largest child's maximum RSS.
    """
    target = os.environ.get(STAGE_COSTS_ENV)
    if not target:
        return
    import atexit
    import resource
    import sys
    import time

    import psutil

    # From process start, so interpreter and library imports count towards the stage.
    started_at = psutil.Process().create_time()

    def _append() -> None:
        peak_kb = max(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
        line = {
            "script": Path(sys.argv[0]).stem,
            "argv": sys.argv[1:],
            "started": started_at,
            "wall_s": round(time.time() - started_at, 2),
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:  # one short line per process: appends do not interleave
            fh.write(json.dumps(line) + "\n")

    atexit.register(_append)
