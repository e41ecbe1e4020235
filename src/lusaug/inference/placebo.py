"""The placebo (baseline vs baseline on disjoint seeds), the noise floor, MDDs and study sizes.

**Placebo.** The baseline's seeds are split in two halves (:func:`split_seeds`); each half is a
pseudo-setting (:func:`placebo_settings`), and the two go through exactly the same
:func:`~lusaug.inference.decision.compare` and :func:`~lusaug.inference.decision.decide` as a
real comparison. Nothing differs but the seeds, so its verdict must be "no difference" (neither
"helps" nor "hurts"); anything else means the machinery or its noise model is wrong.

**Noise floor.** Per rare-class patient the placebo difference d_i is pure seed noise: with halves
of S1 and S2 runs its variance is sigma_seed^2 (1/S1 + 1/S2), where sigma_seed^2 is the
patient x seed variance of one run. So sigma_seed^2 = var(d_i) / (1/S1 + 1/S2), on n - 1 df.
Runs also move all patients together (a run-level seed variance sigma_run^2); that part is
estimated from the baseline's S runs (the spread of run means minus the patient x seed noise, on
S - 1 df) and cannot be seen in the spread across patients.

**Minimum detectable difference** of a real comparison of S_A vs S_B runs on n patients:

    Var(mean difference) = [sigma_seed^2 (1/S_A + 1/S_B) + 2 sigma_int^2] / n
                           + sigma_run^2 (1/S_A + 1/S_B)
    MDD = (t_{1-alpha/2, n-1} + t_{power, n-1}) sqrt(Var)

Assumptions, written into every result:
  * the seed part scales with 1/S per arm: the placebo's S/2 vs S/2 has per-patient variance
    4 sigma_seed^2 / S, a real S vs S comparison 2 sigma_seed^2 / S, half of it;
  * the strategy's runs vary as much as the baseline's;
  * sigma_int^2, the patient x strategy interaction (patients responding differently to the
    strategy), is invisible to a placebo (baseline vs baseline has none). It is an input
    (default 0, so the MDD is a lower bound); a real comparison estimates it as
    (var(d_i) - sigma_seed^2 (1/S_A + 1/S_B)) / 2 (``PairedEndpoint.interaction_var``);
  * new patients are like these; t on n - 1 df, two-sided alpha;
  * the exact sign-flip test cannot reach alpha below :func:`patients_needed` patients, so the
    MDD is infinite there, whatever the variance.

Because the MDD comes from the placebo and not from each comparison's own spread, a comparison
whose patients happened to agree does not get a small MDD (the observed-power artefact; Hoenig &
Heisey 2001).

**Sample size.** :func:`sample_size` names, for each number of seeds per arm, the number of
rare-class patients that brings the MDD down to a target effect, or says that no number of
patients does (the run-level seed term sigma_run^2 (1/S_A + 1/S_B) alone is too large).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats

from lusaug.inference.decision import Comparison, Decision, compare, decide
from lusaug.inference.endpoints import PatientCounts, PatientEndpoints
from lusaug.inference.intervals import arm_run_variance
from lusaug.inference.signflip import patients_needed
from lusaug.inference.types import InferenceError, JsonResult

NO_DIFFERENCE = "no difference"
DIFFERENCE = "difference: the noise floor is breached"
PLACEBO_STRATEGY = "baseline (seed half 1)"
PLACEBO_CONTROL = "baseline (seed half 2)"

Setting = TypeVar("Setting", PatientEndpoints, PatientCounts)


def split_seeds(seeds: Sequence[int]) -> tuple[list[int], list[int]]:
    """Two disjoint halves of a seed list (sorted; with an odd count the second is larger)."""
    ordered = sorted(int(s) for s in seeds)
    if len(ordered) < 2 or len(set(ordered)) != len(ordered):
        raise InferenceError(
            f"a placebo needs at least 2 distinct seeds of the baseline, got {list(seeds)}: "
            "with one seed no placebo can be run (there is no seed noise to compare against)"
        )
    half = len(ordered) // 2
    return ordered[:half], ordered[half:]


def placebo_settings(setting: Setting) -> tuple[Setting, Setting]:
    """The baseline setting as two pseudo-settings on disjoint seed halves."""
    first, second = split_seeds(setting.seeds)
    return setting.select(first), setting.select(second)


@dataclass(frozen=True)
class NoiseFloor(JsonResult):
    """Seed noise of one rare-class endpoint, from the placebo and the baseline's runs."""

    endpoint: str
    n_patients: int
    placebo_seeds: list[int]  # [S1, S2]
    placebo_sd: float  # SD of the placebo's per-patient differences
    seed_var: float  # sigma_seed^2: patient x seed variance of one run
    run_var: float  # sigma_run^2: run-level variance shared by all patients (>= 0)
    run_df: int  # its df (baseline runs - 1)
    assumptions: list[str]


