"""Imbalance strategies: one name selects the loss weights, the sampler and the training frames.

========================  =======================================================================
``baseline``              plain cross-entropy, shuffled batches
``class_weights``         cross-entropy with w_i = N / N_i (N training frames, N_i of class i), the
                          study's inverse frequency: 814/571/468/27 frames -> 2.31/3.29/4.02/69.63
``class_weights_norm``    the same weights scaled to mean 1 (same direction, a gentler loss scale)
``oversample``            plain loss, batches drawn with replacement, p(frame) proportional to 1/N_i
``class_weights_tuned``   weights and lr that the fold's ``tune`` stage found
``synthetic-<G>``         plain loss; G's kept images join the rare class's training frames
``oversample_matched-<G>`` plain loss; the real rare-class training frames repeated so that an
                          epoch holds exactly as many rare-class images as ``synthetic-<G>``'s
                          (real + G's kept images it uses); the same-share control of it
``synthetic_replace-<G>`` plain loss; the rare class's real training frames are replaced by G's
                          kept images (does the synthetic set alone carry the class?)
``synthetic_tuned-<G>``   G's candidates that pass the filter at the thresholds the fold's ``tune``
                          stage found, with the weights and lr it found with them
``synthetic_only-<G>``    plain loss; no real frame: a class-conditional G's kept images of every
                          class (train on synthetic, test on real, as CheXGenBench does)
========================  =======================================================================

Everything a strategy reads besides the fold's frames is a per-fold file (:class:`FoldInputs`).
A generator whose filter blocked it (it memorises its training frames), or that kept no image in
the fold, is never used: its runs raise :class:`SkipRun` with the reason (``synthetic-<G>`` and
``oversample_matched-<G>`` alike, so the pair stays comparable).

Why ``oversample_matched-<G>``: adding G's images raises the rare class's share of training,
and that alone raises rare-class recall. The matched control has the same share, made of real
frames, so the difference between the two is what G's images show. Every frame of the training
set is drawn once per epoch (a shuffled permutation), so the counts per epoch are exact, not in
expectation: :func:`matched_repeats` gives each real rare-class frame its number of copies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from lusaug.core.config import Strategy
from lusaug.core.errors import LusaugError
from lusaug.models.frame_sets import DataError

KEPT_DIR = "kept"  # data/synthetic/fold-<k>/<G>/kept: the filter's output
CANDIDATES_DIR = "candidates"  # data/synthetic/fold-<k>/<G>/candidates: the generator's output
GENERATOR_METRICS = "synthetic_{generator}.json"  # metrics/fold-<k>/: the filter's verdict


class StrategyError(DataError):
    """A strategy whose extra input is missing or unusable; the message says which."""


class SkipRun(LusaugError):
    """A run that must not train (e.g. its generator is blocked); the message is the reason."""


@dataclass(frozen=True)
class FoldInputs:
    """Where one fold's strategy inputs live (None = the fold has none of that kind)."""

    synthetic_dir: Path | None = None  # data/synthetic/fold-<k> (<G>/kept, <G>/candidates)
    tuned: Path | None = None  # params/tuned/fold-<k>.yaml
    generator_metrics: Path | None = None  # metrics/fold-<k> (synthetic_<G>.json)


@dataclass(frozen=True)
class Tuned:
    """What the tune stage found for one strategy (a section of params/tuned/fold-<k>.yaml)."""

    class_weights: dict[str, float]
    lr: float | None
    architecture: str  # the family the study trained (the report says so for the others)
    kept: list[str] | None = None  # synthetic_tuned: candidate files passing the thresholds


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


def sample_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-frame sampling weights 1 / N_class (each class equally likely per draw)."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[labels]


def read_tuned(path: Path | str | None, strategy: str, classes: list[str]) -> Tuned:
    """The tuned values of ``strategy`` from a fold's tuned file (written by ``tune@<fold>``)."""
    if path is None or not Path(path).exists():
        raise StrategyError(
            f"strategy {strategy} needs the fold's tuned file {path}, which the `tune` stage "
            "writes: run `dvc repro` (it runs tune@<fold> first)"
        )
    with Path(path).open() as fh:
        data = yaml.safe_load(fh) or {}
    entry = data.get(strategy) if isinstance(data, dict) else None
    if not isinstance(entry, dict):
        raise StrategyError(
            f"{path} has no section {strategy!r} (it has {sorted(data)}): the tune stage tunes "
            "every tuned strategy listed in train.strategies; run `dvc repro`"
        )
    if "skipped" in entry:  # tune found nothing to tune (e.g. no candidate passes the filter)
        raise SkipRun(f"{strategy}: {entry['skipped']}")
    weights = entry.get("class_weights")
    if not isinstance(weights, dict) or any(c not in weights for c in classes):
        raise StrategyError(f"{path}: {strategy}.class_weights must give every class {classes}")
    w = np.array([float(weights[c]) for c in classes])
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise StrategyError(f"{path}: class weights must be positive numbers, got {w.tolist()}")
    lr = entry.get("lr")
    kept = entry.get("filter", {}).get("kept") if isinstance(entry.get("filter"), dict) else None
    return Tuned(
        class_weights={c: float(weights[c]) for c in classes},
        lr=None if lr is None else float(lr),
        architecture=str(entry.get("architecture", "")),
        kept=None if kept is None else [str(f) for f in kept],
    )


