"""Imbalance strategies: one name selects the loss weights, the sampler and extra training data.

=====================  ==========================================================================
``baseline``           plain cross-entropy, shuffled batches
``class_weights``      cross-entropy with w_i = N / N_i (N training frames, N_i of class i), the
                       study's inverse frequency: 814/571/468/27 frames -> 2.31/3.29/4.02/69.63
``class_weights_norm`` the same weights scaled to mean 1 (same direction, a gentler loss scale)
``oversample``         plain loss, batches drawn with replacement, p(frame) proportional to 1/N_i
``class_weights_tuned`` weights (and optionally ``lr``) from the tune stage's YAML file
``synthetic-<G>``      plain loss; the kept images of generator G join the rare class's training
                       frames (``synthetic:<G>`` is an alias; DVC matrix names avoid the colon)
=====================  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lusaug.config import PLAIN_STRATEGIES, SYNTHETIC_PREFIX, TUNED_STRATEGIES
from lusaug.models.data import DataError

DEFAULT_TUNED_PATH = Path("params/tuned.yaml")


class StrategyError(DataError):
    """Raised for an unknown strategy or one whose extra input is missing."""


@dataclass(frozen=True)
class Strategy:
    name: str  # canonical name (the run-folder and MLflow tag value)
    kind: str  # plain | tuned | synthetic
    generator: str = ""  # G of synthetic-<G>


def parse_strategy(name: str) -> Strategy:
    """Canonical :class:`Strategy` for a name; ``synthetic:<G>`` becomes ``synthetic-<G>``."""
    if name.startswith(("synthetic:", SYNTHETIC_PREFIX)):
        gen = (
            name.split(":", 1)[1]
            if name.startswith("synthetic:")
            else name[len(SYNTHETIC_PREFIX) :]
        )
        if not gen or any(ch in gen for ch in "-:/"):
            raise StrategyError(f"strategy {name!r}: generator name must be non-empty, no -:/")
        return Strategy(f"{SYNTHETIC_PREFIX}{gen}", "synthetic", gen)
    if name in PLAIN_STRATEGIES:
        return Strategy(name, "plain")
    if name in TUNED_STRATEGIES:
        return Strategy(name, "tuned")
    known = [*PLAIN_STRATEGIES, *TUNED_STRATEGIES, f"{SYNTHETIC_PREFIX}<generator>"]
    raise StrategyError(f"unknown strategy {name!r}; expected one of {known}")


def inverse_frequency_weights(counts: np.ndarray | list[int], classes: list[str]) -> np.ndarray:
    """The study's class weights w_i = N / N_i (N = all training frames)."""
    counts = np.asarray(counts, dtype=np.float64)
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise StrategyError(f"class weights need training frames of every class; none of {empty}")
    return counts.sum() / counts


def normalise_weights(weights: np.ndarray) -> np.ndarray:
    """Scale weights to mean 1."""
    return weights / weights.mean()


def read_tuned(path: Path | str, classes: list[str]) -> tuple[np.ndarray, float | None]:
    """Class weights (in class order) and optional learning rate from the tune stage's YAML.

    The file holds ``class_weights: {<class>: <weight>, ...}`` and optionally ``lr: <float>``;
    other keys (e.g. the tuned filter thresholds) are ignored here.
    """
    path = Path(path)
    if not path.exists():
        raise StrategyError(
            f"strategy class_weights_tuned needs {path}, which the `tune` stage writes: run "
            f"`dvc repro tune` first (or pass --tuned PATH to a file with class_weights: "
            f"{{class: weight}})"
        )
    with path.open() as fh:
        data = yaml.safe_load(fh) or {}
    weights = data.get("class_weights") if isinstance(data, dict) else None
    if not isinstance(weights, dict):
        raise StrategyError(f"{path}: expected a mapping `class_weights: {{class: weight}}`")
    missing = [c for c in classes if c not in weights]
    if missing:
        raise StrategyError(f"{path}: class_weights lacks classes {missing}")
    w = np.array([float(weights[c]) for c in classes])
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise StrategyError(f"{path}: class weights must be positive numbers, got {w.tolist()}")
    lr = data.get("lr")
    return w, (float(lr) if lr is not None else None)


@dataclass(frozen=True)
class TrainingPlan:
    """What a strategy changes in training."""

    strategy: Strategy
    loss_weights: list[float] | None  # per-class cross-entropy weights (None = unweighted)
    oversample: bool  # draw batches with p proportional to 1 / N_class
    lr: float | None  # learning-rate override (tuned), None = train.lr


def plan_for(
    strategy: Strategy,
    counts: np.ndarray,
    classes: list[str],
    tuned_path: Path | str | None = None,
    tuned_weights: dict[str, float] | None = None,
) -> TrainingPlan:
    """Turn a strategy and the training class counts into loss weights and sampling.

    Args:
        strategy: parsed strategy.
        counts: training frames per class (after any synthetic images were added).
        classes: class names in label order.
        tuned_path: the tune stage's YAML (class_weights_tuned), default params/tuned.yaml.
        tuned_weights: explicit loss weights that override the strategy's own for any strategy
            (the tune objective passes them; missing classes are an error).
    """
    if tuned_weights is not None:
        # explicit weights win for any strategy: the tune stage tunes them for class_weights_tuned
        # and, together with the filter thresholds, for synthetic-<G>
        missing = [c for c in classes if c not in tuned_weights]
        if missing:
            raise StrategyError(f"explicit class weights lack classes {missing}")
        w = np.array([float(tuned_weights[c]) for c in classes])
        return TrainingPlan(strategy, w.tolist(), strategy.name == "oversample", None)
    if strategy.name in ("class_weights", "class_weights_norm"):
        w = inverse_frequency_weights(counts, classes)
        if strategy.name == "class_weights_norm":
            w = normalise_weights(w)
        return TrainingPlan(strategy, w.tolist(), False, None)
    if strategy.name == "oversample":
        inverse_frequency_weights(counts, classes)  # same check: every class has frames
        return TrainingPlan(strategy, None, True, None)
    if strategy.kind == "tuned":
        w, lr = read_tuned(tuned_path or DEFAULT_TUNED_PATH, classes)
        return TrainingPlan(strategy, w.tolist(), False, lr)
    return TrainingPlan(strategy, None, False, None)


def sample_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-frame sampling weights 1 / N_class (each class equally likely per draw)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[labels]
