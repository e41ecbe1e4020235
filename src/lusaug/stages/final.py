"""Stage ``final``: train the setting chosen on pooled validation on every patient.

The cross-validation says how well a strategy x architecture generalises; the model that is
registered and served is that setting refit on the final split (every patient trains, a
patient-disjoint validation set stops early; nobody is held out, so there is no test number for
this model: its estimate is the cross-validated one). What the strategy learns besides the
classifier is refit too, exactly as the per-fold stages do, into the final model's folder
(:func:`refit_inputs`: the generator of a synthetic strategy with its encoder, base and filter,
the study of a tuned strategy). If the chosen setting's generator is blocked on the final split
(it memorises), the next setting by pooled validation is refit instead, and ``metrics/final.json``
says so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lusaug.core.config import Params, Strategy, parse_strategy
from lusaug.core.utils import write_execution, write_json
from lusaug.generators.generator import TEXT_KINDS
from lusaug.models import comparison as cmp
from lusaug.models.frame_sets import DataError
from lusaug.models.mlflow_runs import RunTracking
from lusaug.models.run_files import FILES
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.statistics import HEADLINE, point_metrics, summarise, weighted_metrics
from lusaug.models.strategies import GENERATOR_METRICS, FoldInputs, SkipRun
from lusaug.models.train_loop import train_classifier
from lusaug.stages import base_model, encoder, generate, tune
from lusaug.stages import filter as filter_stage

logger = logging.getLogger(__name__)

CLASSIFIER = "classifier"  # models/final/classifier: the final model's run folder
CANDIDATE = "candidate.json"  # models/final/candidate.json: what the register stage registers
VAL_SEED_OFFSET = 3003  # bootstrap seed of the final model's validation intervals
# Inside models/final: what the refit of a synthetic or tuned strategy writes.
ENCODER, BASE, GENERATORS, SYNTHETIC, METRICS = (
    "encoder",
    "base_model",
    "generators",
    "synthetic",
    "metrics",
)
TUNED, TUNE_PLOTS, CHECKPOINTS, PLOTS = "tuned.yaml", "tune_plots", "checkpoints", "plots"


@dataclass(frozen=True)
class FinalPaths:
    splits: Path  # data/splits/final.csv
    selection: Path  # metrics/selection.json (evaluate's choice, on validation only)
    out: Path  # models/final (classifier/, and what its strategy refits)
    metrics: Path  # metrics/final.json
    validation: Path | None = None  # metrics/validation.json (generators refuse a failed split)


def read_selection(path: Path | str) -> dict[str, Any]:
    """metrics/selection.json (what the final stage refits)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} not found: run `dvc repro evaluate` first")
    return json.loads(path.read_text())


def refit_inputs(
    strategy: Strategy, paths: FinalPaths, params: Params, tracking_uri: str | None
) -> FoldInputs:
    """Train the generator (with its base, encoder and filter) and/or the study ``strategy``
    needs on the final split, as the per-fold stages do."""
    out, p, gen = paths.out, params, params.generate
    synthetic, metrics = out / SYNTHETIC, out / METRICS
    if strategy.generator:
        g = strategy.generator
        enc = encoder.EncoderPaths(
            paths.splits, out / ENCODER, metrics / "encoder.json", paths.validation
        )
        encoder.run(
            enc, p.base, p.train, p.filter.encoder, p.mlflow, enabled=[g], threads=gen.threads
        )
        base_paths = base_model.BaseModelPaths(
            paths.splits, out / BASE, out / CHECKPOINTS / BASE, paths.validation
        )
        if gen.generators[g].kind in TEXT_KINDS:
            base_model.run(base_paths, p.base, p.base_model, gen, p.mlflow, resume=True)
        candidates = synthetic / g / "candidates"
        gen_paths = generate.GeneratePaths(
            paths.splits,
            base_paths.out,
            out / GENERATORS / g,
            candidates,
            out / CHECKPOINTS / g,
            paths.validation,
        )
        generate.run(gen_paths, g, p.base, gen, p.mlflow, resume=True)
        filter_paths = filter_stage.FilterPaths(
            splits=paths.splits,
            model=gen_paths.model,
            candidates=candidates,
            encoder=enc.out,
            kept=synthetic / g / "kept",
            table=synthetic / g / "filter.csv",
            metrics=metrics / GENERATOR_METRICS.format(generator=g),
            plots=out / PLOTS / g,
            validation=paths.validation,
        )
        filter_stage.run(
            filter_paths, g, p.base, p.filter, gen, p.mlflow, track=tracking_uri is not None
        )
    inputs = FoldInputs(synthetic, out / TUNED, metrics)
    if strategy.tuned:
        train = dataclasses.replace(p.train, strategies=[strategy.name])
        tune_paths = tune.TunePaths(
            paths.splits, out / TUNED, out / TUNE_PLOTS, synthetic, metrics
        )
        tune.run(tune_paths, p.base, train, p.tune, fold="final", tracking_uri=tracking_uri)
    return inputs


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


def run(
    paths: FinalPaths, params: Params, *, tracking: RunTracking | None = None
) -> dict[str, Any]:
    """Refit the chosen setting on the final split; write ``paths.out`` and ``paths.metrics``.

    ``params`` is the whole config: the final model refits the stages its strategy needs.
    ``tracking`` logs the refit runs to MLflow (None = off).
    """
    out_dir = Path(paths.out)
    selection = read_selection(paths.selection)
    values = selection["settings"]  # the best first; ties keep the chosen one first
    order = sorted(values, key=lambda k: (k != selection["chosen"]["setting"], -values[k], k))
    data = FoldData.load(paths.splits, params.base)
    uri = tracking.tracking_uri if tracking is not None else None
    passed_over: dict[str, str] = {}
    for setting in order:
        strategy_name, arch = setting.rsplit("-", 1)
        strategy = parse_strategy(strategy_name)
        try:
            inputs = refit_inputs(strategy, paths, params, uri)
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
    raise DataError(f"no setting could be refit on the final split: {passed_over}")
