"""Error rates of the verdicts over replicates, each with its Monte Carlo interval.

Each replicate gives one Bernoulli outcome per comparison (the decision said "helps", or the
interval covered the true effect), so every rate is k of n with an exact Clopper-Pearson interval
(``method="exact"``, the default: it never under-covers) or a Wilson score interval
(``"wilson"``, narrower, nominal on average). R replicates give a Monte Carlo standard error of
sqrt(p (1 - p) / R): 0.049 at p = 0.05 and R = 20, 0.089 at p = 0.8.

- :func:`type_one_rates`: share of "helps" for the null generator and the placebo (target: at
  most alpha, plus Monte Carlo error);
- :func:`power`: share of "helps" for the oracle against its matched control;
- :func:`coverage`: share of intervals that hold the oracle's true effect;
- :func:`power_curve`: power and the reported MDD against the number of rare-class patients;
- :func:`model_mdd`: the t-based MDD from a per-patient SD (e.g. the placebo's), infinite where
  the exact sign-flip test cannot reach alpha with that many patients (2 / 2^n > alpha).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lusaug.calibration.records import HELPS, latest, ok_records

CI_METHODS = ("exact", "wilson")  # Clopper-Pearson | Wilson score
NULL_ROLES = ("null", "placebo")


@dataclass(frozen=True)
class Rate:
    """k of n with its Monte Carlo interval."""

    k: int
    n: int
    rate: float  # k / n (nan when n = 0)
    lo: float
    hi: float
    ci: float  # interval level
    method: str  # exact (Clopper-Pearson) | wilson

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error sqrt(p (1 - p) / n)."""
        return mc_standard_error(self.rate, self.n)

    def as_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n": self.n,
            "rate": self.rate,
            "lo": self.lo,
            "hi": self.hi,
            "ci": self.ci,
            "method": self.method,
            "mc_se": self.mc_se,
        }


