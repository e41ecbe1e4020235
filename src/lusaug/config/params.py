"""The whole typed config (:class:`Params`) and how it is read from ``params.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lusaug.config.core import PARAMS_PATH, ConfigError, build
from lusaug.config.data import (
    BaseParams,
    FramesParams,
    ImportParams,
    PhantomParams,
    SplitParams,
    ValidateParams,
)
from lusaug.config.generators import BaseModelParams, FilterParams, GenerateParams
from lusaug.config.serving import ExportParams, MlflowParams, RegisterParams, ServeParams
from lusaug.config.training import EvaluateParams, TrainParams, TuneParams


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
        data = yaml.safe_load(fh) or {}
    return params_from_dict(data)


def _check(p: Params) -> None:
    if p.base.target_class not in p.base.classes:
        raise ConfigError(f"base.target_class {p.base.target_class!r} is not in base.classes")
    unknown = sorted(set(p.import_.prefixes.values()) - set(p.base.classes))
    if unknown:
        raise ConfigError(f"import.prefixes maps to unknown classes {unknown}")
    if set(p.phantom.patients) != set(p.base.classes):
        raise ConfigError("phantom.patients must list every class in base.classes")
    fr = p.split.fractions
    if set(fr) != {"train", "val", "test"} or abs(sum(fr.values()) - 1.0) > 1e-6:
        raise ConfigError(f"split.fractions must be train/val/test summing to 1, got {fr}")
    if p.split.kfold > 1 and not 0 <= p.split.fold < p.split.kfold:
        raise ConfigError(f"split.fold must be in [0, {p.split.kfold}) when split.kfold > 1")
