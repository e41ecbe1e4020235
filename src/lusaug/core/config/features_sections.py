"""Section ``features``: the self-supervised feature space and the fidelity protocol in it.

Not yet part of :class:`lusaug.core.config.Params`: :data:`DEFAULT_YAML` is the block to paste into
``params.yaml`` as a top-level ``features:`` section (with its comments), and
:func:`default_features` builds it strictly, as ``load_params`` will once it is wired in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from lusaug.core.config.schema import ConfigError, build

SSL_METHODS = ("simclr", "dcl", "vicreg")

DEFAULT_YAML = """\
features:                      # self-supervised encoder per fold + fidelity protocol (issue 24)
  ssl:                         # trained from scratch, without labels, on the fold's training frames
    method: simclr             # simclr (NT-Xent) | dcl (decoupled contrastive) | vicreg (no negatives)
    model: resnet18            # timm backbone, built from scratch with in_chans=1
    kwargs: {channels: [24, 48, 96, 192], stem_width: 24}   # the classifiers' narrow ResNet18
    resolution: 64             # px the encoder sees (frames are resized to it; 0 = base.image_size)
    hidden_dim: 512            # projection head's hidden width (discarded after training)
    projection_dim: 128        # projection head's output (the loss's space, not the features)
    epochs: 12                 # passes over the training frames (one pass = frames / batch steps)
    batch_size: 64             # clips per step, two frames of each (capped by the clips there are)
    learning_rate: 0.002       # AdamW peak learning rate (cosine decay after warm-up)
    weight_decay: 0.0001       # AdamW weight decay
    warmup_epochs: 1           # linear warm-up before the cosine decay
    temperature: 0.2           # NT-Xent / DCL temperature (ignored by vicreg)
    seed: 0                    # weights, pair draws and augmentations (deterministic on CPU)
    threads: 2                 # torch CPU threads (0 = torch's default)
    augment:                   # ultrasound-safe view augmentations: no colour, no vertical flip
      crop_scale: 0.6          # random crop keeps at least this share of the frame's area
      degrees: 8.0             # rotation +/- (probe tilt)
      translate: 0.06          # shift +/- as a share of the side
      hflip: 0.5               # left-right flip probability
      gain: 0.3                # brightness x (1 +/- gain): the machine's gain knob
      contrast: 0.3            # contrast x (1 +/- contrast) around the frame mean
      gamma: 0.3               # grey-level gamma in [1 - gamma, 1 + gamma]: dynamic range setting
      speckle: 0.15            # multiplicative Gaussian noise std (speckle)
  probe:                       # patient-grouped linear probe: frozen features, logistic regression
    c: 0.5                     # inverse L2 strength of the logistic regression
    max_iter: 2000             # lbfgs iterations
    resamples: 2000            # patient bootstrap draws (validation patients, stratified by class)
    ci: 0.95                   # interval level
  fidelity:                    # every measure beside new real patients (validation, nobody trained on)
    prdc_k: 5                  # nearest neighbours of precision/recall/density/coverage (Naeem et al.)
    tstr_k: 5                  # neighbours of the train-on-synthetic classifier (k-NN: no extrapolation)
    c2st_folds: 4              # at most this many patient-grouped folds of the real-vs-candidate test
    target_quantile: 0.9       # a candidate must score at least as well as this share of new real patients
    copy_quantile: 0.5         # a near-copy is as close to a training frame as the median same-clip neighbour
    max_copy_rate: 0.05        # floor of the memorisation target (new real patients copy nothing)
    reference_draws: 3         # calibration: draws of as many training patients of a class as the rare class has
    min_frames: 7              # patients with fewer frames stay out of references (PRDC needs prdc_k + 2)
    resamples: 1000            # patient bootstrap draws of the reference intervals
    ci: 0.95                   # interval level
    seed: 0                    # C2ST folds of candidates, bootstrap draws
  controls:                    # negative and positive controls, through the same measures
    size: 48                   # frames per negative control (the pocus profile samples 48 candidates)
    blur_sigma: 2.0            # Gaussian blur (px at base.image_size) of the blurred-frames control
    speckle_looks: 1.0         # Gamma shape of the pure-speckle control (1 = fully developed speckle)
    speckle_smooth: 0.8        # Gaussian correlation length (px) of that speckle
    seed: 0                    # which training frames the controls copy, blur or relabel
