"""Refit what the chosen strategy learns from data on the final split (generator, tuning).

Cross-validation refits everything that learns inside each fold; the final model does the same on
the final split (every patient trains or validates): the generator of a synthetic strategy (with
its encoder and filter) and the study of a tuned strategy are trained again on those patients,
exactly as the per-fold stages do, into the final model's folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lusaug.config import Params, Strategy
from lusaug.generators.stages import run_encoder, run_filter, run_generate
from lusaug.models.strategies import GENERATOR_METRICS, FoldInputs
from lusaug.tuning.fold_tuning import tune_fold

ENCODER, GENERATORS, SYNTHETIC, METRICS = "encoder", "generators", "synthetic", "metrics"
TUNED, TUNE_PLOTS, CHECKPOINTS = "tuned.yaml", "tune_plots", "checkpoints"


def refit_inputs(
    strategy: Strategy,
    splits_csv: Path,
    out_dir: Path,
    params: Params,
    validation_json: Path | None,
    tracking_uri: str | None,
) -> FoldInputs:
    """Train the generator and/or the study ``strategy`` needs on the final split."""
    synthetic = out_dir / SYNTHETIC
    metrics = out_dir / METRICS
    if strategy.generator:
        g = strategy.generator
        run_encoder(
            splits_csv, out_dir / ENCODER, metrics / "encoder.json", params, validation_json
        )
        model_dir = out_dir / GENERATORS / g
        candidates = synthetic / g / "candidates"
        run_generate(
            g,
            splits_csv,
            model_dir,
            candidates,
            params,
            checkpoint_dir=out_dir / CHECKPOINTS / g,
            resume=True,
            validation_json=validation_json,
        )
        run_filter(
            g,
            splits_csv,
            model_dir,
            candidates,
            out_dir / ENCODER,
            synthetic / g / "kept",
            synthetic / g / "filter.csv",
            metrics / GENERATOR_METRICS.format(generator=g),
            out_dir / "plots" / g,
            params,
            validation_json,
            track=tracking_uri is not None,
        )
    inputs = FoldInputs(synthetic, out_dir / TUNED, metrics)
    if strategy.tuned:
        train = dataclasses.replace(params.train, strategies=[strategy.name])
        tune_fold(
            splits_csv,
            out_dir / TUNED,
            out_dir / TUNE_PLOTS,
            "final",
            train,
            params.base,
            params.tune,
            inputs,
            tracking_uri=tracking_uri,
        )
    return inputs