@dataclass(frozen=True)
class Placebo(JsonResult):
    seeds: list[list[int]]  # the two halves
    comparison: Comparison
    decision: Decision
    verdict: str  # NO_DIFFERENCE or DIFFERENCE
    floor: NoiseFloor


def noise_floor(baseline: PatientEndpoints, placebo: Comparison, endpoint: str) -> NoiseFloor:
    """sigma_seed^2 from the placebo's per-patient spread, sigma_run^2 from the baseline's runs."""
    rare = placebo.rare[endpoint]
    d = np.array(list(rare.per_patient.values()))
    s1, s2 = rare.variance.seeds
    n = d.size
    sd = float(np.std(d, ddof=1)) if n > 1 else float("nan")
    y = baseline.values[endpoint]
    loo = (y.sum(1, keepdims=True) - y) / max(n - 1, 1)
    between, run_df, patient_seed = arm_run_variance(loo, y.mean(1), np.zeros(n, dtype=int))
    # a projection wants the unbiased run-level part (the interval counts V_int twice on purpose)
    run_var = max(0.0, between - patient_seed) if run_df else float("nan")
    assumptions = [
        (
            f"the placebo compares {s1} vs {s2} baseline runs: its per-patient variance is "
            f"sigma_seed^2 (1/{s1} + 1/{s2}); a comparison of S_A vs S_B runs has "
            "sigma_seed^2 (1/S_A + 1/S_B) (S/2 vs S/2 -> S vs S halves it)"
        ),
        "the strategy's runs vary as much as the baseline's",
        (
            f"run-level seed variance sigma_run^2 from the baseline's {run_df + 1} runs "
            f"({run_df} df), added as sigma_run^2 (1/S_A + 1/S_B) whatever the number of "
            "patients; clipped at 0, so the MDD errs large when runs share little"
        ),
        (
            "patient x strategy interaction: not seen by a placebo; an input (default 0, so the "
            "MDD is a lower bound)"
        ),
        "new patients vary like these; t on n - 1 df; two-sided alpha",
    ]
    return NoiseFloor(
        endpoint, n, [s1, s2], sd, sd * sd / (1 / s1 + 1 / s2), run_var, run_df, assumptions
    )


def run_placebo(
    baseline: tuple[PatientEndpoints, PatientCounts],
    architecture: str,
    endpoint: str,
    *,
    alpha: float,
    margin: float,
    **compare_options,
) -> Placebo:
    """Baseline vs baseline on disjoint seed halves, through :func:`compare` and :func:`decide`.

    Args:
        baseline: the baseline setting's (rare-class endpoints, per-patient counts), all seeds.
        architecture: its architecture (for the comparison's name).
        endpoint: the endpoint that decides (the primary's).
        alpha: decision level.
        margin: macro-F1 non-inferiority margin.
        **compare_options: as for :func:`compare` (ci, max_patterns, mc_draws, seed, ...).
    """
    ends_a, ends_b = placebo_settings(baseline[0])
    counts_a, counts_b = placebo_settings(baseline[1])
    names = (PLACEBO_STRATEGY, PLACEBO_CONTROL, architecture)
    # the between-run variance comes from all the baseline's runs (S - 1 df): a half may hold
    # a single run, and its own spread would then leave the seed term out
    comparison = compare(
        (ends_a, counts_a), (ends_b, counts_b), names, run_reference=[baseline], **compare_options
    )
    decision = decide(comparison, endpoint, alpha=alpha, margin=margin, role="placebo")
    verdict = DIFFERENCE if decision.verdict in ("helps", "hurts") else NO_DIFFERENCE
    floor = noise_floor(baseline[0], comparison, endpoint)
    return Placebo([ends_a.seeds, ends_b.seeds], comparison, decision, verdict, floor)


@dataclass(frozen=True)
class MinimumDetectable(JsonResult):
    endpoint: str
    value: float  # MDD (inf when the exact test cannot reach alpha with n patients)
    n_patients: int
    seeds: list[int]  # [S_A, S_B]
    alpha: float
    power: float
    interaction_var: float
    detectable_by_exact_test: bool  # 2/2^n <= alpha
    assumptions: list[str]