def mc_standard_error(p: float, n: int) -> float:
    """Monte Carlo standard error of a rate p estimated from n replicates."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 and 0.0 <= p <= 1.0 else math.nan


def binomial_rate(k: int, n: int, ci: float = 0.95, method: str = "exact") -> Rate:
    """k successes of n with a Clopper-Pearson (exact) or Wilson interval at level ``ci``."""
    if method not in CI_METHODS:
        raise ValueError(f"method must be one of {CI_METHODS}, got {method!r}")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return Rate(0, 0, math.nan, math.nan, math.nan, ci, method)
    interval = stats.binomtest(k, n).proportion_ci(confidence_level=ci, method=method)
    return Rate(k, n, k / n, float(interval.low), float(interval.high), ci, method)


def _comparisons(
    records: Iterable[Mapping[str, Any]], roles: Iterable[str]
) -> Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    wanted = set(roles)
    for rec in ok_records(records):
        for comp in rec.get("comparisons", []):
            if comp.get("role") in wanted:
                yield rec, comp


def helps_rates(
    records: Iterable[Mapping[str, Any]],
    roles: Iterable[str],
    ci: float = 0.95,
    method: str = "exact",
) -> dict[str, Rate]:
    """Per comparison name: the share of finished replicates whose decision is "helps"."""
    k: dict[str, int] = {}
    n: dict[str, int] = {}
    for _, comp in _comparisons(records, roles):
        name = comp["name"]
        n[name] = n.get(name, 0) + 1
        k[name] = k.get(name, 0) + (comp.get("decision") == HELPS)
    return {name: binomial_rate(k[name], n[name], ci, method) for name in sorted(n)}


def type_one_rates(
    records: Iterable[Mapping[str, Any]], ci: float = 0.95, method: str = "exact"
) -> dict[str, Rate]:
    """Share of "helps" for the null generator's and the placebo's comparisons."""
    return helps_rates(records, NULL_ROLES, ci, method)


def power(
    records: Iterable[Mapping[str, Any]], ci: float = 0.95, method: str = "exact"
) -> dict[str, Rate]:
    """Share of "helps" for the oracle against its matched control."""
    return helps_rates(records, ("oracle",), ci, method)


def coverage(
    records: Iterable[Mapping[str, Any]],
    role: str = "oracle",
    ci: float = 0.95,
    method: str = "exact",
) -> dict[str, Rate]:
    """Per comparison name: the share of intervals [lo, hi] holding the true effect.

    Comparisons without a true effect or without an interval are left out (not counted)."""
    k: dict[str, int] = {}
    n: dict[str, int] = {}
    for _, comp in _comparisons(records, (role,)):
        truth, lo, hi = comp.get("true_effect"), comp.get("lo"), comp.get("hi")
        if truth is None or lo is None or hi is None:
            continue
        name = comp["name"]
        n[name] = n.get(name, 0) + 1
        k[name] = k.get(name, 0) + (lo <= truth <= hi)
    return {name: binomial_rate(k[name], n[name], ci, method) for name in sorted(n)}


def exact_min_p(n_patients: int) -> float:
    """The smallest two-sided p an exact sign-flip test over n patients can give: 2 / 2^n."""
    return 2.0 / 2.0**n_patients if n_patients >= 1 else 1.0


def model_mdd(sd: float, n_patients: int, alpha: float = 0.05, target_power: float = 0.8) -> float:
    """The minimum detectable difference of a mean of n per-patient differences with SD ``sd``.

    (t_{1-alpha/2, n-1} + t_{target_power, n-1}) * sd / sqrt(n): the paired t test's power formula with
    the placebo's spread as the noise (not each comparison's own). Infinite when n < 2 or when
    the exact sign-flip test cannot reach alpha with n patients.
    """
    if n_patients < 2 or exact_min_p(n_patients) > alpha:
        return math.inf
    df = n_patients - 1
    t = stats.t.ppf(1.0 - alpha / 2.0, df) + stats.t.ppf(target_power, df)
    return float(t * sd / math.sqrt(n_patients))


def power_curve(
    records: Iterable[Mapping[str, Any]],
    role: str = "oracle",
    ci: float = 0.95,
    method: str = "exact",
) -> pd.DataFrame:
    """Power and the reported MDD per comparison name and number of rare-class patients.

    Columns: name, n_rare_patients, k, n, power, lo, hi, mc_se, mdd_median, mdd_q1, mdd_q3,
    exact_min_p (the floor of the exact test's p at that n).
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for rec, comp in _comparisons(records, (role,)):
        groups.setdefault((comp["name"], int(rec["n_rare_patients"])), []).append(comp)
    rows = []
    for (name, n_rare), comps in sorted(groups.items()):
        rate = binomial_rate(
            sum(c.get("decision") == HELPS for c in comps), len(comps), ci, method
        )
        mdds = np.array([c["mdd"] for c in comps if c.get("mdd") is not None], dtype=float)
        q1, med, q3 = np.quantile(mdds, [0.25, 0.5, 0.75]) if len(mdds) else (math.nan,) * 3
        rows.append(
            {
                "name": name,
                "n_rare_patients": n_rare,
                "k": rate.k,
                "n": rate.n,
                "power": rate.rate,
                "lo": rate.lo,
                "hi": rate.hi,
                "mc_se": rate.mc_se,
                "mdd_median": float(med),
                "mdd_q1": float(q1),
                "mdd_q3": float(q3),
                "exact_min_p": exact_min_p(n_rare),
            }
        )
    columns = ["name", "n_rare_patients", "k", "n", "power", "lo", "hi", "mc_se"]
    return pd.DataFrame(rows, columns=[*columns, "mdd_median", "mdd_q1", "mdd_q3", "exact_min_p"])


def summary(
    records: Iterable[Mapping[str, Any]], ci: float = 0.95, method: str = "exact"
) -> dict[str, Any]:
    """Everything the benchmark reports, as plain JSON-able values."""
    records = latest(records)
    finished = ok_records(records)
    return {
        "replicates": len(records),
        "finished": len(finished),
        "failed": [r.get("key") for r in records if r.get("status") != "ok"],
        "type_one": {k: v.as_dict() for k, v in type_one_rates(finished, ci, method).items()},
        "power": {k: v.as_dict() for k, v in power(finished, ci, method).items()},
        "coverage": {k: v.as_dict() for k, v in coverage(finished, "oracle", ci, method).items()},
        "power_curve": power_curve(finished, "oracle", ci, method).to_dict("records"),
    }
