"""Stage ``filter@k-G``: keep good, non-copied candidates; measure fidelity against real patients.

Every number has its real reference beside it: the study's std/entropy pass rate on real frames,
the sharpness pass rate on real and on blurred real frames, KID and PRDC of real training vs
real validation frames (patient-disjoint: what a perfect generator would score against unseen
patients), the recognition rate of real validation frames. A generator whose memorisation rate
is above ``filter.max_memorisation_rate`` is **blocked**: nothing is kept, ``blocked`` is true in
its metrics (training strategies skip it) and it is never registered. A class-conditional
generator's other classes are screened too. The generator's MLflow run and the registry outcome
go to the metrics file's execution record (``synthetic_<G>.execution.json``), so the metrics
file itself is the same on every run with the same inputs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import (
    CONDITIONAL_KIND,
    BaseParams,
    FilterParams,
    GenerateParams,
    MlflowParams,
)
from lusaug.core.utils import atomic_path, read_execution, write_execution, write_json
from lusaug.generators.filter_candidates import (
    filter_candidates,
    filter_table,
    load_inputs,
    write_kept,
)
from lusaug.generators.filter_classes import filter_other_classes
from lusaug.generators.filter_report import filter_figures, filter_metrics
from lusaug.generators.filter_tracking import track_filter
from lusaug.generators.frame_io import check_validation
from lusaug.generators.plots import save_figure
from lusaug.generators.run_context import get_spec, label_of, score_basis, set_threads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterPaths:
    splits: Path  # data/splits/fold-<k>.csv
    model: Path  # models/fold-<k>/generators/<G>
    candidates: Path  # data/synthetic/fold-<k>/<G>/candidates
    encoder: Path  # models/fold-<k>/encoder
    kept: Path  # data/synthetic/fold-<k>/<G>/kept
    table: Path  # data/synthetic/fold-<k>/<G>/filter.csv
    metrics: Path  # metrics/fold-<k>/synthetic_<G>.json
    plots: Path  # plots/fold-<k>/synthetic/<G>
    validation: Path | None = None  # metrics/validation.json (must have passed)


def run(
    paths: FilterPaths,
    name: str,
    base: BaseParams,
    cfg: FilterParams,
    gen: GenerateParams,
    mlflow_cfg: MlflowParams,
    *,
    fold: int | str | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Filter generator ``name``'s candidates and score them; returns the metrics it wrote with
    its execution record (MLflow run, registry outcome)."""
    spec = get_spec(gen, name)
    check_validation(paths.validation)
    set_threads(gen.threads)
    inp = load_inputs(spec, paths.splits, paths.model, paths.candidates, paths.encoder, base)
    res = filter_candidates(name, inp, cfg)
    write_kept(paths.kept, inp, res)
    with atomic_path(paths.table) as tmp:
        filter_table(inp, res, cfg).to_csv(tmp, index=False)

    metrics = filter_metrics(name, inp, res, base, cfg, paths.encoder, fold)
    if spec.kind == CONDITIONAL_KIND:  # synthetic_only-<G> trains on every class of it
        metrics["other_classes"] = filter_other_classes(
            paths.candidates, paths.kept, paths.splits, inp, res, base, cfg
        )
    metrics["scored_against"] = score_basis(paths.splits, paths.encoder)
    generated = read_execution(paths.model)
    execution = {k: generated.get(k) for k in ("mlflow_run_id", "model_uri")}
    figures = filter_figures(label_of(name, spec), base.target_class, inp, res, cfg)
    if track:
        tracked = {**metrics, **execution}
        execution["registry"] = track_filter(
            name, gen, cfg, mlflow_cfg, tracked, figures, paths.table, paths.metrics
        )
    with atomic_path(paths.plots, is_dir=True) as tmp:
        for fname, fig in figures.items():
            save_figure(fig, tmp / fname)
    write_json(paths.metrics, metrics)
    write_execution(paths.metrics, execution)
    logger.info(
        "filter@%s: kept %d of %d (memorised %d)%s",
        name,
        metrics["kept"],
        len(inp.cands),
        res.mem.counts()["any"],
        " BLOCKED" if res.blocked else "",
    )
    return {**metrics, **execution}
