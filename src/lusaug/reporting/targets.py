"""The generator fidelity targets, checked from one fold's filter metrics (pure functions).

Each target compares the kept samples with a real reference scored the same way, so a target
whose reference is 0 or undefined cannot be judged: it is "not assessable", never "met".

- recognition: the fold's real-trained classifier recognises kept samples as the target class at
  least ``RECOGNITION_FRACTION`` times as often as real validation frames of the class;
- PRDC: precision at least ``PRECISION_FRACTION`` x the real-vs-real precision (real training
  vs real validation frames) and coverage above 0;
- memorisation: at most ``filter.max_memorisation_rate`` of the candidates flagged as copies;
- KID: KID of the kept samples to real validation frames no larger than the upper end of the
  real-vs-real KID interval (``kid_within_reference`` of the filter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lusaug.core.markdown import finite, fixed, pct

RECOGNITION_FRACTION = 0.8  # kept samples recognised >= this x as often as real val frames
PRECISION_FRACTION = 0.8  # PRDC precision >= this x the real-vs-real precision
MIN_COVERAGE = 0.0  # coverage must be above this (some real frame has a sample nearby)
RATIO_DIGITS = 2  # PRDC values and recognition ratios
KID_DIGITS = 4  # KID is small (1e-3 .. 1e-1 here)

MET, NOT_MET, NOT_ASSESSABLE = "met", "not met", "not assessable"
TARGET_NAMES = ("recognition", "precision/coverage", "memorisation", "KID")  # report order


@dataclass(frozen=True)
class Target:
    name: str
    status: str  # MET | NOT_MET | NOT_ASSESSABLE
    detail: str  # the numbers behind the status, or why it cannot be judged

    def cell(self) -> str:
        return f"{self.status} ({self.detail})" if self.detail else self.status


def _rate(d: Any) -> Any:
    return d.get("rate") if isinstance(d, dict) else None


def recognition_target(m: dict[str, Any]) -> Target:
    name = TARGET_NAMES[0]
    rate, ref = _rate(m.get("recognition")), _rate(m.get("recognition_real_val"))
    if not finite(rate):
        return Target(name, NOT_ASSESSABLE, "no kept sample scored")
    if not finite(ref):
        return Target(name, NOT_ASSESSABLE, "no real validation frame of the class")
    if ref == 0:
        return Target(name, NOT_ASSESSABLE, "real reference 0: the classifier recognises none")
    ok = rate >= RECOGNITION_FRACTION * ref
    return Target(
        name,
        MET if ok else NOT_MET,
        f"{pct(rate)}% {'≥' if ok else '<'} {RECOGNITION_FRACTION} × {pct(ref)}%",
    )


def _value(prdc: dict[str, Any], key: str) -> Any:
    entry = prdc.get(key)
    return entry.get("value") if isinstance(entry, dict) else None


def prdc_target(m: dict[str, Any]) -> Target:
    name = TARGET_NAMES[1]
    prdc, ref = m.get("prdc"), m.get("prdc_real_reference")
    if not isinstance(prdc, dict) or not isinstance(ref, dict):
        return Target(
            name, NOT_ASSESSABLE, "PRDC undefined: more than filter.prdc_k samples needed"
        )
    precision, coverage = _value(prdc, "precision"), _value(prdc, "coverage")
    ref_precision = _value(ref, "precision")
    if not (finite(precision) and finite(coverage) and finite(ref_precision)):
        return Target(name, NOT_ASSESSABLE, "PRDC undefined")
    if ref_precision == 0:
        return Target(name, NOT_ASSESSABLE, "real-vs-real precision 0")
    ok = precision >= PRECISION_FRACTION * ref_precision and coverage > MIN_COVERAGE
    return Target(
        name,
        MET if ok else NOT_MET,
        f"precision {fixed(precision, RATIO_DIGITS)} vs {PRECISION_FRACTION} × "
        f"{fixed(ref_precision, RATIO_DIGITS)}, coverage {fixed(coverage, RATIO_DIGITS)}",
    )


def memorisation_target(m: dict[str, Any], max_rate: float) -> Target:
    name = TARGET_NAMES[2]
    rate = _rate(m.get("memorisation"))
    if not finite(rate):
        return Target(name, NOT_ASSESSABLE, "no memorisation rate")
    ok = rate <= max_rate
    return Target(
        name, MET if ok else NOT_MET, f"{pct(rate)}% {'≤' if ok else '>'} {pct(max_rate)}%"
    )


def kid_target(m: dict[str, Any]) -> Target:
    name = TARGET_NAMES[3]
    kid, ref = m.get("kid"), m.get("kid_real_reference")
    mean = kid.get("mean") if isinstance(kid, dict) else None
    high = ref.get("high") if isinstance(ref, dict) else None
    if not finite(mean):
        return Target(name, NOT_ASSESSABLE, "KID undefined: fewer than 2 kept samples")
    if not finite(high):
        return Target(name, NOT_ASSESSABLE, "no real-vs-real KID: fewer than 2 real frames")
    ok = mean <= high
    return Target(
        name,
        MET if ok else NOT_MET,
        f"{fixed(mean, KID_DIGITS)} {'≤' if ok else '>'} {fixed(high, KID_DIGITS)}",
    )


def generator_targets(m: dict[str, Any], max_memorisation_rate: float) -> list[Target]:
    """The four targets of one generator in one fold, in report order."""
    return [
        recognition_target(m),
        prdc_target(m),
        memorisation_target(m, max_memorisation_rate),
        kid_target(m),
    ]