def _mdd(
    floor: NoiseFloor, n: np.ndarray, s_a: int, s_b: int, alpha: float, power: float, inter: float
) -> np.ndarray:
    """MDD for each number of patients in ``n`` (vectorised)."""
    n = np.asarray(n, dtype=np.float64)
    seeds = 1 / s_a + 1 / s_b
    run = floor.run_var if np.isfinite(floor.run_var) else 0.0
    var = (floor.seed_var * seeds + 2 * inter) / n + run * seeds
    t = stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)
    exact_ok = n >= patients_needed(alpha)
    return np.where(exact_ok, t * np.sqrt(var), np.inf)


def minimum_detectable(
    floor: NoiseFloor,
    *,
    alpha: float,
    power: float,
    n_patients: int | None = None,
    seeds: tuple[int, int] | None = None,
    interaction_var: float = 0.0,
) -> MinimumDetectable:
    """The MDD of a comparison, from the placebo's noise floor.

    Args:
        floor: from :func:`noise_floor`.
        alpha: two-sided level.
        power: e.g. 0.8.
        n_patients: rare-class patients (default: the study's).
        seeds: runs per arm (default: twice a placebo half, i.e. all the baseline's seeds).
        interaction_var: assumed patient x strategy variance (0: the MDD is a lower bound).
    """
    if not (0 < alpha < 1 and 0 < power < 1):
        raise InferenceError(f"alpha and power must be in (0, 1), got {alpha}, {power}")
    n = floor.n_patients if n_patients is None else int(n_patients)
    s_a, s_b = seeds or (sum(floor.placebo_seeds),) * 2
    value = float(_mdd(floor, np.array([n]), s_a, s_b, alpha, power, interaction_var)[0])
    extra = f"MDD for {s_a} vs {s_b} runs on {n} patients, power {power:g}"
    return MinimumDetectable(
        floor.endpoint,
        value,
        n,
        [s_a, s_b],
        alpha,
        power,
        interaction_var,
        bool(n >= patients_needed(alpha)),
        [*floor.assumptions, extra],
    )


@dataclass(frozen=True)
class SampleSize(JsonResult):
    endpoint: str
    target: float  # the effect to detect, in the endpoint's units
    alpha: float
    power: float
    options: list[dict]  # {"seeds": S per arm, "patients": n or None, "why": text}
    assumptions: list[str]


def sample_size(
    floor: NoiseFloor,
    target: float,
    *,
    alpha: float,
    power: float,
    seeds_grid: Sequence[int] = (2, 3, 5, 10, 20),
    max_patients: int = 10_000,
    interaction_var: float = 0.0,
) -> SampleSize | None:
    """Rare-class patients needed for the MDD to reach ``target``, per number of seeds per arm.

    Returns None when the noise floor could not be estimated (fewer than 2 patients, or a
    placebo that could not be run).

    Args:
        floor: from :func:`noise_floor`.
        target: effect to detect (e.g. 0.10 = 10 recall points).
        alpha: two-sided level.
        power: e.g. 0.8.
        seeds_grid: numbers of runs per arm to size for.
        max_patients: search limit.
        interaction_var: assumed patient x strategy variance.
    """
    if target <= 0:
        raise InferenceError(f"the target effect must be > 0, got {target}")
    if not np.isfinite(floor.seed_var):
        return None
    n_min = max(2, patients_needed(alpha))
    grid = np.arange(n_min, max_patients + 1)
    options = []
    for s in seeds_grid:
        mdd = _mdd(floor, grid, s, s, alpha, power, interaction_var)
        hit = np.flatnonzero(mdd <= target)
        if hit.size:
            options.append({"seeds": int(s), "patients": int(grid[hit[0]]), "why": ""})
            continue
        run = floor.run_var if np.isfinite(floor.run_var) else 0.0
        z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
        floor_mdd = z * np.sqrt(run * 2 / s)
        why = (
            f"run-level seed noise alone gives an MDD of {floor_mdd:.4g} >= {target:g}"
            if floor_mdd >= target
            else f"more than {max_patients} patients"
        )
        options.append({"seeds": int(s), "patients": None, "why": why})
    assumptions = [*floor.assumptions, f"at least {n_min} patients for the exact test"]
    return SampleSize(floor.endpoint, target, alpha, power, options, assumptions)
