"""Sections of the classifier stages (train, tune, evaluate, final) and the strategy names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lusaug.core.config.schema import ConfigError

# Strategy names. Plain ones need only the fold's frames; class_weights_tuned reads the fold's
# tuned file (stage `tune`); the others take a generator G: ``<prefix><G>``.
PLAIN_STRATEGIES = ("baseline", "class_weights", "class_weights_norm", "oversample")
TUNED_STRATEGIES = ("class_weights_tuned",)
SYNTHETIC_PREFIX = "synthetic-"
MATCHED_PREFIX = "oversample_matched-"
GENERATOR_STRATEGIES = {
    SYNTHETIC_PREFIX: "synthetic",  # real frames + G's kept images of the rare class
    "synthetic_replace-": "replace",  # the rare class's real training frames replaced by them
    "synthetic_tuned-": "synthetic_tuned",  # G's candidates at Optuna's thresholds + its weights
    "synthetic_only-": "only",  # every class from a class-conditional G, no real frame
    # the same-share control of synthetic-<G>: real rare-class frames repeated to exactly as many
    # rare-class images per epoch as synthetic-<G> trains on (G's images' count, not content)
    MATCHED_PREFIX: "matched",
}
# The rare-class endpoints a verdict can rest on (lusaug.inference computes them per patient).
RARE_ENDPOINTS = ("recall", "auroc", "ap")


@dataclass(frozen=True)
class Strategy:
    name: str  # canonical name (run folder and MLflow tag value)
    kind: str  # plain | tuned | synthetic | replace | synthetic_tuned | only | matched
    generator: str = ""  # G of a generator strategy

    @property
    def tuned(self) -> bool:
        """Reads the fold's tuned file (stage `tune` writes it)."""
        return self.kind in ("tuned", "synthetic_tuned")


def parse_strategy(name: str) -> Strategy:
    """The :class:`Strategy` a name stands for; ``synthetic:<G>`` is an alias of
    ``synthetic-<G>``."""
    if name.startswith("synthetic:"):
        name = SYNTHETIC_PREFIX + name.split(":", 1)[1]
    for prefix, kind in GENERATOR_STRATEGIES.items():
        if name.startswith(prefix):
            gen = name[len(prefix) :]
            if not gen or any(ch in gen for ch in "-:/"):
                raise ConfigError(f"strategy {name!r}: generator name must be non-empty, no -:/")
            return Strategy(name, kind, gen)
    if name in PLAIN_STRATEGIES:
        return Strategy(name, "plain")
    if name in TUNED_STRATEGIES:
        return Strategy(name, "tuned")
    known = [*PLAIN_STRATEGIES, *TUNED_STRATEGIES, *(f"{p}<G>" for p in GENERATOR_STRATEGIES)]
    raise ConfigError(f"unknown strategy {name!r}; expected one of {known}")


PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # train.precision -> accelerate
MODEL_FORMATS = ("pickle", "pt2")  # mlflow.pytorch.log_model serialization_format


@dataclass(frozen=True)
class ArchitectureParams:
    model: str  # timm model name, built from scratch with in_chans=1 (never downloaded)
    kwargs: dict[str, Any]  # extra timm.create_model kwargs; a null value means the timm default


@dataclass(frozen=True)
class AugmentParams:
    hflip: float  # probability of a left-right flip
    degrees: float  # max rotation in degrees (+/-)
    translate: float  # max shift as a fraction of the side (+/-)
    scale: float  # zoom by 1 +/- this (zooming in is a random crop)
    gain: float  # brightness gain 1 +/- this
    contrast: float  # contrast around the frame mean 1 +/- this
    speckle: float  # std of multiplicative Gaussian speckle noise


@dataclass(frozen=True)
class TrainOverride:
    """One entry of ``train.overrides``: ``strategy`` trains on these architectures and seeds."""

    strategy: str  # a name of train.strategies
    architectures: list[str]  # keys of train.architectures
    seeds: list[int]


