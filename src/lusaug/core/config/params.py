"""The whole typed config (:class:`Params`) and how it is read from ``params.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lusaug.core.config.data_sections import (
    BaseParams,
    FramesParams,
    ImportParams,
    PhantomParams,
    SplitParams,
    ValidateParams,
)
from lusaug.core.config.generator_sections import (
    CONDITIONAL_KIND,
    BaseModelParams,
    FilterParams,
    GenerateParams,
)
from lusaug.core.config.schema import PARAMS_PATH, ConfigError, build
from lusaug.core.config.serving_sections import (
    ExportParams,
    MlflowParams,
    RegisterParams,
    ServeParams,
)
from lusaug.core.config.training_sections import (
    EvaluateParams,
    FinalParams,
    TrainParams,
    TuneParams,
    parse_strategy,
)


@dataclass(frozen=True)
class Params:
    """Every section of ``params.yaml``; a stage passes each library call only its sections."""

    base: BaseParams
    phantom: PhantomParams
    import_: ImportParams = field(metadata={"key": "import"})
    frames: FramesParams
    split: SplitParams
    validate: ValidateParams
    mlflow: MlflowParams
    train: TrainParams
    evaluate: EvaluateParams
    base_model: BaseModelParams
    generate: GenerateParams
    filter: FilterParams
    tune: TuneParams
    final: FinalParams
    register: RegisterParams
    export: ExportParams
    serve: ServeParams


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build the typed config from a parsed ``params.yaml`` (sections the code does not know fail)."""
    params = build(Params, data, "params")
    _check(params)
    return params


def load_params(path: Path | str | None = None) -> Params:
    """Read and type-check ``params.yaml`` (or ``$LUSAUG_PARAMS``)."""
    path = Path(path) if path is not None else PARAMS_PATH
    if not path.exists():
        raise ConfigError(f"{path} not found: run from the repository root or set LUSAUG_PARAMS")
    with path.open() as fh:
        try:
            data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as err:  # one line: where and what, not the parser's dump
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError(f"{path} is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map section names to sections, got {data!r}")
    return params_from_dict(data)


def _check(p: Params) -> None:
    if p.base.target_class not in p.base.classes:
        raise ConfigError(f"base.target_class {p.base.target_class!r} is not in base.classes")
    unknown = sorted(set(p.import_.prefixes.values()) - set(p.base.classes))
    if unknown:
        raise ConfigError(
            f"import.prefixes must map to classes in base.classes {p.base.classes}, got {unknown}"
        )
    if set(p.phantom.patients) != set(p.base.classes):
        raise ConfigError(
            f"phantom.patients must list every class in base.classes {p.base.classes}, "
            f"got {sorted(p.phantom.patients)}"
        )
    for name in p.train.strategies:
        strategy = parse_strategy(name)
        gen = strategy.generator
        if gen and gen not in p.generate.enabled:
            raise ConfigError(
                f"train.strategies: {name} needs generator {gen!r} in generate.enabled "
                f"{p.generate.enabled}"
            )
        if strategy.kind == "only" and p.generate.generators[gen].kind != CONDITIONAL_KIND:
            raise ConfigError(
                f"train.strategies: {name} trains on every class from {gen!r}, which needs a "
                f"class-conditional generator (kind {CONDITIONAL_KIND}), not "
                f"{p.generate.generators[gen].kind}"
            )
    if p.evaluate.baseline not in p.train.strategies:
        raise ConfigError(f"evaluate.baseline {p.evaluate.baseline!r} is not in train.strategies")
    _check_matrix(p)
    if p.tune.architecture not in p.train.architectures:
        raise ConfigError(f"tune.architecture {p.tune.architecture!r} not in train.architectures")


def _check_matrix(p: Params) -> None:
    """Every setting has the baseline of its architecture to compare with, and the primary
    comparison's two settings are in the training matrix."""
    settings = p.train.settings()
    base_archs = {a for s, a in settings if s == p.evaluate.baseline}
    lonely = sorted(f"{s}-{a}" for s, a in settings if a not in base_archs)
    if lonely:
        raise ConfigError(
            f"train.overrides: {lonely} have no {p.evaluate.baseline!r} of their architecture "
            f"to be compared with (it trains on {sorted(base_archs)})"
        )
    pr = p.evaluate.primary
    for role in ("strategy", "control"):
        name = getattr(pr, role)
        if (name, pr.architecture) not in settings:
            raise ConfigError(
                f"evaluate.primary.{role}: {name}-{pr.architecture} is not in the training "
                "matrix (train.strategies, train.architectures, train.overrides)"
            )
    if pr.strategy == pr.control:
        raise ConfigError(f"evaluate.primary compares {pr.strategy!r} with itself")
