"""Sections of the generator stages: base_model, generate, filter."""

from __future__ import annotations

from dataclasses import dataclass

from lusaug.core.config.schema import ConfigError

CONDITIONAL_KIND = "ddpm_conditional"  # samples every class: synthetic_only-<G> needs it
GENERATOR_KINDS = ("ddpm", CONDITIONAL_KIND, "textual_inversion", "finetune")
TRAIN_SETS = ("3mixed", "all")
TI_TEMPLATES = ("object", "style")
SAMPLERS = ("ddpm", "ddim", "dpmsolver++")
FINETUNE_METHODS = ("full",)
PREDICTION_TYPES = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class GeneratorSpec:
    kind: str  # ddpm | ddpm_conditional | textual_inversion | finetune (the last two need a base)
    train_set: str  # 3mixed = one frame from each of generate.mixed_patients patients; all
    leaky: bool  # also train on val/test frames (the study's 'all viral'); name must say 'leaky'
    template: str  # textual inversion prompt templates: object | style ("" otherwise)


def check_unet_widths(section: str, widths: list[int], norm_num_groups: int) -> None:
    """GroupNorm needs every width divisible by its groups: say so before torch does, mid-run."""
    bad = [w for w in widths if w % norm_num_groups]
    if bad:
        raise ConfigError(
            f"{section}.norm_num_groups {norm_num_groups} must divide every width of"
            f" {section}.block_out_channels {widths} (not {bad})"
        )


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
    train_steps: int  # optimiser steps of ddpm_all / ddpm_conditional
    train_steps_3mixed: int  # optimiser steps of a 3mixed DDPM (3 frames need fewer)
    batch_size: int  # images per step (drawn with replacement: training sets can be tiny)
    learning_rate: float  # AdamW peak learning rate
    lr_warmup_steps: int  # linear warm-up steps before cosine decay
    ema_decay: float  # EMA maximum decay (warm-up power 3/4 ramps towards it)
    hflip: bool  # random horizontal flips as augmentation
    mixed_precision: str  # accelerate mixed precision: no | bf16
    checkpoint_every: int  # steps between checkpoints + sample grids (0 = only at the end)
    checkpoints_total_limit: int  # newest checkpoints kept on disk
    grid_size: int  # images in each checkpoint sample grid

    def __post_init__(self) -> None:
        check_unet_widths("generate.ddpm", self.block_out_channels, self.norm_num_groups)


@dataclass(frozen=True)
class SamplingParams:
    sampler: str  # ddpm (ancestral) | ddim | dpmsolver++
    steps: int  # inference steps (ddpm: up to num_train_timesteps)
    candidates: int  # candidates generated per generator (before the filter)
    batch_size: int  # images per denoising batch


@dataclass(frozen=True)
class TextualInversionParams:
    placeholder_token: str  # the learned token
    initializer: str  # text whose mean token embedding initialises the new vectors
    num_vectors: int  # vectors of the multi-vector token (helped in medical imaging)
    train_steps: int  # optimisation steps
    batch_size: int  # images per step
    learning_rate: float  # AdamW learning rate of the new embedding rows
    hflip: bool  # random horizontal flips of the training frames
    guidance_scale: float  # classifier-free guidance of candidates
    comparison_text: str  # replaces the token in the without-token comparison grid
    comparison_images: int  # images per row of the with/without-token grid


@dataclass(frozen=True)
class FinetuneParams:
    method: str  # full = every UNet weight trains (the text encoder stays frozen)
    train_steps: int  # optimiser steps on the rare class's training frames
    batch_size: int  # images per step (with replacement)
    learning_rate: float  # AdamW peak learning rate (lower than the base's: keep its prior)
    lr_warmup_steps: int  # linear warm-up before cosine decay
    ema_decay: float  # EMA maximum decay of the fine-tuned weights
    caption_dropout: float  # share of steps with the empty caption (keeps guidance working)
    hflip: bool  # random horizontal flips of the training frames
    guidance_scale: float  # classifier-free guidance of candidates


@dataclass(frozen=True)
class GenerateParams:
    enabled: list[str]  # generators `dvc repro` runs (the matrix list of generate/filter)
    mixed_patients: int  # N of the 3mixed set (the study: 3)
    threads: int  # torch CPU threads of encoder/base/generate/filter (0 = torch's default)
    base: str  # "" = the pipeline's own base_model; a LOCAL Stable Diffusion folder otherwise
    generators: dict[str, GeneratorSpec]  # every known generator by name
    ddpm: DdpmParams
    sampling: SamplingParams
    ti: TextualInversionParams
    finetune: FinetuneParams

    def __post_init__(self) -> None:
        unknown = [g for g in self.enabled if g not in self.generators]
        if unknown:
            raise ConfigError(
                f"generate.enabled names unknown generators {unknown}; known: {sorted(self.generators)}"
            )
        for name, spec in self.generators.items():
            where = f"generate.generators.{name}"
            if spec.kind not in GENERATOR_KINDS:
                raise ConfigError(
                    f"{where}.kind must be one of {GENERATOR_KINDS}, got {spec.kind!r}"
                )
            if spec.train_set not in TRAIN_SETS:
                raise ConfigError(
                    f"{where}.train_set must be one of {TRAIN_SETS}, got {spec.train_set!r}"
                )
            if spec.leaky != ("leaky" in name):
                raise ConfigError(
                    f"{where}.leaky must be {not spec.leaky} (a generator is leaky exactly when "
                    f"its name says 'leaky'), got {spec.leaky}"
                )
            if spec.kind == "textual_inversion" and spec.template not in TI_TEMPLATES:
                raise ConfigError(
                    f"{where}.template must be one of {TI_TEMPLATES}, got {spec.template!r}"
                )
        if self.ddpm.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"generate.ddpm.prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {self.ddpm.prediction_type!r}"
            )
        if self.sampling.sampler not in SAMPLERS:
            raise ConfigError(
                f"generate.sampling.sampler must be one of {SAMPLERS}, "
                f"got {self.sampling.sampler!r}"
            )
        if self.finetune.method not in FINETUNE_METHODS:
            raise ConfigError(
                f"generate.finetune.method must be one of {FINETUNE_METHODS}, "
                f"got {self.finetune.method!r}"
            )