@dataclass(frozen=True)
class TrainParams:
    strategies: list[str]  # every strategy trained per fold (see parse_strategy for the names)
    synthetic_per_class: int  # synthetic images a generator strategy uses (0 = all kept)
    seeds: list[int]  # every strategy x architecture is trained once per seed
    architectures: dict[str, ArchitectureParams]  # family name -> timm model
    # per-strategy matrix: a strategy with entries trains exactly the union of their
    # architectures x seeds (instead of train.architectures x train.seeds); [] = none
    overrides: list[TrainOverride]
    epochs: int  # maximum epochs
    patience: int  # early stopping: epochs without a better val macro-F1 (0 = off)
    batch_size: int  # training batch size
    eval_batch_size: int  # validation inference batch size
    lr: float  # AdamW peak learning rate
    weight_decay: float  # AdamW weight decay
    warmup_epochs: float  # linear warm-up length in epochs, then cosine decay
    min_lr_ratio: float  # the cosine ends at lr * min_lr_ratio
    grad_clip: float  # max gradient norm (0 = off)
    precision: str  # fp32 | bf16 | fp16 (fp16 on GPU only)
    threads: int  # torch CPU threads (0 = torch default)
    num_workers: int  # DataLoader workers (0 = in-process, exactly repeatable on CPU)
    log_model: bool  # log the model to MLflow (pytorch flavour with input example)
    log_model_format: str  # pickle | pt2 (torch.export): mlflow.pytorch serialization_format
    augment: AugmentParams  # training-batch augmentation strengths

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"train.{key}: {msg}")

        try:
            parsed = [parse_strategy(name) for name in self.strategies]
        except ConfigError as err:
            raise bad("strategies", str(err)) from None
        if not parsed or len({p.name for p in parsed}) != len(parsed):
            raise bad("strategies", f"need one or more distinct strategies, got {self.strategies}")
        for name in self.architectures:
            if not name or "-" in name or ":" in name or "/" in name:
                raise bad("architectures", f"name {name!r} must be non-empty, no -:/")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise bad("seeds", f"need one or more distinct seeds, got {self.seeds}")
        if not self.architectures:
            raise bad(
                "architectures", f"need at least one architecture family, got {self.architectures}"
            )
        if self.log_model_format not in MODEL_FORMATS:
            raise bad(
                "log_model_format",
                f"must be one of {MODEL_FORMATS}, got {self.log_model_format!r}",
            )
        if self.precision not in PRECISIONS:
            raise bad("precision", f"must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        names = {p.name: p for p in parsed}
        for i, o in enumerate(self.overrides):
            where = f"overrides[{i}]"
            if parse_strategy(o.strategy).name not in names:
                raise bad(where, f"strategy {o.strategy!r} is not in train.strategies")
            unknown = sorted(set(o.architectures) - set(self.architectures))
            if not o.architectures or unknown:
                raise bad(
                    where,
                    f"architectures {o.architectures} must be one or more keys of "
                    f"train.architectures {sorted(self.architectures)}",
                )
            if not o.seeds or len(set(o.seeds)) != len(o.seeds):
                raise bad(where, f"need one or more distinct seeds, got {o.seeds}")

    def runs_of(self, strategy: str) -> list[tuple[str, int]]:
        """(architecture, seed) of every run of ``strategy``, in architecture then seed order."""
        name = parse_strategy(strategy).name
        entries = [o for o in self.overrides if parse_strategy(o.strategy).name == name]
        if not entries:
            return [(a, s) for a in self.architectures for s in self.seeds]
        pairs = {(a, s) for o in entries for a in o.architectures for s in o.seeds}
        order = list(self.architectures)
        return sorted(pairs, key=lambda p: (order.index(p[0]), p[1]))

    def settings(self) -> list[tuple[str, str]]:
        """(strategy, architecture) of every setting, strategies in params order."""
        return [
            (s, a)
            for s in self.strategies
            for a in dict.fromkeys(arch for arch, _ in self.runs_of(s))
        ]

    def seeds_of(self, strategy: str, architecture: str) -> list[int]:
        """The seeds of one setting ([] when the matrix does not train it)."""
        return [s for a, s in self.runs_of(strategy) if a == architecture]


@dataclass(frozen=True)
class PrimaryParams:
    """The pre-registered primary comparison: ``strategy`` vs ``control`` on ``architecture``."""

    strategy: str
    control: str
    architecture: str
    endpoint: str  # the rare-class endpoint the verdict rests on: recall | auroc | ap


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int  # draws of the descriptive percentile patient bootstrap (never a verdict)
    ci: float  # interval level, e.g. 0.95
    stratify: bool  # resample patients within each class (every class stays in every draw)
    baseline: str  # strategy that every other one is compared with (same architecture)
    primary: PrimaryParams  # the pre-registered primary comparison, decided at alpha
    alpha: float  # level of every test (the primary at alpha, the rest Holm-adjusted)
    noninferiority_margin: float  # macro-F1 may be at most this much worse (0.02 = 2 points)
    min_patients_for_bootstrap: int  # fewer patients in a class: the bootstrap is labelled unfit
    max_sign_patterns: (
        int  # exact sign-flip test up to this many patterns (2^n), Monte Carlo beyond
    )
    mc_draws: int  # Monte Carlo sign patterns beyond max_sign_patterns
    power: float  # power of the minimum detectable difference and of the sample size
    target_effect: float  # rare-endpoint difference the sample-size projection sizes for
    seeds_grid: list[int]  # runs per arm the sample-size projection sizes for
    batch_size: int  # test inference batch size
    threads: int  # torch CPU threads (0 = torch default)

    def __post_init__(self) -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"evaluate.{key}: {msg}")

        if self.bootstrap < 1:
            raise bad("bootstrap", f"must be >= 1, got {self.bootstrap}")
        for key in ("ci", "alpha", "power"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise bad(key, f"must be in (0, 1), got {getattr(self, key)}")
        if self.noninferiority_margin < 0:
            raise bad("noninferiority_margin", f"must be >= 0, got {self.noninferiority_margin}")
        if self.target_effect <= 0:
            raise bad("target_effect", f"must be > 0, got {self.target_effect}")
        if self.min_patients_for_bootstrap < 2:
            raise bad(
                "min_patients_for_bootstrap",
                f"must be >= 2, got {self.min_patients_for_bootstrap}",
            )
        for key in ("max_sign_patterns", "mc_draws"):
            if getattr(self, key) < 1:
                raise bad(key, f"must be >= 1, got {getattr(self, key)}")
        if not self.seeds_grid or min(self.seeds_grid) < 1:
            raise bad("seeds_grid", f"need one or more run counts >= 1, got {self.seeds_grid}")
        if self.primary.endpoint not in RARE_ENDPOINTS:
            raise bad(
                "primary.endpoint",
                f"must be one of {RARE_ENDPOINTS}, got {self.primary.endpoint!r}",
            )


@dataclass(frozen=True)
class TuneParams:
    study_name: str  # prefix of the Optuna study name (+ fold, strategy, inputs' fingerprint)
    storage: str  # RDB URL (sqlite:///optuna.db, postgresql://...) or journal:<file>
    n_trials: int  # finished trials per study (a re-run on the same inputs adds none)
    workers: int  # processes sharing a study (1 = this process: byte-identical tuned files)
    sampler_seed: int  # TPE seed; re-derived per trial so a resumed study suggests the same
    n_startup_trials: int  # random trials before TPE models the space
    pruner_startup_trials: int  # MedianPruner: trials completed before pruning starts
    pruner_warmup_epochs: int  # MedianPruner: epochs reported before a trial may be pruned
    architecture: str  # architecture family the study trains (a key of the train section)
    epochs: int  # epochs per trial (0 = the train section's epochs)
    metric: str  # validation metric the objective returns
    viral_recall_floor: float  # constraint: val recall of base.target_class >= this (0 = off)
    class_weight_range: list[float]  # [low, high] of each per-class loss weight (log scale)
    lr_range: list[float]  # [low, high] learning rate (log scale)
    min_std_range: list[float]  # [low, high] of the filter's pixel-std threshold
    min_entropy_range: list[float]  # [low, high] of the filter's grey-entropy threshold (bits)


@dataclass(frozen=True)
class FinalParams:
    metric: str  # pooled VALIDATION metric that chooses the strategy x architecture to refit
    seed: int  # training seed of the final model