"""


@dataclass(frozen=True)
class SslAugmentParams:
    crop_scale: float  # random crop keeps at least this share of the frame's area (1 = off)
    degrees: float  # rotation +/- in degrees
    translate: float  # shift +/- as a share of the side
    hflip: float  # left-right flip probability
    gain: float  # brightness factor in [1 - gain, 1 + gain]
    contrast: float  # contrast factor in [1 - contrast, 1 + contrast]
    gamma: float  # grey-level gamma in [1 - gamma, 1 + gamma]
    speckle: float  # std of multiplicative Gaussian noise


@dataclass(frozen=True)
class SslParams:
    method: str  # simclr | dcl | vicreg
    model: str  # timm backbone (from scratch, in_chans=1)
    kwargs: dict[str, Any]  # extra timm.create_model kwargs
    resolution: int  # px the encoder sees (0 = base.image_size)
    hidden_dim: int  # projection head hidden width
    projection_dim: int  # projection head output width
    epochs: int  # passes over the training frames
    batch_size: int  # clips per step (two frames each)
    learning_rate: float  # AdamW peak learning rate
    weight_decay: float  # AdamW weight decay
    warmup_epochs: int  # linear warm-up epochs
    temperature: float  # NT-Xent / DCL temperature
    seed: int  # seeds weights, pairs and augmentations
    threads: int  # torch CPU threads (0 = default)
    augment: SslAugmentParams

    def __post_init__(self) -> None:
        if self.method not in SSL_METHODS:
            raise ConfigError(
                f"features.ssl.method must be one of {SSL_METHODS}, got {self.method!r}"
            )
        if self.batch_size < 2:
            raise ConfigError(
                f"features.ssl.batch_size must be >= 2 (a contrastive batch), got {self.batch_size}"
            )
        if self.epochs < 1:
            raise ConfigError(f"features.ssl.epochs must be >= 1, got {self.epochs}")
        if self.temperature <= 0:
            raise ConfigError(f"features.ssl.temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class ProbeParams:
    c: float  # inverse L2 strength of the logistic regression
    max_iter: int  # lbfgs iterations
    resamples: int  # patient bootstrap draws
    ci: float  # interval level


@dataclass(frozen=True)
class FidelityProtocolParams:
    prdc_k: int  # PRDC nearest neighbours
    tstr_k: int  # neighbours of the TSTR k-NN classifier
    c2st_folds: int  # most patient-grouped folds of the C2ST
    target_quantile: float  # share of new real patients a candidate must do as well as
    copy_quantile: float  # same-clip neighbour distance quantile that defines a near-copy
    max_copy_rate: float  # floor of the memorisation target
    reference_draws: int  # size-matched training-patient draws per calibration patient
    min_frames: int  # patients with fewer frames stay out of the references
    resamples: int  # patient bootstrap draws
    ci: float  # interval level
    seed: int  # candidate folds, bootstrap draws

    def __post_init__(self) -> None:
        if not 0.5 <= self.target_quantile <= 1.0:
            raise ConfigError(
                f"features.fidelity.target_quantile must be in [0.5, 1], got {self.target_quantile}"
            )
        if self.min_frames < self.prdc_k + 2:
            raise ConfigError(
                f"features.fidelity.min_frames must be >= prdc_k + 2 = {self.prdc_k + 2} "
                f"(PRDC's k-NN), got {self.min_frames}"
            )
        if self.reference_draws < 1:
            raise ConfigError(
                f"features.fidelity.reference_draws must be >= 1, got {self.reference_draws}"
            )
        if self.c2st_folds < 2:
            raise ConfigError(f"features.fidelity.c2st_folds must be >= 2, got {self.c2st_folds}")


@dataclass(frozen=True)
class ControlParams:
    size: int  # frames per negative control
    blur_sigma: float  # Gaussian blur of the blurred-frames control (px)
    speckle_looks: float  # Gamma shape of the pure-speckle control
    speckle_smooth: float  # its Gaussian correlation length (px)
    seed: int  # which training frames the controls use


@dataclass(frozen=True)
class FeaturesParams:
    ssl: SslParams
    probe: ProbeParams
    fidelity: FidelityProtocolParams
    controls: ControlParams


def features_from_dict(data: dict[str, Any]) -> FeaturesParams:
    """The section from a mapping (strict: unknown or missing keys fail, naming them)."""
    return build(FeaturesParams, data, "features")


def default_features(**overrides: Any) -> FeaturesParams:
    """:data:`DEFAULT_YAML` as typed params; ``overrides`` replace whole subsections' keys,
    e.g. ``default_features(ssl={"epochs": 1})``."""
    data = yaml.safe_load(DEFAULT_YAML)["features"]
    for section, values in overrides.items():
        if section not in data:
            raise ConfigError(f"features: unknown section {section!r}")
        data[section] = {**data[section], **values}
    return features_from_dict(data)
