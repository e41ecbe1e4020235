"""Refit what the chosen strategy learns from data on the final split (generator, tuning).

Cross-validation refits everything that learns inside each fold; the final model does the same on
the final split (every patient trains or validates): the generator of a synthetic strategy (with
its encoder and filter) and the study of a tuned strategy are trained again on those patients,
exactly as the per-fold stages do, into the final model's folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lusaug.core.config import Params, Strategy
from lusaug.generators.generator import TEXT_KINDS
from lusaug.generators.stages.base_model import run_base_model
from lusaug.generators.stages.encoder import run_encoder
from lusaug.generators.stages.filter import run_filter
from lusaug.generators.stages.generate import run_generate
from lusaug.models.strategies import GENERATOR_METRICS, FoldInputs
from lusaug.tuning.fold_tuning import tune_fold

ENCODER, BASE, GENERATORS, SYNTHETIC, METRICS = (
    "encoder",
    "base_model",
    "generators",
    "synthetic",
    "metrics",
)
TUNED, TUNE_PLOTS, CHECKPOINTS = "tuned.yaml", "tune_plots", "checkpoints"


def refit_inputs(
    strategy: Strategy,
    splits_csv: Path,
    out_dir: Path,
    params: Params,
    validation_json: Path | None,
    tracking_uri: str | None,
) -> FoldInputs:
    """Train the generator (with its base, encoder and filter) and/or the study ``strategy``
    needs on the final split, as the per-fold stages do."""
    synthetic, metrics = out_dir / SYNTHETIC, out_dir / METRICS
    p, gen = params, params.generate
    if strategy.generator:
        g = strategy.generator
        run_encoder(
            splits_csv, out_dir / ENCODER, metrics / "encoder.json", p.base, p.train,
            p.filter.encoder, p.mlflow, gen.threads, validation_json,
        )  # fmt: skip
        base_dir = out_dir / BASE
        if gen.generators[g].kind in TEXT_KINDS:
            run_base_model(
                splits_csv, base_dir, p.base, p.base_model, p.mlflow, gen.base, gen.threads,
                out_dir / CHECKPOINTS / BASE, True, validation_json,
            )  # fmt: skip
        model_dir, candidates = out_dir / GENERATORS / g, synthetic / g / "candidates"
        run_generate(
            g, splits_csv, base_dir, model_dir, candidates, p.base, gen, p.mlflow,
            out_dir / CHECKPOINTS / g, True, validation_json,
        )  # fmt: skip
        run_filter(
            g, splits_csv, model_dir, candidates, out_dir / ENCODER, synthetic / g / "kept",
            synthetic / g / "filter.csv", metrics / GENERATOR_METRICS.format(generator=g),
            out_dir / "plots" / g, p.base, p.filter, gen, p.mlflow, validation_json,
            track=tracking_uri is not None,
        )  # fmt: skip
    inputs = FoldInputs(synthetic, out_dir / TUNED, metrics)
    if strategy.tuned:
        train = dataclasses.replace(p.train, strategies=[strategy.name])
        tune_fold(
            splits_csv, out_dir / TUNED, out_dir / TUNE_PLOTS, "final", train, p.base, p.tune,
            inputs, tracking_uri=tracking_uri,
        )  # fmt: skip
    return inputs
