"""The typed-config machinery: paths, the error type, the strict dict -> dataclass builder."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

from lusaug.core.errors import LusaugError

PROJ_ROOT = Path(__file__).resolve().parents[4]
PARAMS_PATH = Path(os.environ.get("LUSAUG_PARAMS", "params.yaml"))
PROFILES_DIR = PROJ_ROOT / "profiles"


class ConfigError(LusaugError, ValueError):
    """Raised when ``params.yaml`` does not match the typed config."""


def field_key(f: dataclasses.Field) -> str:
    return f.metadata.get("key", f.name)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return build(tp, value, where)
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


def build(cls: type, data: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {field_key(f): f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    missing = [k for k, f in fields.items() if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    kwargs = {f.name: _convert(hints[f.name], data[k], f"{where}.{k}") for k, f in fields.items()}
    return cls(**kwargs)


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
        items = {field_key(f): getattr(obj, f.name) for f in dataclasses.fields(obj)}
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