def check_generator(inputs: FoldInputs, generator: str) -> None:
    """Raise :class:`SkipRun` when the fold's filter blocked ``generator``."""
    if inputs.generator_metrics is None:
        return
    path = Path(inputs.generator_metrics) / GENERATOR_METRICS.format(generator=generator)
    if not path.exists():
        raise StrategyError(
            f"{path} not found: run `dvc repro` (filter@<fold>-{generator} writes it)"
        )
    verdict = json.loads(path.read_text())
    if verdict.get("blocked"):
        raise SkipRun(
            f"generator {generator} is blocked in this fold: {verdict.get('blocked_reason')}"
        )


def synthetic_files(
    inputs: FoldInputs, strategy: Strategy, tuned: Tuned | None = None
) -> list[Path]:
    """The synthetic PNGs a generator strategy trains on, sorted (the filter's kept images, or
    the candidates at the tuned thresholds for ``synthetic_tuned-<G>``)."""
    if inputs.synthetic_dir is None:
        raise StrategyError(f"strategy {strategy.name} needs the fold's synthetic folder")
    root = Path(inputs.synthetic_dir) / strategy.generator
    how = f"run `dvc repro` (generate@<fold>-{strategy.generator} and filter@ write it)"
    if strategy.kind == "synthetic_tuned":
        if tuned is None or tuned.kept is None:
            raise StrategyError(f"{strategy.name}: the tuned file lists no kept candidates")
        files = [root / CANDIDATES_DIR / name for name in tuned.kept]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise StrategyError(f"{strategy.name}: candidates {missing[:3]} not found; {how}")
    else:
        folder = root / KEPT_DIR
        if not folder.is_dir():
            raise StrategyError(f"synthetic images of {strategy.generator!r}: no {folder}; {how}")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    if not files:  # a fold's outcome, not a broken input: the setting reports it unavailable
        raise SkipRun(
            f"{strategy.name}: no synthetic image passed the filter in this fold ({root}); "
            "loosen filter.* or train the generator longer"
        )
    return sorted(files)


def synthetic_class_files(
    inputs: FoldInputs, strategy: Strategy, classes: list[str], target: str
) -> dict[str, list[Path]]:
    """Per class, the kept images ``synthetic_only-<G>`` trains on: the rare class's in
    ``<G>/kept``, every other class's in ``<G>/kept/<class>`` (a class-conditional G's)."""
    files = {target: synthetic_files(inputs, strategy)}
    kept = Path(inputs.synthetic_dir or "") / strategy.generator / KEPT_DIR
    for label in classes:
        if label == target:
            continue
        folder = kept / label
        if not folder.is_dir():
            raise StrategyError(
                f"{strategy.name}: no {folder}: {strategy.generator!r} did not sample class "
                f"{label!r} (only a class-conditional generator does; see generate.generators)"
            )
        files[label] = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if not files[label]:
            raise SkipRun(f"{strategy.name}: no synthetic {label} image passed the filter")
    return files


def matched_repeats(n_real: int, target: int, seed: int) -> np.ndarray:
    """Copies per epoch of each of ``n_real`` real rare-class frames so that they total exactly
    ``target``: every frame ``target // n_real`` times, the remainder once more each for a seeded
    choice of frames (the same choice for the same seed)."""
    if n_real < 1 or target < n_real:
        raise StrategyError(
            f"oversample_matched needs real rare-class training frames and a target of at least "
            f"as many; got {n_real} frames for {target}"
        )
    reps = np.full(n_real, target // n_real, dtype=np.int64)
    extra = np.random.default_rng(seed).choice(n_real, size=target % n_real, replace=False)
    reps[extra] += 1
    return reps


@dataclass(frozen=True)
class TrainingPlan:
    """What a strategy changes in training."""

    strategy: Strategy
    loss_weights: list[float] | None  # per-class cross-entropy weights (None = unweighted)
    oversample: bool  # draw batches with p proportional to 1 / N_class
    lr: float | None  # learning-rate override (tuned), None = train.lr


def plan_for(
    strategy: Strategy, counts: np.ndarray, classes: list[str], tuned: Tuned | None = None
) -> TrainingPlan:
    """Turn a strategy and the training class counts into loss weights and sampling.

    Args:
        strategy: Parsed strategy.
        counts: Training frames per class (after synthetic images were added or swapped in).
        classes: Class names in label order.
        tuned: The tuned values of a tuned strategy (the fold's file, or a tuning trial's).
    """
    if strategy.name in ("class_weights", "class_weights_norm"):
        w = inverse_frequency_weights(counts, classes)
        if strategy.name == "class_weights_norm":
            w = normalise_weights(w)
        return TrainingPlan(strategy, w.tolist(), False, None)
    if strategy.name == "oversample":
        inverse_frequency_weights(counts, classes)  # same check: every class has frames
        return TrainingPlan(strategy, None, True, None)
    if strategy.tuned:
        if tuned is None:
            raise StrategyError(f"strategy {strategy.name} needs its tuned values")
        missing = [c for c in classes if c not in tuned.class_weights]
        if missing:
            raise StrategyError(f"tuned class weights lack classes {missing}")
        return TrainingPlan(strategy, [tuned.class_weights[c] for c in classes], False, tuned.lr)
    return TrainingPlan(strategy, None, False, None)
