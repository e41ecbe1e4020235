"""The stage-cost log: aggregated per script, shown per stage with the slowest item."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lusaug.reporting.costs import TITLE, duration, item_label, read_stage_costs
from lusaug.reporting.outputs import ReportError
from tests.reporting.helpers import build, row, section


def _record(script: str, argv: list[str], started: float, wall: float, rss: float) -> str:
    line = {"script": script, "argv": argv, "started": started, "wall_s": wall}
    return json.dumps(line | {"peak_rss_mb": rss})


def costs_file(path: Path) -> Path:
    lines = [
        _record("frames", ["data/raw"], 1000.0, 10.0, 200.0),
        _record("train", ["data/splits/fold-0.csv", "m", "--fold", "0"], 1012.0, 60.0, 900.5),
        _record("train", ["data/splits/fold-1.csv", "m", "--fold", "1"], 1075.0, 95.5, 700.0),
        _record(
            "filter", ["ddpm_all", "data/splits/fold-1.csv", "--fold", "1"], 1172.0, 30.0, 1200.0
        ),
    ]
    path.write_text("\n".join(lines) + '\n{"script": "evaluate", "argv"\n')  # one torn line
    return path


def test_stage_costs_aggregate_per_script(tmp_path):
    c = read_stage_costs(costs_file(tmp_path / "stage_costs.jsonl"))
    assert [s.script for s in c.stages] == ["frames", "train", "filter"]
    train = c.stages[1]
    assert (train.count, train.total_wall_s, train.max_wall_s, train.max_peak_rss_mb) == (
        2,
        155.5,
        95.5,
        900.5,
    )
    assert train.slowest == "fold 1"
    assert c.wall_clock_s == pytest.approx(1202.0 - 1000.0) and c.bad_lines == 1


def test_item_labels_name_generator_and_fold():
    assert item_label(["ddpm_all", "data/splits/fold-1.csv", "--fold", "1"]) == "ddpm_all fold 1"
    assert item_label(["data/splits/fold-0.csv", "out", "--fold", "0"]) == "fold 0"
    assert item_label(["x.csv", "--strategy", "baseline", "--arch", "vit", "--seed", "2"]) == (
        "baseline-vit-2"
    )


def test_durations():
    assert [duration(s) for s in (42.04, 185.5, 4020)] == ["42.0 s", "3 min 06 s", "1 h 07 min"]


def test_cost_table_in_the_report(cv_run, tmp_path):
    _, text = build(cv_run, costs_log=costs_file(tmp_path / "costs.jsonl"))
    part = section(text, TITLE)
    assert row(part, "train") == ["train", "2", "2 min 36 s", "1 min 36 s (fold 1)", "900"]
    assert row(part, "**all**")[1:3] == ["4", "3 min 16 s"]
    assert "3 min 22 s of wall clock" in part and "1 unreadable line skipped" in part


def test_an_empty_log_is_an_error(tmp_path):
    log = tmp_path / "empty.jsonl"
    log.write_text("\n")
    with pytest.raises(ReportError, match="no stage-cost records"):
        read_stage_costs(log)
