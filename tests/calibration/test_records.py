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
    comps = comparisons_from_report(
        report, {"class_weights": "oracle", "oversample": "null"}, "recall_viral", 4, {}
    )
    by_name = {c["name"]: c for c in comps}
    assert set(by_name) == set(report["comparisons"])
    for name, comp in report["comparisons"].items():
        got = by_name[name]
        assert got["estimate"] == comp["recall_viral"]["diff"]
        assert (got["lo"], got["hi"]) == (comp["recall_viral"]["lo"], comp["recall_viral"]["hi"])
        assert got["decision"] == comp["decision"]
        expected = {"class_weights": "oracle", "oversample": "null"}.get(comp["strategy"], "other")
        assert got["role"] == expected and got["n_patients"] == 4


def test_a_placebo_entry_is_a_placebo_and_a_missing_endpoint_is_an_error():
    entry = {"strategy": "baseline", "decision": "no difference", "recall_viral": {"diff": 0.0}}
    report = {"comparisons": {}, "placebo": {**entry, "strategy": "placebo"}}
    (comp,) = comparisons_from_report(report, {}, "recall_viral", 4)
    assert comp["role"] == "placebo" and comp["estimate"] == 0.0
    with pytest.raises(KeyError, match="auroc_viral"):
        comparisons_from_report({"comparisons": {"x": entry}}, {}, "auroc_viral", 4)


def test_roles_by_strategy_and_control_and_true_effects_joined_later():
    ep = {"diff": 0.1, "lo": -0.1, "hi": 0.3}
    report = {
        "comparisons": {
            "a": {
                "strategy": "synthetic-oracle",
                "control": "oversample_matched-oracle",
                "recall_viral": ep,
            },
            "b": {"strategy": "synthetic-oracle", "baseline": "baseline", "recall_viral": ep},
        }
    }
    roles = {"synthetic-oracle vs oversample_matched-oracle": "oracle", "synthetic-oracle": "x"}
    with pytest.raises(ValueError, match="role 'x'"):
        comparisons_from_report(report, roles, "recall_viral", 4)
    roles["synthetic-oracle"] = "other"
    comps = {c["name"]: c for c in comparisons_from_report(report, roles, "recall_viral", 4)}
    assert comps["a"]["role"] == "oracle" and comps["b"]["role"] == "other"
    record = {"key": "rare4-r000", "n_rare_patients": 4, "comparisons": list(comps.values())}
    (joined,) = with_true_effects([record], {4: 0.2, 8: 0.3})
    truth = {c["name"]: c["true_effect"] for c in joined["comparisons"]}
    assert truth == {"a": 0.2, "b": None}
    assert record["comparisons"][0]["true_effect"] is None  # the input is not changed
