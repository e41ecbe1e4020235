"""Replicate records: appended one line each, cut lines ignored, resume by key, and the entries
read from a real evaluate output."""

from __future__ import annotations

import json

import pytest

from lusaug.calibration.records import (
    append_line,
    comparisons_from_report,
    done_keys,
    read_lines,
    replicate_key,
    with_true_effects,
)
from lusaug.core.config import PROJ_ROOT


def test_append_read_and_resume_after_a_cut_line(tmp_path):
    path = tmp_path / "calibration.jsonl"
    assert read_lines(path) == []
    append_line(path, {"key": replicate_key(4, 0), "status": "ok"})
    append_line(path, {"key": replicate_key(4, 1), "status": "failed", "error": "boom"})
    with path.open("a") as fh:  # an interruption in the middle of writing replicate 2
        fh.write('{"key": "rare4-r002", "sta')
    assert [r["key"] for r in read_lines(path)] == ["rare4-r000", "rare4-r001"]
    assert done_keys(read_lines(path)) == {"rare4-r000", "rare4-r001"}
    assert done_keys(read_lines(path), retry_failed=True) == {"rare4-r000"}
    append_line(path, {"key": replicate_key(4, 2), "status": "ok"})  # the resumed replicate
    assert [r["key"] for r in read_lines(path)] == ["rare4-r000", "rare4-r001", "rare4-r002"]
    assert len(path.read_text().splitlines()) == 4  # the cut line stays on a line of its own


def test_comparisons_from_a_real_comparison_json():
    report_path = PROJ_ROOT / "metrics" / "comparison.json"
    if not report_path.exists():
        pytest.skip("no committed metrics/comparison.json")
    report = json.loads(report_path.read_text())
    roles = {"class_weights": "oracle", "oversample": "null"}
    comps = comparisons_from_report(report, roles, "recall", 4, {})
    by_name = {c["name"]: c for c in comps}
    placebos = {f"placebo ({a})" for a, p in report["placebos"].items() if "comparison" in p}
    assert placebos and set(by_name) == set(report["comparisons"]) | placebos
    for name, comp in report["comparisons"].items():
        got, ep = by_name[name], comp["rare"]["recall"]
        assert got["estimate"] == ep["estimate"] and got["p_exact"] == ep["test"]["p_value"]
        assert (got["lo"], got["hi"]) == (ep["interval"]["lo"], ep["interval"]["hi"])
        assert got["decision"] == comp["decision"]["verdict"]
        assert got["p_holm"] == comp["p_holm"]["recall"]
        assert got["role"] == roles.get(comp["strategy"], "other") and got["n_patients"] == 4
    for name in placebos:
        arch = name[len("placebo (") : -1]
        assert by_name[name]["role"] == "placebo"
        assert by_name[name]["decision"] == report["placebos"][arch]["verdict"]


def _comparison(strategy: str, control: str, estimate: float = 0.1) -> dict:
    rare = {
        "recall": {
            "estimate": estimate,
            "interval": {"lo": estimate - 0.2, "hi": estimate + 0.2},
            "test": {"p_value": 0.5},
        }
    }
    return {"strategy": strategy, "control": control, "architecture": "resnet", "rare": rare,
            "p_holm": {"recall": 1.0}, "decision": {"verdict": "cannot be shown"}}  # fmt: skip


def test_a_placebo_entry_is_a_placebo_and_a_missing_endpoint_is_an_error():
    placebo = _comparison("baseline (seed half 1)", "baseline (seed half 2)", 0.0)
    report = {
        "comparisons": {},
        "placebos": {
            "resnet": {"comparison": placebo, "verdict": "no difference"},
            "vit": {"not_run": "one baseline seed"},  # nothing to read: left out
        },
    }
    (comp,) = comparisons_from_report(report, {}, "recall", 4)
    assert comp["role"] == "placebo" and comp["estimate"] == 0.0
    assert comp["decision"] == "no difference" and comp["name"] == "placebo (resnet)"
    with pytest.raises(KeyError, match="auroc"):
        comparisons_from_report({"comparisons": {"x": placebo}}, {}, "auroc", 4)


def test_roles_by_strategy_and_control_and_true_effects_joined_later():
    report = {
        "comparisons": {
            "a": _comparison("synthetic-oracle", "oversample_matched-oracle"),
            "b": _comparison("synthetic-oracle", "baseline"),
        }
    }
    roles = {"synthetic-oracle vs oversample_matched-oracle": "oracle", "synthetic-oracle": "x"}
    with pytest.raises(ValueError, match="role 'x'"):
        comparisons_from_report(report, roles, "recall", 4)
    roles["synthetic-oracle"] = "other"
    comps = {c["name"]: c for c in comparisons_from_report(report, roles, "recall", 4)}
    assert comps["a"]["role"] == "oracle" and comps["b"]["role"] == "other"
    record = {"key": "rare4-r000", "n_rare_patients": 4, "comparisons": list(comps.values())}
    (joined,) = with_true_effects([record], {4: 0.2, 8: 0.3})
    truth = {c["name"]: c["true_effect"] for c in joined["comparisons"]}
    assert truth == {"a": 0.2, "b": None}
    assert record["comparisons"][0]["true_effect"] is None  # the input is not changed
