"""One typed config object, read from ``params.yaml``.

Every stage reads its sections through :func:`load_params`; unknown or missing keys fail loudly so
a typo in ``params.yaml`` or a ``dvc exp run -S`` override never goes unnoticed. Profiles
(``profiles/<name>.yaml``) are partial overlays that ``lusaug profile NAME`` merges into
``params.yaml``. The sections live beside the stages that read them: ``data`` (base, phantom,
import, frames, split, validate), ``training`` (train, evaluate, tune), ``generators`` (generate,
filter) and ``serving`` (register, export, serve, mlflow).
"""

from lusaug.config.core import (
    PARAMS_PATH,
    PROFILES_DIR,
    PROJ_ROOT,
    ConfigError,
    as_flat_dict,
    deep_merge,
)
from lusaug.config.data import (
    BaseParams,
    FramesParams,
    ImportParams,
    PhantomParams,
    SplitParams,
    ValidateParams,
)
from lusaug.config.generators import (
    GENERATOR_KINDS,
    SAMPLERS,
    TI_TEMPLATES,
    TRAIN_SETS,
    DdpmParams,
    EncoderParams,
    FilterParams,
    GenerateParams,
    GeneratorSpec,
    MemorisationParams,
    SamplingParams,
    TextualInversionParams,
)
from lusaug.config.params import Params, load_params, params_from_dict
from lusaug.config.serving import ExportParams, MlflowParams, RegisterParams, ServeParams
from lusaug.config.training import (
    GENERATOR_STRATEGIES,
    MODEL_FORMATS,
    PLAIN_STRATEGIES,
    PRECISIONS,
    SYNTHETIC_PREFIX,
    TUNED_STRATEGIES,
    ArchitectureParams,
    AugmentParams,
    EvaluateParams,
    FinalParams,
    Strategy,
    TrainParams,
    TuneParams,
    parse_strategy,
)

__all__ = [
    "GENERATOR_KINDS",
    "GENERATOR_STRATEGIES",
    "MODEL_FORMATS",
    "PARAMS_PATH",
    "PLAIN_STRATEGIES",
    "PRECISIONS",
    "PROFILES_DIR",
    "PROJ_ROOT",
    "SAMPLERS",
    "SYNTHETIC_PREFIX",
    "TI_TEMPLATES",
    "TRAIN_SETS",
    "TUNED_STRATEGIES",
    "ArchitectureParams",
    "AugmentParams",
    "BaseParams",
    "ConfigError",
    "DdpmParams",
    "EncoderParams",
    "EvaluateParams",
    "ExportParams",
    "FilterParams",
    "FinalParams",
    "FramesParams",
    "GenerateParams",
    "GeneratorSpec",
    "ImportParams",
    "MemorisationParams",
    "MlflowParams",
    "Params",
    "PhantomParams",
    "RegisterParams",
    "SamplingParams",
    "ServeParams",
    "SplitParams",
    "Strategy",
    "TextualInversionParams",
    "TrainParams",
    "TuneParams",
    "ValidateParams",
    "as_flat_dict",
    "deep_merge",
    "load_params",
    "params_from_dict",
    "parse_strategy",
]
