"""One typed config object, read from ``params.yaml``.

Every stage reads its section through :func:`load_params`; unknown or missing keys fail loudly so a
typo in ``params.yaml`` or a ``dvc exp run -S`` override never goes unnoticed. Profiles
(``profiles/<name>.yaml``) are partial overlays that ``lusaug profile NAME`` merges into
``params.yaml``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJ_ROOT = Path(__file__).resolve().parents[2]
PARAMS_PATH = Path(os.environ.get("LUSAUG_PARAMS", "params.yaml"))
PROFILES_DIR = PROJ_ROOT / "profiles"


class ConfigError(ValueError):
    """Raised when ``params.yaml`` does not match the typed config."""


@dataclass(frozen=True)
class BaseParams:
    seed: int  # global seed; stages derive their own seeds from it
    image_size: int  # square side in px of every frame the pipeline stores and trains on
    classes: list[str]  # class names, in label-index order
    target_class: str  # the rare class that generators synthesise
    workers: int  # worker processes for CPU-parallel stages (frames)
    profile: str  # name of the profile last applied (informational)


@dataclass(frozen=True)
class PhantomParams:
    seed: int  # the phantom is a pure function of this seed and the fields below
    patients: dict[str, int]  # patients per class
    clips_per_patient: list[int]  # [min, max] clips per patient
    frames_per_clip: int  # frames per clip
    fps: float  # frame rate written into the clip
    height: int  # raw clip height in px
    width: int  # raw clip width in px
    linear_fraction: float  # share of patients scanned with a linear probe (rest convex)
    images_per_class: int  # still images per class (like the POCUS image folder)
    difficulty: float  # 0 = textbook signs, 1 = signs as faint as the noise


@dataclass(frozen=True)
class ImportParams:
    prefixes: dict[str, str]  # file-name prefix -> class; longest prefix wins
    metadata_csv: str  # metadata file name inside the imported folder ("" = none)
    include_uncertain: bool  # import label_uncertain/ too
    crop_json: str  # crop-box file name inside the imported folder ("" = none)


@dataclass(frozen=True)
class FramesParams:
    sample_fps: float  # frames per second to keep from a video (0 = use every_n)
    every_n: int  # keep every n-th frame when sample_fps is 0
    max_per_video: int  # cap on frames kept per video (0 = no cap)
    use_crop_json: bool  # apply crop boxes from data/raw/crop.json when present
    auto_crop_black: bool  # trim black/static borders automatically
    black_threshold: int  # grey level below which a row/column counts as border
    min_side: int  # frames smaller than this after cropping are skipped
    min_mean: float  # drop frames with a lower mean grey level (near-black); validate checks it
    max_mean: float  # drop frames brighter than this mean grey level (saturated); validate too
    min_std: float  # drop frames flatter than this grey-level std (blank); validate checks it too


@dataclass(frozen=True)
class SplitParams:
    fractions: dict[str, float]  # train/val/test share of patients per class
    kfold: int  # >1: k-fold by patient; the fold below becomes test
    fold: int  # which fold is the test fold when kfold > 1


@dataclass(frozen=True)
class ValidateParams:
    phash_size: int  # pHash side: hash_size**2 bits (split links patients with the same hash)
    phash_max_distance: int  # two frames within this Hamming distance count as near-identical

    def __post_init__(self) -> None:
        if self.phash_size < 2:
            raise ConfigError(f"validate.phash_size must be >= 2, got {self.phash_size}")
        if not 0 <= self.phash_max_distance < self.phash_size**2:
            raise ConfigError(
                f"validate.phash_max_distance must be in [0, {self.phash_size**2}) for a "
                f"{self.phash_size}x{self.phash_size} hash, got {self.phash_max_distance}"
            )


# --- issue 3 (train, evaluate) section dataclasses go here ---
# Strategy names. Plain ones need only frames and splits (stage `train`); tuned ones also read
# params/tuned.yaml (stage `train_tuned`); `synthetic-<G>` runs (stage `train_synthetic`) add the
# kept images of generator G. `synthetic:<G>` is accepted as an alias of `synthetic-<G>`.
PLAIN_STRATEGIES = ("baseline", "class_weights", "class_weights_norm", "oversample")
TUNED_STRATEGIES = ("class_weights_tuned",)
SYNTHETIC_PREFIX = "synthetic-"
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
class TrainParams:
    strategies: list[str]  # plain strategies (stage train): baseline, class_weights, ...
    tuned_strategies: list[str]  # strategies that read params/tuned.yaml (stage train_tuned)
    generators: list[str]  # G of synthetic-<G> runs (stage train_synthetic)
    synthetic_per_class: int  # synthetic images added to base.target_class (0 = all kept)
    seeds: list[int]  # every strategy x architecture is trained once per seed
    architectures: dict[str, ArchitectureParams]  # family name -> timm model
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

        unknown = sorted(set(self.strategies) - set(PLAIN_STRATEGIES))
        if unknown:
            hint = ""
            if any(s.startswith(("synthetic-", "synthetic:")) for s in unknown):
                hint = "; list generator names in train.generators instead"
            elif set(unknown) & set(TUNED_STRATEGIES):
                hint = "; tuned strategies go in train.tuned_strategies"
            raise bad(
                "strategies", f"unknown {unknown}, expected some of {PLAIN_STRATEGIES}{hint}"
            )
        unknown = sorted(set(self.tuned_strategies) - set(TUNED_STRATEGIES))
        if unknown:
            raise bad(
                "tuned_strategies", f"unknown {unknown}, expected some of {TUNED_STRATEGIES}"
            )
        for name in [*self.generators, *self.architectures]:
            if not name or "-" in name or ":" in name or "/" in name:
                raise bad("generators/architectures", f"name {name!r} must be non-empty, no -:/")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise bad("seeds", f"need one or more distinct seeds, got {self.seeds}")
        if not self.architectures:
            raise bad("architectures", "need at least one architecture family")
        if self.log_model_format not in MODEL_FORMATS:
            raise bad("log_model_format", f"{self.log_model_format!r} not in {MODEL_FORMATS}")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"{self.precision!r} is not one of {sorted(PRECISIONS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise bad("epochs/batch_size", "must be >= 1")


@dataclass(frozen=True)
class EvaluateParams:
    bootstrap: int  # patient-bootstrap draws for every interval and paired difference
    ci: float  # interval level, e.g. 0.95
    stratify: bool  # resample patients within each class (every class stays in every draw)
    baseline: str  # strategy that every other one is compared with (same architecture, seeds)
    batch_size: int  # test inference batch size
    threads: int  # torch CPU threads (0 = torch default)

    def __post_init__(self) -> None:
        if self.bootstrap < 1 or not 0.0 < self.ci < 1.0:
            raise ConfigError("evaluate: bootstrap must be >= 1 and ci in (0, 1)")


# --- issue 4 (generate, filter) section dataclasses go here ---

GENERATOR_KINDS = ("ddpm", "ddpm_conditional", "textual_inversion")
TRAIN_SETS = ("3mixed", "all")
TI_TEMPLATES = ("object", "style")
SAMPLERS = ("ddpm", "ddim", "dpmsolver++")


@dataclass(frozen=True)
class GeneratorSpec:
    kind: str  # ddpm | ddpm_conditional (all classes, sampled for the target) | textual_inversion
    train_set: str  # 3mixed = one frame from each of generate.mixed_patients patients; all
    leaky: bool  # also train on val/test frames (the study's 'all viral'); name must say 'leaky'
    template: str  # textual inversion prompt templates: object | style ("" for DDPMs)


@dataclass(frozen=True)
class DdpmParams:
    resolution: int  # px the UNet works at; samples are resized to base.image_size
    block_out_channels: list[int]  # UNet widths, one per resolution level
    layers_per_block: int  # ResNet layers per UNet block
    attention: bool  # self-attention at the lowest-resolution level
    norm_num_groups: int  # GroupNorm groups (must divide every width)
    num_train_timesteps: int  # diffusion steps T of the forward process
    beta_schedule: str  # DDPMScheduler beta schedule (linear | squaredcos_cap_v2)
    prediction_type: str  # what the UNet predicts: epsilon | v_prediction
    train_steps: int  # optimiser steps per generator
    batch_size: int  # images per step (drawn with replacement: training sets can be tiny)
    learning_rate: float  # AdamW peak learning rate
    lr_warmup_steps: int  # linear warm-up steps before cosine decay
    ema_decay: float  # EMA maximum decay (warm-up power 3/4 ramps towards it)
    hflip: bool  # random horizontal flips as augmentation
    mixed_precision: str  # accelerate mixed precision: no | bf16
    checkpoint_every: int  # steps between checkpoints + sample grids (0 = only at the end)
    checkpoints_total_limit: int  # newest checkpoints kept on disk
    grid_size: int  # images in each checkpoint sample grid


@dataclass(frozen=True)
class SamplingParams:
    sampler: str  # ddpm (ancestral) | ddim | dpmsolver++
    steps: int  # inference steps (ddpm: up to num_train_timesteps)
    candidates: int  # candidates generated per generator (before the filter)
    batch_size: int  # images per denoising batch


@dataclass(frozen=True)
class TextualInversionParams:
    checkpoint: str  # LOCAL diffusers Stable Diffusion folder ("" = TI generators cannot run)
    placeholder_token: str  # the learned token
    initializer: str  # text whose mean token embedding initialises the new vectors
    num_vectors: int  # vectors of the multi-vector token
    resolution: int  # training/generation px (512 for SD 1.x)
    train_steps: int  # optimisation steps
    batch_size: int  # images per step
    learning_rate: float  # AdamW learning rate of the new embedding rows
    inference_steps: int  # denoising steps per candidate
    guidance_scale: float  # classifier-free guidance of candidates
    comparison_text: str  # replaces the token in the without-token comparison grid


@dataclass(frozen=True)
class GenerateParams:
    enabled: list[str]  # generators `dvc repro` runs (the foreach list of generate/filter)
    mixed_patients: int  # N of the 3mixed set (the study: 3)
    threads: int  # torch CPU threads of encoder/generate/filter (0 = torch's default)
    generators: dict[str, GeneratorSpec]  # every known generator by name
    ddpm: DdpmParams
    sampling: SamplingParams
    ti: TextualInversionParams

    def __post_init__(self) -> None:
        unknown = [g for g in self.enabled if g not in self.generators]
        if unknown:
            raise ConfigError(f"generate.enabled names unknown generators {unknown}")
        for name, spec in self.generators.items():
            where = f"generate.generators.{name}"
            if spec.kind not in GENERATOR_KINDS:
                raise ConfigError(f"{where}.kind must be one of {GENERATOR_KINDS}")
            if spec.train_set not in TRAIN_SETS:
                raise ConfigError(f"{where}.train_set must be one of {TRAIN_SETS}")
            if spec.leaky != ("leaky" in name):
                raise ConfigError(
                    f"{where}: a generator is leaky exactly when its name says 'leaky'"
                )
            if spec.kind == "textual_inversion" and spec.template not in TI_TEMPLATES:
                raise ConfigError(f"{where}.template must be one of {TI_TEMPLATES}")
        if self.ddpm.prediction_type not in ("epsilon", "v_prediction"):
            raise ConfigError("generate.ddpm.prediction_type must be epsilon or v_prediction")
        if self.sampling.sampler not in SAMPLERS:
            raise ConfigError(f"generate.sampling.sampler must be one of {SAMPLERS}")


@dataclass(frozen=True)
class EncoderParams:
    width: int  # channels of the first conv block (doubled per block)
    blocks: int  # conv blocks; the feature size is width * 2**(blocks-1)
    epochs: int  # epochs over the training frames of all classes
    batch_size: int  # frames per step
    learning_rate: float  # AdamW learning rate
    balanced: bool  # inverse-frequency class weights in the loss (the rare class matters here)


@dataclass(frozen=True)
class MemorisationParams:
    alpha: float  # Carlini et al.: near-copy when d_nn < alpha * mean d to the n nearest
    n_neighbours: int  # n of that mean (capped by the training-set size)
    max_pixel_distance: float  # also a near-copy when the normalised pixel L2 is <= this
    max_feature_distance: float  # also when 1 - cosine to the nearest feature is <= this (0 = off)


@dataclass(frozen=True)
class FilterParams:
    min_std: float  # keep when the pixel std (grey levels) is above this (the study: 30)
    min_entropy: float  # and the 256-bin grey entropy in bits is above this (the study: 4.7)
    memorisation: MemorisationParams
    encoder: EncoderParams
    kid_subsets: int  # random subsets averaged by KID
    kid_subset_size: int  # images per KID subset (capped by the smaller set)
    closest_pairs: int  # candidate/training pairs shown in the closest-pairs figure
    grid_size: int  # images per sample grid
    register: bool  # register the best generator per class in the MLflow Model Registry
    max_memorisation_rate: float  # a generator above this rate is never registered


# --- issue 5 (tune, register, export, serve) section dataclasses go here ---


@dataclass(frozen=True)
class TuneParams:
    study_name: str  # prefix of the Optuna study name (+ a fingerprint of the objective's inputs)
    storage: str  # RDB URL (sqlite:///optuna.db, postgresql://...) or journal:<file>
    n_trials: int  # trials this run adds (across all workers sharing the storage)
    workers: int  # processes sharing the study in one run (1 = this process only)
    timeout_s: float  # stop starting new trials after this many seconds (0 = no limit)
    sampler_seed: int  # TPE seed (repeatable with one worker)
    n_startup_trials: int  # random trials before TPE models the space
    pruner_startup_trials: int  # MedianPruner: trials completed before pruning starts
    pruner_warmup_epochs: int  # MedianPruner: epochs reported before a trial may be pruned
    architecture: str  # architecture family the study trains (a key of the train section)
    epochs: int  # epochs per trial (0 = the train section's epochs)
    metric: str  # validation metric the objective returns
    viral_recall_floor: float  # constraint: val recall of base.target_class >= this (0 = off)
    class_weight_range: list[float]  # [low, high] of each per-class loss weight (log scale)
    lr_range: list[float]  # [low, high] learning rate (log scale)
    filter_generator: str  # synthetic set whose filter thresholds are tuned ("" = none)
    min_std_range: list[float]  # [low, high] of the filter's pixel-std threshold
    min_entropy_range: list[float]  # [low, high] of the filter's grey-entropy threshold (bits)


@dataclass(frozen=True)
class RegisterParams:
    model_name: str  # registered model name in the MLflow Model Registry
    metric: str  # VALIDATION metric that picks the winner (key in metrics/validation_runs.json)
    alias: (
        str  # alias the new version gets (the first stage of candidate -> staging -> production)
    )
    promote_to: list[str]  # aliases `lusaug promote --to` accepts, in promotion order
    gate_metric: str  # validation metric a promotion must not lose on (beyond its interval)
    require_parity: bool  # promotion needs the export stage's ONNX parity tag = passed


@dataclass(frozen=True)
class ExportParams:
    opset: int  # ONNX opset of the exported graph
    dynamo: bool  # torch.onnx dynamo exporter (slow, opset>=18) vs the legacy tracer (fast)
    parity_atol: float  # max |logits_torch - logits_onnx| allowed on the test frames
    parity_max_frames: int  # test frames used for parity and int8 accuracy (0 = all)
    batch_size: int  # frames per forward pass during parity and calibration
    int8: str  # none | auto | static | dynamic (auto: static QDQ for CNNs, dynamic for ViTs)
    calib_frames: int  # training frames used to calibrate static int8


@dataclass(frozen=True)
class ServeParams:
    host: str  # bind address; 127.0.0.1 unless you mean to expose the server
    port: int  # TCP port of `lusaug serve`
    model: str  # default model: models:/<name>@<alias> or a path to an .onnx file
    max_request_mb: float  # larger request bodies are refused with 413 before parsing
    max_files: int  # most images in one /predict request
    max_image_side: int  # longest image side accepted (checked from the header, before decoding)
    max_image_pixels: int  # most pixels per image (decompression-bomb guard)
    max_video_frames: int  # most frames decoded from one video (after sampling)
    video_types: list[str]  # accepted video file extensions
    batch_window_ms: float  # micro-batching: wait this long for more requests (0 = no batching)
    max_batch: int  # micro-batching: most frames per ONNX run
    inline_max_frames: int  # a lone request this small runs on the event loop (0 = never)
    reload_poll_s: float  # seconds between registry alias checks (0 = no polling)
    threads: int  # onnxruntime intra-op threads (0 = onnxruntime default)
    access_log: bool  # uvicorn access log line per request (costs ~0.2 ms each)


@dataclass(frozen=True)
class MlflowParams:
    tracking_uri: str  # "" = sqlite:///<repo>/mlflow.db; MLFLOW_TRACKING_URI wins when set


@dataclass(frozen=True)
class Params:
    base: BaseParams
    phantom: PhantomParams
    import_: ImportParams = field(metadata={"key": "import"})
    frames: FramesParams
    split: SplitParams
    validate: ValidateParams
    mlflow: MlflowParams
    # --- issue 3 (train, evaluate) fields go here ---
    train: TrainParams
    evaluate: EvaluateParams
    # --- issue 4 (generate, filter) fields go here ---
    generate: GenerateParams
    filter: FilterParams
    # --- issue 5 (tune, register, export, serve) fields go here ---
    tune: TuneParams
    register: RegisterParams
    export: ExportParams
    serve: ServeParams


def _key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        return [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {k: _convert(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {_key(f): f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    missing = [k for k, f in fields.items() if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    kwargs = {f.name: _convert(hints[f.name], data[k], f"{where}.{k}") for k, f in fields.items()}
    return cls(**kwargs)


def params_from_dict(data: dict[str, Any]) -> Params:
    """Build the typed config from a parsed ``params.yaml`` (sections the code does not know fail)."""
    params = _build(Params, data, "params")
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


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay nested mappings; lists and scalars are replaced."""
    out = dict(base)
    for k, v in overlay.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def as_flat_dict(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config (or any section) to dotted keys, e.g. for ``mlflow.log_params``."""
    if dataclasses.is_dataclass(obj):
        items = {_key(f): getattr(obj, f.name) for f in dataclasses.fields(obj)}
    elif isinstance(obj, dict):
        items = obj
    else:
        return {prefix.rstrip("."): obj}
    flat: dict[str, Any] = {}
    for k, v in items.items():
        if dataclasses.is_dataclass(v) or isinstance(v, dict):
            flat.update(as_flat_dict(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat
