"""Results serialise to strict JSON (NaN -> null) for metrics/comparison.json and MLflow."""

from __future__ import annotations

import json

import numpy as np

from lusaug.inference import compare, decide, jsonable, sign_flip_test
from tests.inference.builders import endpoints, one_run_counts


def test_a_comparison_and_its_decision_are_strict_json():
    counts = one_run_counts()
    c = compare(
        (endpoints([0.3, 0.1, 0.2, 0.0]), counts),
        (endpoints(np.zeros(4)), counts),
        ("s", "b", "v"),
    )
    d = decide(c, "auroc", alpha=0.05, margin=0.02)
    back = json.loads(json.dumps({"c": c.to_dict(), "d": d.to_dict()}, allow_nan=False))
    rare = back["c"]["rare"]["recall"]
    assert rare["test"]["p_value"] == 0.25 and rare["test"]["method"].startswith("exact")
    assert rare["per_patient"] == {"p0": 0.3, "p1": 0.1, "p2": 0.2, "p3": 0.0}
    assert rare["variance"]["run"] is None  # one run per arm: not estimable, NaN -> null
    assert back["d"]["verdict"] == "cannot be shown"
    assert back["d"]["non_inferiority"]["non_inferior"] is True
    assert back["c"]["population"]["f1_macro"]["interval"]["basis"] == "verdict"


def test_jsonable_handles_numpy_and_non_finite_values():
    out = jsonable({"a": np.float32(0.5), "b": np.int64(3), "c": np.array([1.0, np.inf])})
    assert out == {"a": 0.5, "b": 3, "c": [1.0, None]}
    assert jsonable(sign_flip_test([1.0, 2.0]))["n_nonzero"] == 2
