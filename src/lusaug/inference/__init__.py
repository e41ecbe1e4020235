"""Patient-level inference with few rare-class patients: exact tests, seed-aware intervals.

Pure functions on numpy arrays; no I/O, no torch, no MLflow. The evaluate stage computes, per
setting (strategy x architecture, S seed runs) from the pooled out-of-fold predictions:

    ends = rare_patient_endpoints(y, patient_ids, probs, rare, seeds)   # (S, P_rare) per endpoint
    counts = patient_counts(y, patient_ids, probs, seeds)               # (S, P, K, K)
    value = setting_value(ends, "auroc", ci=...)  # or (counts, "f1_macro"): value + interval

per comparison (strategy vs a control of the same architecture, on the same frames):

    comp = compare((ends_s, counts_s), (ends_c, counts_c), (strategy, control, arch), ci=...)

and once per study:

    family = decide_family({c.name: c for c in comparisons}, primary, alpha=..., margin=...)
    placebo = run_placebo((ends_base, counts_base), arch, primary.endpoint, alpha=..., margin=...)
    mdd = minimum_detectable(placebo.floor, alpha=..., power=...)
    size = sample_size(placebo.floor, target, alpha=..., power=...)        # or None

Every result is a dataclass with ``to_dict()`` (JSON-safe: NaN -> null).

What each piece does, and why (details in each module's docstring):

* :mod:`.endpoints`: per rare-class patient and run, the rare class's recall, one-vs-rest AUROC
  and AP (that patient's rare frames against every other-class frame), and the pooled values;
  per-patient confusion counts for accuracy / macro-F1.
* :mod:`.signflip`: the exact sign-flip test over per-patient seed-averaged differences (all 2^n
  sign patterns up to ``max_patterns``, Monte Carlo with stated draws and seed beyond), the
  smallest attainable p (2/2^n) and the patients needed if all moved the same way. Zeros carry
  no sign and are left out of n (the p-value is the same either way).
* :mod:`.intervals`: the verdict interval adds the patient part (class-stratified jackknife; for
  a per-patient endpoint exactly the t interval on n - 1 df) and the between-run seed part
  (pooled within-arm spread of the runs x (1/S_A + 1/S_B)), t with Welch-Satterthwaite df. The
  percentile patient bootstrap is kept as a labelled descriptive interval only.
* :mod:`.decision`: "helps" / "no evidence of help" / "hurts" / "cannot be shown"; the primary
  at alpha, secondaries Holm-adjusted; "helps" needs the exact test, the interval with seeds
  and macro-F1 non-inferiority.
* :mod:`.multiplicity`: Holm, and what chance alone gives in a family.
* :mod:`.placebo`: baseline vs baseline on disjoint seed halves through the same functions; the
  noise floor, the MDD and the sample size (patients and seeds) with their assumptions.
* :mod:`.simulate`: studies with a known effect, and :func:`calibrate` for the decision's type-I
  rate, coverage and power.

A finding that shaped the design: the sign-flip test over patients is exact **given the trained
models**. When a seed moves all patients of a run the same way (a run-level bias towards the rare
class), every per-patient difference shares that shift; then, in 1000 null simulations with 12
rare patients and 2 seeds, the sign-flip test alone rejected in 22 % and the plain t interval
covered 0 in 75 %. So "helps" also needs the interval with the seed term above 0; with it
"helps" came out in 1.0 % and the interval covered in 94.5 %. For the same reason the placebo
takes its seed term from all the baseline's runs (``run_reference``): with 2 seeds its halves
hold one run each. ``compare(..., run_reference=[...every setting of the architecture...])``
pools the between-run variance over more runs (more df, under an equal-variance assumption).
"""

from lusaug.core.config import RARE_ENDPOINTS
from lusaug.inference.decision import (
    CANNOT,
    HELPS,
    HURTS,
    NO_EVIDENCE,
    VERDICTS,
    Comparison,
    Decision,
    FamilyDecision,
    NonInferiority,
    PrimarySpec,
    compare,
    comparison_name,
    decide,
    decide_family,
    non_inferiority,
)
from lusaug.inference.endpoints import (
    POPULATION_METRICS,
    PatientCounts,
    PatientEndpoints,
    metric_from_counts,
    patient_counts,
    rare_patient_endpoints,
)
from lusaug.inference.intervals import (
    PairedEndpoint,
    PopulationDifference,
    SettingValue,
    VarianceParts,
    compare_patients,
    compare_population,
    descriptive_mean_bootstrap,
    setting_value,
)
from lusaug.inference.multiplicity import ChanceInFamily, chance_in_family, holm
from lusaug.inference.placebo import (
    MinimumDetectable,
    NoiseFloor,
    Placebo,
    SampleSize,
    minimum_detectable,
    noise_floor,
    placebo_settings,
    run_placebo,
    sample_size,
    split_seeds,
)
from lusaug.inference.signflip import (
    SignFlipResult,
    min_attainable_p,
    patients_needed,
    sign_flip_test,
)
from lusaug.inference.types import InferenceError, Interval, jsonable

__all__ = [
    "CANNOT",
    "HELPS",
    "HURTS",
    "NO_EVIDENCE",
    "POPULATION_METRICS",
    "RARE_ENDPOINTS",
    "VERDICTS",
    "ChanceInFamily",
    "Comparison",
    "Decision",
    "FamilyDecision",
    "InferenceError",
    "Interval",
    "MinimumDetectable",
    "NoiseFloor",
    "NonInferiority",
    "PairedEndpoint",
    "PatientCounts",
    "PatientEndpoints",
    "Placebo",
    "PopulationDifference",
    "PrimarySpec",
    "SampleSize",
    "SettingValue",
    "SignFlipResult",
    "VarianceParts",
    "chance_in_family",
    "compare",
    "compare_patients",
    "compare_population",
    "comparison_name",
    "decide",
    "decide_family",
    "descriptive_mean_bootstrap",
    "holm",
    "jsonable",
    "metric_from_counts",
    "min_attainable_p",
    "minimum_detectable",
    "noise_floor",
    "non_inferiority",
    "patient_counts",
    "patients_needed",
    "placebo_settings",
    "rare_patient_endpoints",
    "run_placebo",
    "sample_size",
    "setting_value",
    "sign_flip_test",
    "split_seeds",
]
