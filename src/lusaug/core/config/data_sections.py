"""Sections of the data stages: base, phantom, import, frames, split, validate."""

from __future__ import annotations

from dataclasses import dataclass

from lusaug.core.config.schema import ConfigError

FINAL_FOLD = "final"  # the final model's split: the last item of the per-fold stages


def parse_fold(text: str) -> int | str:
    """A ``--fold`` argument: a fold index, or ``final`` (the final model's split)."""
    if text == FINAL_FOLD:
        return FINAL_FOLD
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a fold is an index or {FINAL_FOLD!r}, got {text!r}") from None


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
    max_pixels: int  # a file whose header announces more pixels per frame is skipped undecoded


@dataclass(frozen=True)
class SplitParams:
    scheme: str  # cv (every rare-class patient group tested once) | holdout (one split)
    folds: list[int]  # folds train runs and evaluate pools: [0, ..., k-1] for the k the data gives
    items: list[int | str]  # items of encoder, base_model, generate, filter, tune: folds + [final]
    max_folds: int  # cv: k = patient groups of the rarest class, at most this
    val_fraction: float  # cv: share of each class's non-test patient groups that validate
    fractions: dict[str, float]  # holdout: train/val/test share of each class's patients

    def __post_init__(self) -> None:
        if self.scheme not in ("cv", "holdout"):
            raise ConfigError(f"split.scheme must be cv or holdout, got {self.scheme!r}")
        if self.folds != list(range(len(self.folds))) or not self.folds:
            raise ConfigError(f"split.folds must be [0, 1, ..., k-1], got {self.folds}")
        if self.scheme == "holdout" and self.folds != [0]:
            raise ConfigError(
                f"split.folds must be [0] with split.scheme holdout (one fold), got {self.folds}"
            )
        if self.scheme == "cv" and len(self.folds) < 2:
            raise ConfigError(f"split.folds must list 2 or more folds with cv, got {self.folds}")
        if self.scheme == "cv" and self.max_folds < 2:
            raise ConfigError(f"split.max_folds must be >= 2 with cv, got {self.max_folds}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"split.val_fraction must be in (0, 1), got {self.val_fraction}")
        fr = self.fractions
        if set(fr) != {"train", "val", "test"} or abs(sum(fr.values()) - 1.0) > 1e-6:
            raise ConfigError(f"split.fractions must be train/val/test summing to 1, got {fr}")
        if self.items != [*self.folds, FINAL_FOLD]:  # DVC cannot concatenate two lists
            wanted = ", ".join(map(str, [*self.folds, FINAL_FOLD]))
            got = ", ".join(map(str, self.items))
            raise ConfigError(
                f"split.items must be split.folds + [{FINAL_FOLD}]: [{wanted}], got [{got}]"
            )


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
