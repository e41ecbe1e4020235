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


@dataclass(frozen=True)
class SplitParams:
    fractions: dict[str, float]  # train/val/test share of patients per class
    kfold: int  # >1: k-fold by patient; the fold below becomes test
    fold: int  # which fold is the test fold when kfold > 1


@dataclass(frozen=True)
class ValidateParams:
    phash_max_distance: int  # two frames within this Hamming distance count as near-identical
    min_mean: float  # sane range of per-frame mean grey level
    max_mean: float
    min_std: float  # frames flatter than this are broken (blank, saturated)


# --- issue 3 (train, evaluate) section dataclasses go here ---

# --- issue 4 (generate, filter) section dataclasses go here ---

# --- issue 5 (tune, register, export, serve) section dataclasses go here ---


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
    # --- issue 4 (generate, filter) fields go here ---
    # --- issue 5 (tune, register, export, serve) fields go here ---


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
