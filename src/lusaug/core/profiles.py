"""Named parameter profiles: partial overlays in ``profiles/<name>.yaml`` merged into params.yaml.

``profiles/default.yaml`` lists every key that any other profile changes, with its default value,
so applying ``default`` after any profile restores the committed defaults (a test checks this).
Comments in params.yaml survive (ruamel round trip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from lusaug.core.config import PROFILES_DIR, ConfigError, params_from_dict
from lusaug.core.utils import atomic_path


def available_profiles(profiles_dir: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in profiles_dir.glob("*.yaml"))


def load_overlay(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    path = profiles_dir / f"{name}.yaml"
    if not path.exists():
        raise ConfigError(
            f"unknown profile {name!r}; available: {', '.join(available_profiles(profiles_dir))}"
        )
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


def _flow(value: Any) -> Any:
    """A list as a one-line flow sequence (``[0, 1]``), as params.yaml writes them.

    ruamel writes a plain list as a block sequence; under a key that carries a trailing comment
    (``folds:   # ...``) the next round trip then reads the ``- 0`` lines as misplaced entries
    and fails (a YAML ScannerError), so every list goes in as flow style, nested ones too.
    """
    if isinstance(value, list):
        seq = CommentedSeq([_flow(v) for v in value])
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        return {k: _flow(v) for k, v in value.items()}
    return value


def _merge_into(node: Any, overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _merge_into(node[key], value)
        else:
            node[key] = _flow(value)


def apply_profile(
    name: str, params_path: Path | str = "params.yaml", profiles_dir: Path = PROFILES_DIR
) -> dict[str, Any]:
    """Merge profile ``name`` into ``params_path`` (atomically) and return the new params dict.

    The result is type-checked before anything is written, so a broken profile never leaves a
    broken params.yaml behind.
    """
    params_path = Path(params_path)
    overlay = load_overlay(name, profiles_dir)
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    with params_path.open() as fh:
        doc = rt.load(fh)
    _merge_into(doc, overlay)
    doc["base"]["profile"] = name
    with atomic_path(params_path) as tmp:
        with tmp.open("w") as fh:
            rt.dump(doc, fh)
        with tmp.open() as fh:
            data = yaml.safe_load(fh)
        params_from_dict(data)
    return data


def set_param(params_path: Path | str, dotted_key: str, value: Any) -> dict[str, Any]:
    """Set one key of ``params_path`` (comments kept), type-checked before anything is written."""
    return set_params(params_path, {dotted_key: value})


def set_params(params_path: Path | str, values: dict[str, Any]) -> dict[str, Any]:
    """Set keys of ``params_path`` at once (comments kept; keys that must agree, such as
    ``split.folds`` and ``split.items``), type-checked before anything is written."""
    params_path = Path(params_path)
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    with params_path.open() as fh:
        doc = rt.load(fh)
    for dotted_key, value in values.items():
        *parents, leaf = dotted_key.split(".")
        node = doc
        for key in parents:
            node = node[key]
        node[leaf] = _flow(value)  # keep params.yaml's one-line lists: `folds: [0, 1, 2]`
    with atomic_path(params_path) as tmp:
        with tmp.open("w") as fh:
            rt.dump(doc, fh)
        with tmp.open() as fh:
            data = yaml.safe_load(fh)
        params_from_dict(data)
    return data
