"""Result types shared by the inference modules: JSON-ready dataclasses and the error type.

Every result is a dataclass with ``to_dict()``: nested dataclasses become dicts, numpy scalars and
arrays become Python numbers and lists, NaN and infinities become ``None`` (strict JSON has no
NaN), so ``json.dumps(result.to_dict())`` always works and the evaluate stage can write results
into ``metrics/comparison.json`` and MLflow as they are.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from lusaug.core.errors import LusaugError


class InferenceError(LusaugError, ValueError):
    """Input the statistics cannot work with (mismatched patients, no rare-class frame, ...)."""


def jsonable(obj: Any) -> Any:
    """``obj`` with dataclasses, numpy values and non-finite floats made JSON-safe."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


class JsonResult:
    """Mixin: ``to_dict()`` for a result dataclass."""

    def to_dict(self) -> dict[str, Any]:
        return jsonable(self)


@dataclasses.dataclass(frozen=True)
class Interval(JsonResult):
    """A two-sided interval for an estimate, with how it was made.

    ``basis`` says what it may be used for: ``"verdict"`` (it includes every source of variance
    and was shown to cover by simulation) or ``"descriptive"`` (shown for orientation only).
    """

    lo: float
    hi: float
    level: float  # e.g. 0.95
    method: str  # one sentence: what was resampled or assumed
    se: float  # standard error behind a t interval (NaN for a percentile interval)
    df: float  # degrees of freedom of the t quantile (NaN for a percentile interval)
    basis: str  # "verdict" | "descriptive"
    note: str = ""  # e.g. why a descriptive interval must not carry a verdict

    def contains(self, value: float) -> bool:
        return bool(self.lo <= value <= self.hi)
