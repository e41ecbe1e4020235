"""Builders and readers for the write-up tests: a finished run's outputs, figures, table rows.

``copy_run`` copies a finished cross-validated run's committed outputs (the metrics, reports,
tuned files and registry record are in git) and writes the figures the write-up copies as small
PNGs (plots/ and models/ are DVC-cached, absent on a fresh clone; one PNG is too big on purpose).
Tests compare the write-up with the JSON it read, so they hold whichever profile made the run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lusaug.core.config import load_params, parse_strategy
from lusaug.reporting.patients import FIGURE as RARE_FIGURE
from lusaug.reporting.study import build_study_report
from lusaug.reporting.synthetic import FILTER_DIR, GENERATOR_FIGURES, TI_FIGURE, TI_KIND
from lusaug.reporting.table3 import EVALUATE_DIR, EVALUATE_FIGURES
from lusaug.reporting.tuned_values import TUNE_FIGURE

# Committed outputs of the run the write-up reads (plots/ and models/fold-*/ are made below).
RUN_FILES = (
    "params.yaml",
    "metrics",  # summary, test, test_runs, comparison, rare_patients, selection, final,
    # validation(_runs), fold-<k>/encoder.json, fold-<k>/synthetic_<G>.json
    "reports/split.json",
    "reports/ingest.json",
    "reports/onnx_parity.json",
    "models/registered.json",
    "params/tuned",  # fold-<k>.yaml
)
BIG_FIGURE = "confusion_grid.png"  # written incompressible and large: the copy must shrink it
BIG_SIZE = (900, 700)


def png(path: Path, size: tuple[int, int] = (40, 30), noise: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    if noise:  # incompressible: about 2 MB as a PNG
        arr = rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)
    else:
        arr = np.full((*size[::-1], 4), 255, np.uint8)
        arr[..., :3] = rng.integers(0, 256, 3, dtype=np.uint8)
    Image.fromarray(arr).save(path)


def read(repo: Path, rel: str) -> Any:
    return json.loads((repo / rel).read_text())


def write(repo: Path, rel: str, data: Any) -> None:
    (repo / rel).write_text(json.dumps(data))


def _make_figures(repo: Path) -> None:
    params = load_params(repo / "params.yaml")
    target = params.base.target_class
    figs = repo / EVALUATE_DIR
    for name, _ in [*EVALUATE_FIGURES, RARE_FIGURE]:
        png(figs / name.format(target=target))
    png(figs / BIG_FIGURE, BIG_SIZE, noise=True)
    for k in params.split.folds:
        for g in params.generate.enabled:
            metrics = repo / f"metrics/fold-{k}/synthetic_{g}.json"
            if not metrics.exists():
                continue
            for name, _ in GENERATOR_FIGURES:
                png(repo / FILTER_DIR.format(k=k, g=g) / name)
            if json.loads(metrics.read_text()).get("kind") == TI_KIND:
                png(repo / TI_FIGURE[0].format(k=k, g=g))
        for s in params.train.strategies:
            if parse_strategy(s).tuned:
                png(repo / TUNE_FIGURE[0].format(k=k, s=s))


def copy_run(source: Path, repo: Path) -> Path | str:
    """Copy the run in ``source`` to ``repo`` plus figures; a reason string when it cannot."""
    missing = [f for f in RUN_FILES if not (source / f).exists()]
    if missing:
        return f"run outputs absent from {source}: {missing}"
    if "test" not in json.loads((source / "metrics" / "test.json").read_text()):
        return f"{source}/metrics/test.json is from the hold-out pipeline: commit a CV run"
    for f in RUN_FILES:
        src, dst = source / f, repo / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
    _make_figures(repo)
    return repo


def build(repo: Path, **kw: Any) -> tuple[Path, str]:
    """Write the report of ``repo`` into repo/docs; (its path, its text)."""
    out = repo / "docs" / "results.md"
    args = {"title": "", "costs_log": None, "conclusion": None, "reference": None, **kw}
    build_study_report(repo, out, repo / "docs" / "img" / "study", **args)
    return out, out.read_text()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def row(text: str, *first: str) -> list[str]:
    """Cells of the first table row whose leading cells are ``first``."""
    for line in text.splitlines():
        if line.startswith("| ") and cells(line)[: len(first)] == list(first):
            return cells(line)
    raise AssertionError(f"no table row starting {first!r}")


def table(text: str, header: str) -> str:
    """The table (paragraph) of ``text`` whose header row starts with ``header``."""
    return next(block for block in text.split("\n\n") if block.startswith(header))


def rows(text: str, *first: str) -> list[list[str]]:
    return [
        cells(line)
        for line in text.splitlines()
        if line.startswith("| ") and cells(line)[: len(first)] == list(first)
    ]


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a '## ' or '### ' title) up to the next heading of the same
    or a higher level."""
    for level in (2, 3):
        marker = f"\n{'#' * level} {heading}\n"
        if marker in text:
            body = text.split(marker, 1)[1]
            return re.split(rf"\n#{{1,{level}}} ", body, maxsplit=1)[0]
    raise AssertionError(f"no section {heading!r}")


def p1(x: float | None) -> str:
    """A fraction in percent with one decimal, as the write-up prints it (written out here
    independently of lusaug.core.markdown)."""
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}".replace("-0.0", "0.0")


def signed(x: float) -> str:
    s = f"{100 * x:+.1f}"
    return "0.0" if s in ("+0.0", "-0.0") else s
