"""Small shared helpers: atomic writes, seeding, logging set-up."""

from __future__ import annotations

import contextlib
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
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
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


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically, sorted and indented so diffs stay readable."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


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


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