@dataclass(frozen=True)
class BaseModelParams:
    resolution: int  # px of the pixel-space base (64 = Imagen / DeepFloyd IF base stage)
    block_out_channels: list[int]  # UNet widths, one per resolution level
    cross_attention_levels: int  # lowest-resolution levels with text cross-attention
    layers_per_block: int  # ResNet layers per UNet block
    attention_head_dim: int  # channels per attention head
    norm_num_groups: int  # GroupNorm groups (must divide every width)
    text_hidden_size: int  # CLIP text encoder width (= the UNet's cross_attention_dim)
    text_layers: int  # CLIP text encoder transformer layers
    text_heads: int  # its attention heads
    max_caption_tokens: int  # tokenizer model_max_length (captions are short)
    num_train_timesteps: int  # diffusion steps T
    beta_schedule: str  # DDPMScheduler beta schedule
    prediction_type: str  # epsilon | v_prediction
    train_steps: int  # optimiser steps on the other classes' training frames
    batch_size: int  # images per step (drawn with replacement)
    learning_rate: float  # AdamW peak learning rate (UNet and text encoder)
    lr_warmup_steps: int  # linear warm-up before cosine decay
    ema_decay: float  # EMA maximum decay
    hflip: bool  # random horizontal flips
    caption_dropout: float  # share of captions replaced by "" (classifier-free guidance)
    template_prob: float  # share of captions wrapped in a TI prompt template (its words mean
    #                       something to the base, as 'a photo of' does to Stable Diffusion)
    mixed_precision: str  # accelerate: no | bf16
    checkpoint_every: int  # steps between checkpoints + sample grids (0 = end only)
    checkpoints_total_limit: int  # newest checkpoints kept for --resume
    guidance_scale: float  # classifier-free guidance of the per-class sample grid
    grid_per_class: int  # images per class in the sample grid
    register: bool  # register the base in the MLflow Model Registry (lus-base)

    def __post_init__(self) -> None:
        check_unet_widths("base_model", self.block_out_channels, self.norm_num_groups)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"base_model.prediction_type must be one of {PREDICTION_TYPES}, "
                f"got {self.prediction_type!r}"
            )
        if not 0 < self.cross_attention_levels <= len(self.block_out_channels):
            raise ConfigError(
                f"base_model.cross_attention_levels must be in [1, "
                f"{len(self.block_out_channels)}] (the levels of block_out_channels), "
                f"got {self.cross_attention_levels}"
            )
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ConfigError(
                f"base_model.caption_dropout must be in [0, 1), got {self.caption_dropout}"
            )


@dataclass(frozen=True)
class EncoderParams:
    strategy: str  # real-data strategy of the fold's classifier whose features are the space
    architecture: str  # a key of train.architectures
    seed: int  # its training seed


@dataclass(frozen=True)
class MemorisationParams:
    relative: bool  # apply Carlini's relative test (assumes a diverse pool: not 2 clips at 3 Hz)
    alpha: float  # Carlini et al.: near-copy when d_nn < alpha * mean d to the n nearest
    n_neighbours: int  # n of that mean (capped by the training-set size)
    max_pixel_distance: float  # also a near-copy when the normalised pixel L2 is <= this
    max_feature_distance: float  # also when 1 - cosine to the nearest feature is <= this (0 = off)
    video_quantile: float  # also when d_nn <= this quantile of the real frames' nearest
    #                        same-clip neighbour distance: as close as consecutive frames (0 = off)


@dataclass(frozen=True)
class SharpnessParams:
    cutoff: float  # radial frequency (share of Nyquist) above which energy counts as detail
    real_quantile: float  # keep a sample whose ratio is >= this quantile of the real frames'
    real_quantile_high: float  # and <= this quantile (above it: noise, not detail; 1 = off)
    blur_sigma: float  # Gaussian blur (px) of the real-vs-blurred check reported beside it
    min_real_frames: int  # fewer real training frames than this: no band (quantiles of 2 frames
    # exclude both), the criterion is skipped and the report says so


@dataclass(frozen=True)
class FilterParams:
    min_std: float  # keep when the pixel std (grey levels) is above this (the study: 30)
    min_entropy: float  # and the 256-bin grey entropy in bits is above this (the study: 4.7)
    use_sharpness: bool  # and the high-frequency energy ratio passes (blurred blobs fail)
    sharpness: SharpnessParams
    memorisation: MemorisationParams
    encoder: EncoderParams
    kid_subsets: int  # random subsets averaged by KID
    kid_subset_size: int  # images per KID subset (capped by the smaller set)
    prdc_k: int  # nearest neighbours of precision/recall/density/coverage (Naeem et al.: 5)
    bootstrap: int  # resamples of the PRDC and recognition-rate intervals
    ci: float  # interval level
    closest_pairs: int  # candidate/training pairs shown in the closest-pairs figure
    grid_size: int  # images per sample grid
    register: bool  # register the best generator per class in the MLflow Model Registry
    max_memorisation_rate: (
        float  # above this a generator is blocked: not trained on, not registered
    )
