"""Stage ``final``: train the setting chosen on pooled validation on every patient.

The cross-validation says how well a strategy x architecture generalises; the model that is
registered and served is that setting trained on the final split (every patient trains, a
patient-disjoint validation set stops early; nobody is held out, so there is no test number for
this model: its estimate is the cross-validated one). What a strategy reads besides the frames
was made by DVC: the final split is the last item (``final``) of the per-fold stages, so
``filter@final-<G>`` kept each generator's images on it and ``tune@final`` tuned each tuned
strategy on it. This stage only trains. If the chosen setting's generator is blocked on the
final split (it memorises), the next setting by pooled validation is trained instead, and
``metrics/final.json`` says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import FINAL_FOLD, Params, parse_strategy
from lusaug.core.utils import write_execution, write_json
from lusaug.models import comparison as cmp
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import FILES
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.statistics import HEADLINE, point_metrics, summarise, weighted_metrics
from lusaug.models.strategies import FoldInputs, SkipRun
from lusaug.models.train_loop import train_classifier

logger = logging.getLogger(__name__)

CLASSIFIER = "classifier"  # models/final/classifier: the final model's run folder
CANDIDATE = "candidate.json"  # models/final/candidate.json: what the register stage registers
VAL_SEED_OFFSET = 3003  # bootstrap seed of the final model's validation intervals


@dataclass(frozen=True)
class FinalPaths:
    splits: Path  # data/splits/fold-final.csv
    selection: Path  # metrics/selection.json (evaluate's choice, on validation only)
    out: Path  # models/final (classifier/ and candidate.json)
    metrics: Path  # metrics/final.json
    synthetic: Path | None = None  # data/synthetic/fold-final (filter@final-<G>'s kept images)
    tuned: Path | None = None  # params/tuned/fold-final.yaml (tune@final)
    generator_metrics: Path | None = None  # metrics/fold-final (which generators are blocked)

    def inputs(self) -> FoldInputs:
        """What the final split's items of the per-fold stages made for the strategies."""
        return FoldInputs(self.synthetic, self.tuned, self.generator_metrics)


def read_selection(path: Path | str) -> dict[str, Any]:
    """metrics/selection.json (what the final stage trains)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found: run `dvc repro evaluate` first")
    return json.loads(path.read_text())


def _validation(run_dir: Path, params: Params) -> dict[str, Any]:
    """The final model's validation metrics with patient-bootstrap intervals."""
    import pandas as pd

    classes, cfg = params.base.classes, params.evaluate
    val = pd.read_csv(
        run_dir / FILES["val_predictions"], keep_default_na=False, dtype={"patient_id": str}
    )
    y = val["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    prob = val[[f"prob_{c}" for c in classes]].to_numpy(dtype=float)
    videos = val["video_id"].to_numpy()
    design = cmp.design_for(val, classes, cfg, params.base.seed + VAL_SEED_OFFSET)
    w = design.frame_weights(val["patient_id"].astype(str).to_numpy())
    pt, dr = point_metrics(y, prob, classes, videos), weighted_metrics(y, prob, w, classes, videos)
    out = {}
    for m in [*HEADLINE, *(f"recall_{c}" for c in classes)]:
        s = summarise(pt[m], dr[m], cfg.ci)
        out[f"val_{m}"], out[f"val_{m}_lo"], out[f"val_{m}_hi"] = s["value"], s["lo"], s["hi"]
    return out


def final_tracking(tracking: RunTracking | None, strategy: str, arch: str) -> RunTracking | None:
    """The final refit's MLflow run: named ``final-<strategy>-<arch>``, tagged
    ``lusaug.role=final`` and outside the fold groups (no parent), so the UI never compares it
    with the fold runs of the same setting, whose names are ``<strategy>-<arch>-<seed>``."""
    if tracking is None:
        return None
    return dataclasses.replace(tracking, run_name=f"final-{strategy}-{arch}", role="final")


def run(
    paths: FinalPaths, params: Params, *, tracking: RunTracking | None = None
) -> dict[str, Any]:
    """Train the chosen setting on the final split; write ``paths.out`` and ``paths.metrics``.

    ``params`` gives the base, train, final and evaluate sections. ``tracking`` logs the run to
    MLflow (None = off).
    """
    out_dir = Path(paths.out)
    selection = read_selection(paths.selection)
    values = selection["settings"]  # the best first; ties keep the chosen one first
    order = sorted(values, key=lambda k: (k != selection["chosen"]["setting"], -values[k], k))
    data = FoldData.load(paths.splits, params.base)
    inputs = paths.inputs()
    passed_over: dict[str, str] = {}
    for setting in order:
        strategy_name, arch = setting.rsplit("-", 1)
        strategy = parse_strategy(strategy_name)
        try:
            spec = RunSpec(strategy.name, arch, params.final.seed)
            setup = prepare_run(spec, data, params.train, params.base, inputs)
        except SkipRun as err:
            logger.warning("final: %s passed over: %s", setting, err)
            passed_over[setting] = str(err)
            continue
        run_dir = out_dir / CLASSIFIER
        result = train_classifier(
            setup,
            run_dir,
            params.train,
            params.base.classes,
            resume=True,
            tracking=final_tracking(tracking, strategy.name, arch),
        )
        summary = {
            "setting": setting,
            "strategy": strategy.name,
            "architecture": arch,
            "seed": params.final.seed,
            "chosen_by": {"metric": selection["metric"], "value": selection["settings"][setting]},
            "passed_over": passed_over,
            "checkpoint": (run_dir / FILES["checkpoint"]).as_posix(),
            "best_epoch": result.best_epoch,
            "train_frames": len(setup.train),
            "synthetic_frames": setup.n_synthetic,
            "validation": _validation(run_dir, params),
        }
        write_json(paths.metrics, summary)
        execution = {"mlflow_run_id": result.mlflow_run_id}
        write_execution(paths.metrics, execution)
        name = f"final-{setting}-{params.final.seed}"
        candidate = {
            "strategy": strategy.name,
            "architecture": arch,
            "seed": params.final.seed,
            "checkpoint": summary["checkpoint"],
            "model": setup.meta.model,
            "best_epoch": result.best_epoch,
            **summary["validation"],
        }
        write_json(out_dir / CANDIDATE, {name: candidate})
        write_execution(out_dir / CANDIDATE, {name: execution})
        return {**summary, **execution}
    raise DataError(f"no setting could be trained on the {FINAL_FOLD} split: {passed_over}")
