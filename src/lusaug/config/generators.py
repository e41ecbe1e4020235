"""Sections of the generator stages: generate, filter."""

from __future__ import annotations

from dataclasses import dataclass

from lusaug.config.core import ConfigError

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
