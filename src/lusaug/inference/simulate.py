"""Pooled out-of-fold predictions with a known effect, for calibrating the inference.

A study has patients of K classes (any number of them of the rare class), each with a few frames,
and arms (settings) of S runs each. The class logits of frame f of patient i (true class c) in
run r of arm g are

    logit[j] = [j = c] (separation_c + a_i + u_ig + e_igr)      patient difficulty a_i,
                                                               patient x arm interaction u_ig,
                                                               patient x run seed noise e_igr
             + rho_gr[j]                                       run-level class bias (seed noise
                                                               shared by every patient of a run)
             + eps_f[j] + eta_gr_f[j]                          frame noise (fixed, and per run)
             + [g = "strategy", j = rare] (effect [c = rare] + prior_shift)

and the probabilities are their softmax. ``effect`` makes the rare class easier to recognise
(recall, AUROC and AP rise); ``prior_shift`` only moves the rare class's logit on every frame, as a
larger rare-class share of training would (recall rises, AUROC does not). With both 0 the arms
are exchangeable, so every paired difference has a known expectation of 0; the per-patient
differences are symmetric about 0 only when ``seed_run_sd`` is 0 (a run-level bias shifts every
patient of a run the same way, which only the interval's seed term accounts for).

Everything is drawn with numpy, vectorised over arms, runs, frames and classes; a study of a few
hundred frames takes well under a millisecond, so calibration runs thousands of replicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from lusaug.inference.decision import VERDICTS, compare, decide
from lusaug.inference.endpoints import (
    PatientCounts,
    PatientEndpoints,
    patient_counts,
    rare_patient_endpoints,
)
from lusaug.inference.intervals import descriptive_mean_bootstrap
from lusaug.inference.types import InferenceError, JsonResult

CONTROL, STRATEGY = "control", "strategy"


@dataclass(frozen=True)
class SimDesign(JsonResult):
    """What a simulated study looks like (logit units unless said otherwise)."""

    patients_per_class: tuple[int, ...] = (16, 10, 10, 4)  # the rare class's count included
    rare: int = 3  # index of the rare class
    frames_per_patient: int = 8
    seeds: int = 2  # runs per arm
    arms: tuple[str, ...] = (CONTROL, STRATEGY)
    separation: float = 2.0  # true-class logit advantage of the common classes
    rare_separation: float = 0.5  # ... of the rare class (harder: few training images)
    patient_sd: float = 1.0  # per-patient difficulty a_i
    interaction_sd: float = 0.0  # patient x arm u_ig (not reduced by more seeds)
    seed_patient_sd: float = 0.5  # patient x run e_igr
    seed_run_sd: float = 0.3  # run-level class bias rho_gr (shared by a run's patients)
    frame_sd: float = 1.0  # frame noise shared by all runs
    frame_run_sd: float = 0.5  # frame noise of each run
    effect: float = 0.0  # strategy: rare-class logit on rare-class frames
    prior_shift: float = 0.0  # strategy: rare-class logit on every frame

    def __post_init__(self) -> None:
        k = len(self.patients_per_class)
        if k < 2 or not 0 <= self.rare < k or min(self.patients_per_class) < 1:
            raise InferenceError(f"need >= 2 classes with >= 1 patient, rare in 0..{k - 1}")
        if self.frames_per_patient < 1 or self.seeds < 1 or not self.arms:
            raise InferenceError("frames_per_patient, seeds and arms must be positive")


@dataclass
class SimStudy:
    """One simulated study: the pooled out-of-fold predictions of every arm's runs."""

    design: SimDesign
    y: np.ndarray  # (N,) true class
    patient_ids: np.ndarray  # (N,) str
    probs: dict[str, np.ndarray]  # arm -> (S, N, K)
    seeds: dict[str, list[int]] = field(default_factory=dict)  # arm -> run seeds

    def setting(self, arm: str) -> tuple[PatientEndpoints, PatientCounts]:
        """The (rare-class endpoints, per-patient counts) of one arm, as evaluate builds them."""
        p = self.probs[arm]
        ends = rare_patient_endpoints(
            self.y, self.patient_ids, p, self.design.rare, self.seeds[arm]
        )
        return ends, patient_counts(self.y, self.patient_ids, p, self.seeds[arm])


