"""The folds' counts, fallbacks and linked patients, and the validation summary across folds."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.split import SPLITS, TITLE
from tests.reporting.helpers import build, read, row, section, write


def _cell(d: dict) -> str:
    return f"{d['patients']} / {d['videos']} / {d['frames']}"


def test_counts_per_fold_class_and_split_equal_split_json(cv_run):
    classes = load_params(cv_run / "params.yaml").base.classes
    split = read(cv_run, "reports/split.json")
    _, text = build(cv_run)
    part = section(text, TITLE)
    for k, fold in split["folds"].items():
        for c in classes:
            assert row(part, f"fold {k}", c)[2:] == [_cell(fold["classes"][c][s]) for s in SPLITS]
        assert row(part, f"fold {k}", "**all**")[2:] == [_cell(fold["totals"][s]) for s in SPLITS]
        if fold["val_missing"]:
            assert f"fold {k}: {', '.join(fold['val_missing'])}" in part
    if "final" in split:
        assert row(part, "final model", "**all**")[2:] == [
            _cell(split["final"]["totals"][s]) for s in SPLITS
        ]


def test_validation_summary_counts_every_expectation_once(cv_run):
    v = read(cv_run, "metrics/validation.json")
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert f"{v['successful_expectations']} of {v['evaluated_expectations']} expectations" in part
    assert ("passed" if v["success"] else "FAILED") in part
    checks = {e["suite"].partition(".")[2] for e in v["expectations"]}
    total = 0
    for check in checks:
        for cell in row(part, check)[1:]:
            if cell != "-":
                total += int(cell.split(" / ")[1])
    assert total == v["evaluated_expectations"]


def test_a_failed_cross_fold_check_is_listed(cv_run):
    v = read(cv_run, "metrics/validation.json")
    v["success"] = False
    v["offenders"]["cross_fold"]["patients_not_tested_once"] = {"p7": [0, 1]}
    write(cv_run, "metrics/validation.json", v)
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert "FAILED" in part and "across folds: patients_not_tested_once: {'p7': [0, 1]}" in part


def test_linked_patients_are_listed_with_their_folds_and_reason(cv_run):
    split = read(cv_run, "reports/split.json")
    reason = "patients 192 and 198 share near-identical frames a.png and b.png"
    split["linked_patients"]["groups"] = [
        {
            "patients": ["192", "198"],
            "labels": ["pneumonia"],
            "split": {"0": ["test"], "1": ["train"]},
            "links": [{"patients": ["192", "198"], "reason": reason}],
        }
    ]
    split["multi_class_patients"] = ["7"]
    write(cv_run, "reports/split.json", split)
    _, text = build(cv_run)
    assert f"- patients 192, 198 → fold 0: test; fold 1: train: {reason}" in text
    assert "more than one class (their frames stay in one split): 7." in text
