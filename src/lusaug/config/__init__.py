"""One typed config object, read from ``params.yaml``.

Every stage reads its sections through :func:`load_params`; unknown or missing keys fail loudly so
a typo in ``params.yaml`` or a ``dvc exp run -S`` override never goes unnoticed. Profiles
(``profiles/<name>.yaml``) are partial overlays that ``lusaug profile NAME`` merges into
``params.yaml``. The sections live beside the stages that read them: ``data`` (base, phantom,
import, frames, split, validate), ``training`` (train, evaluate, tune), ``generators`` (base_model,
generate, filter) and ``serving`` (register, export, serve, mlflow).
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
    FINETUNE_METHODS,
    GENERATOR_KINDS,
    SAMPLERS,
    TI_TEMPLATES,
    TRAIN_SETS,
    BaseModelParams,
    DdpmParams,
    EncoderParams,
    FilterParams,
    FinetuneParams,
    GenerateParams,
    GeneratorSpec,
    MemorisationParams,
    SamplingParams,
    SharpnessParams,
    TextualInversionParams,
)
from lusaug.config.params import Params, load_params, params_from_dict
from lusaug.config.serving import ExportParams, MlflowParams, RegisterParams, ServeParams
from lusaug.config.training import (
    MODEL_FORMATS,
    PLAIN_STRATEGIES,
    PRECISIONS,
    SYNTHETIC_PREFIX,
    TUNED_STRATEGIES,
    ArchitectureParams,
    AugmentParams,
    EvaluateParams,
    TrainParams,
    TuneParams,
)

__all__ = [
    "FINETUNE_METHODS",
    "GENERATOR_KINDS",
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
    "BaseModelParams",
    "BaseParams",
    "ConfigError",
    "DdpmParams",
    "EncoderParams",
    "EvaluateParams",
    "ExportParams",
    "FilterParams",
    "FinetuneParams",
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
    "SharpnessParams",
    "SplitParams",
    "TextualInversionParams",
    "TrainParams",
    "TuneParams",
    "ValidateParams",
    "as_flat_dict",
    "deep_merge",
    "load_params",
    "params_from_dict",
]