def simulate(design: SimDesign, rng: np.random.Generator | int) -> SimStudy:
    """Draw one study from ``design``."""
    rng = np.random.default_rng(rng)
    d = design
    k = len(d.patients_per_class)
    patient_class = np.repeat(np.arange(k), d.patients_per_class)
    n_pat = patient_class.size
    frame_patient = np.repeat(np.arange(n_pat), d.frames_per_patient)
    y = patient_class[frame_patient]
    n, a, s = y.size, len(d.arms), d.seeds
    truth = np.zeros((n, k))
    truth[np.arange(n), y] = 1.0
    sep = np.where(np.arange(k) == d.rare, d.rare_separation, d.separation)
    difficulty = sep[patient_class] + d.patient_sd * rng.standard_normal(n_pat)  # (P,)
    per_patient = (
        difficulty[None, None, :]
        + d.interaction_sd * rng.standard_normal((a, 1, n_pat))
        + d.seed_patient_sd * rng.standard_normal((a, s, n_pat))
    )  # (A, S, P)
    logits = per_patient[:, :, frame_patient, None] * truth  # (A, S, N, K)
    logits += d.seed_run_sd * rng.standard_normal((a, s, 1, k))
    logits += d.frame_sd * rng.standard_normal((n, k))
    logits += d.frame_run_sd * rng.standard_normal((a, s, n, k))
    if STRATEGY in d.arms:
        g = d.arms.index(STRATEGY)
        logits[g, :, :, d.rare] += d.prior_shift + d.effect * (y == d.rare)
    logits -= logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    ids = np.array([f"p{i:03d}" for i in range(n_pat)])[frame_patient]
    seeds = {arm: [1000 * i + r for r in range(s)] for i, arm in enumerate(d.arms)}
    return SimStudy(d, y, ids, dict(zip(d.arms, probs, strict=True)), seeds)


@dataclass(frozen=True)
class Calibration(JsonResult):
    """Operating characteristics of the whole decision on many simulated studies of a design.

    Rates are shares of ``replicates``; their Monte Carlo standard error is
    sqrt(rate (1 - rate) / replicates). Coverages are of the true difference 0 and are only
    computed for a null design (``effect`` = ``prior_shift`` = 0).
    """

    design: SimDesign
    replicates: int
    endpoint: str
    alpha: float
    ci: float
    verdicts: dict[str, float]  # verdict -> share of replicates
    mean_estimate: float  # mean over replicates of the rare endpoint's estimated difference
    sign_flip_rejects: float  # exact sign-flip p <= alpha (two-sided), whatever the interval
    coverage: dict[str, float]  # interval -> share covering 0 (null designs only)
    bootstrap_lower_above_0: float  # today's percentile patient bootstrap: lower bound > 0
    mean_width: dict[str, float]  # interval -> mean width


def calibrate(
    design: SimDesign,
    replicates: int,
    seed: int,
    *,
    endpoint: str = "recall",
    alpha: float = 0.05,
    margin: float = 0.02,
    ci: float = 0.95,
    bootstrap_draws: int = 1000,
) -> Calibration:
    """Run :func:`~lusaug.inference.decision.compare` and ``decide`` on ``replicates`` studies.

    Besides the verdicts it records three intervals of the rare-class endpoint: the verdict
    interval (patients and seeds), the plain t interval on the per-patient differences (no
    run-level seed term) and today's percentile patient bootstrap, plus macro-F1's interval.
    """
    rng = np.random.default_rng(seed)
    null = design.effect == 0 and design.prior_shift == 0
    verdicts = dict.fromkeys(VERDICTS, 0)
    rejects = boot_above = 0
    estimate = 0.0
    covered = {"rare": 0, "rare_t_no_seed_term": 0, "f1_macro": 0}
    width = dict.fromkeys(covered, 0.0)
    for r in range(replicates):
        study = simulate(design, rng)
        c = compare(
            study.setting(STRATEGY),
            study.setting(CONTROL),
            (STRATEGY, CONTROL, "sim"),
            ci=ci,
            endpoints=(endpoint,),
            metrics=("f1_macro",),
        )
        verdicts[decide(c, endpoint, alpha=alpha, margin=margin).verdict] += 1
        rare = c.rare[endpoint]
        rejects += rare.test.p_value <= alpha
        estimate += rare.estimate / replicates
        d = np.array(list(rare.per_patient.values()))
        half = stats.t.ppf(0.5 + ci / 2, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
        boot = descriptive_mean_bootstrap(d, ci, bootstrap_draws, seed + r, 10)
        boot_above += boot.lo > 0
        intervals = {
            "rare": (rare.interval.lo, rare.interval.hi),
            "rare_t_no_seed_term": (d.mean() - half, d.mean() + half),
            "f1_macro": (
                c.population["f1_macro"].interval.lo,
                c.population["f1_macro"].interval.hi,
            ),
        }
        for name, (lo, hi) in intervals.items():
            covered[name] += lo <= 0 <= hi
            width[name] += (hi - lo) / replicates
    return Calibration(
        design,
        replicates,
        endpoint,
        alpha,
        ci,
        {k: v / replicates for k, v in verdicts.items()},
        estimate,
        rejects / replicates,
        {k: v / replicates for k, v in covered.items()} if null else {},
        boot_above / replicates,
        width,
    )
