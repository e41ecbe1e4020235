"""The ``final`` stage: train the setting chosen on pooled validation on every patient.

The cross-validation says how well a strategy x architecture generalises; the model that is
registered and served is that setting refit on the final split (every patient trains, a
patient-disjoint validation set stops early; nobody is held out, so there is no test number for
this model: its estimate is the cross-validated one). What the strategy learns besides the
classifier is refit too (:mod:`lusaug.final.inputs`). If the chosen setting's generator is
blocked on the final split (it memorises), the next setting by pooled validation is refit
instead, and ``metrics/final.json`` says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from lusaug.core.config import Params, parse_strategy
from lusaug.core.utils import write_json
from lusaug.final.inputs import refit_inputs
from lusaug.models import comparison as cmp
from lusaug.models.evaluate import read_selection
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import FILES
from lusaug.models.statistics import HEADLINE, point_metrics, summarise, weighted_metrics
from lusaug.models.strategies import SkipRun
from lusaug.models.train import FoldData, RunSpec, prepare_run, train_classifier

logger = logging.getLogger(__name__)

CLASSIFIER = "classifier"  # models/final/classifier: the final model's run folder
CANDIDATE = "candidate.json"  # models/final/candidate.json: what the register stage registers
VAL_SEED_OFFSET = 3003  # bootstrap seed of the final model's validation intervals


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


def cv_estimate(setting: str, test_json: Path, comparison_json: Path) -> dict[str, Any]:
    """The cross-validated estimate of a setting and its decision record (for the model card)."""
    test = json.loads(test_json.read_text()) if test_json.exists() else {}
    comp = json.loads(comparison_json.read_text()) if comparison_json.exists() else {}
    entry = comp.get("comparisons", {}).get(setting, {})
    return {
        "metrics": test.get("settings", {}).get(setting, {}),
        "test": test.get("test", {}),
        "decision": entry.get("decision", "baseline (the reference of every comparison)"),
        "decision_reason": entry.get("decision_reason", ""),
    }


def refit_final(
    splits_csv: Path | str,
    selection_json: Path | str,
    out_dir: Path | str,
    metrics_json: Path | str,
    params: Params,
    validation_json: Path | str | None = None,
    cv_files: tuple[Path, Path] | None = None,
    tracking: RunTracking | None = None,
) -> dict[str, Any]:
    """Refit the chosen setting on the final split; write ``out_dir`` and ``metrics_json``.

    Args:
        splits_csv: data/splits/final.csv.
        selection_json: metrics/selection.json (evaluate's choice, on validation only).
        out_dir: models/final (classifier/, and the refit generator or tuned file when needed).
        metrics_json: metrics/final.json.
        params: The whole config: the final model refits the stages it needs.
        validation_json: metrics/validation.json (generators refuse a split that failed it).
        cv_files: (metrics/test.json, metrics/comparison.json): the CV estimate to record.
        tracking: MLflow tracking of the refit runs.
    """
    splits_csv, out_dir = Path(splits_csv), Path(out_dir)
    selection = read_selection(selection_json)
    values = selection["settings"]  # the best first; ties keep the chosen one first
    order = sorted(values, key=lambda k: (k != selection["chosen"]["setting"], -values[k], k))
    data = FoldData.load(splits_csv, params.base)
    uri = tracking.tracking_uri if tracking is not None else None
    passed_over: dict[str, str] = {}
    for setting in order:
        strategy_name, arch = setting.rsplit("-", 1)
        strategy = parse_strategy(strategy_name)
        try:
            inputs = refit_inputs(
                strategy, splits_csv, out_dir, params, Path(validation_json or ""), uri
            )
            spec = RunSpec(strategy.name, arch, params.final.seed)
            setup = prepare_run(spec, data, params.train, params.base, inputs)
        except SkipRun as err:
            logger.warning("final: %s passed over: %s", setting, err)
            passed_over[setting] = str(err)
            continue
        run_dir = out_dir / CLASSIFIER
        result = train_classifier(
            setup, run_dir, params.train, params.base.classes, resume=True, tracking=tracking
        )
        test_json, comparison_json = cv_files or (Path(""), Path(""))
        summary = {
            "setting": setting,
            "strategy": strategy.name,
            "architecture": arch,
            "seed": params.final.seed,
            "chosen_by": {"metric": selection["metric"], "value": selection["settings"][setting]},
            "passed_over": passed_over,
            "checkpoint": (run_dir / FILES["checkpoint"]).as_posix(),
            "best_epoch": result.best_epoch,
            "mlflow_run_id": result.mlflow_run_id,
            "train_frames": len(setup.train),
            "synthetic_frames": setup.n_synthetic,
            "validation": _validation(run_dir, params),
            "cross_validated": cv_estimate(setting, test_json, comparison_json),
        }
        write_json(metrics_json, summary)
        name = f"final-{setting}-{params.final.seed}"
        candidate = {
            "strategy": strategy.name,
            "architecture": arch,
            "seed": params.final.seed,
            "checkpoint": summary["checkpoint"],
            "model": setup.meta.model,
            "best_epoch": result.best_epoch,
            "mlflow_run_id": result.mlflow_run_id,
            **summary["validation"],
            "cross_validated": summary["cross_validated"],
        }
        write_json(out_dir / CANDIDATE, {name: candidate})
        return summary
    raise DataError(f"no setting could be refit on the final split: {passed_over}")
