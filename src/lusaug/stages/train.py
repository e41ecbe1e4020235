"""Stage ``train@k``: every planned run of one fold (strategy x architecture x seed), in one process.

One process per fold pays the imports, the MLflow set-up and the frame loading once instead of
once per run. Each run keeps its own resume point: a finished run whose fingerprint (params,
data, strategy inputs) is unchanged is kept as it is, an interrupted one continues from its last
epoch, a changed one starts afresh. So ``dvc exp run -S 'train.seeds=[0,1,2,3]'`` trains only the
new seed's runs, and a run folder no longer in the plan is removed (the folder is a function of
the params). A run whose generator is blocked by the fold's filter writes ``skipped.json`` with
the reason instead of a model.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lusaug.core.config import BaseParams, TrainParams
from lusaug.core.utils import EXECUTION_FILE, write_json
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import FILES
from lusaug.models.run_setup import FoldData, RunSpec, planned_runs, prepare_run
from lusaug.models.strategies import FoldInputs, SkipRun
from lusaug.models.train_loop import is_finished, train_classifier

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    splits: Path  # data/splits/fold-<k>.csv
    out: Path  # models/classifiers/fold-<k> (one folder per run)
    synthetic: Path | None = None  # data/synthetic/fold-<k> (the generators' kept images)
    tuned: Path | None = None  # params/tuned/fold-<k>.yaml (the tuned strategies' values)
    generator_metrics: Path | None = None  # metrics/fold-<k> (which generators are blocked)

    def inputs(self) -> FoldInputs:
        """What the fold's strategies read besides its frames."""
        return FoldInputs(self.synthetic, self.tuned, self.generator_metrics)


@dataclass
class RunOutcome:
    run: str
    status: str  # trained | kept | skipped
    seconds: float
    reason: str = ""


def _is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).exists() for f in FILES.values())


def _skip(run_dir: Path, spec: RunSpec, reason: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in [*FILES.values(), EXECUTION_FILE]:
        (run_dir / name).unlink(missing_ok=True)
    write_json(run_dir / FILES["skipped"], {"run": spec.name, "fold": spec.fold, "reason": reason})


def run(
    paths: TrainPaths,
    base: BaseParams,
    cfg: TrainParams,
    *,
    fold: int,
    tracking: RunTracking | None = None,
    progress: bool = True,
) -> list[RunOutcome]:
    """Train (or keep, or skip with the reason) every planned run of ``fold``.

    Args:
        paths: The fold's split file, run folder and strategy inputs.
        base: The base section.
        cfg: The train section.
        fold: The fold index (tags, logs).
        tracking: MLflow tracking (None = off).
        progress: Progress bars.
    """
    out_dir, inputs = Path(paths.out), paths.inputs()
    out_dir.mkdir(parents=True, exist_ok=True)
    data = FoldData.load(paths.splits, base)
    plan = planned_runs(cfg, fold)
    outcomes: list[RunOutcome] = []
    for spec in tqdm(plan, desc=f"train fold {fold}", unit="run", disable=not progress):
        t0 = time.perf_counter()
        run_dir = out_dir / spec.name
        try:
            setup = prepare_run(spec, data, cfg, base, inputs)
        except SkipRun as err:
            logger.warning("fold %d: %s skipped: %s", fold, spec.name, err)
            _skip(run_dir, spec, str(err))
            outcomes.append(RunOutcome(spec.name, "skipped", 0.0, str(err)))
            continue
        if is_finished(run_dir, setup.fingerprint):
            outcomes.append(RunOutcome(spec.name, "kept", time.perf_counter() - t0))
            continue
        (run_dir / FILES["skipped"]).unlink(missing_ok=True)
        train_classifier(
            setup,
            run_dir,
            cfg,
            base.classes,
            resume=True,
            tracking=tracking,
            progress=progress,
        )
        outcomes.append(RunOutcome(spec.name, "trained", time.perf_counter() - t0))
    planned = {spec.name for spec in plan}
    for stale in sorted(p for p in out_dir.iterdir() if p.name not in planned and _is_run_dir(p)):
        logger.info(
            "fold %d: removing %s (no longer in train.strategies/seeds/architectures)",
            fold,
            stale.name,
        )
        shutil.rmtree(stale)
    return outcomes


def summarise(outcomes: list[RunOutcome]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    return {"runs": len(outcomes), **counts, "seconds": round(sum(o.seconds for o in outcomes), 1)}
