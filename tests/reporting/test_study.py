"""The whole write-up: every section, degraded sections, errors, the CLI, no torch import."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.core.config import PROJ_ROOT, load_params
from lusaug.reporting import (
    conclusion,
    costs,
    decision,
    final,
    patients,
    split,
    synthetic,
    table3,
    tuned_values,
)
from lusaug.reporting.study import ReportError
from tests.reporting.helpers import build, read

SECTIONS = (
    split.TITLE,
    table3.TITLE,
    table3.DIFF_TITLE,
    table3.SEED_TITLE,
    "The study's numbers beside ours",
    decision.TITLE,
    synthetic.TITLE,
    tuned_values.TITLE,
    final.TITLE,
    costs.TITLE,
    conclusion.TITLE,
)


def test_every_section_is_there_in_reading_order(cv_run):
    target = load_params(cv_run / "params.yaml").base.target_class
    _, text = build(cv_run)
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("## ")]
    wanted = [
        split.TITLE,
        table3.TITLE,
        patients.title(target),
        decision.TITLE,
        synthetic.TITLE,
        tuned_values.TITLE,
        final.TITLE,
        costs.TITLE,
        conclusion.TITLE,
    ]
    assert headings == wanted
    for title in SECTIONS:
        assert f" {title}\n" in text
    assert "Not available" not in text.split(f"## {costs.TITLE}")[0]  # every input is present


def test_header_names_profile_commit_folds_and_data(cv_run):
    git = ["git", "-C", str(cv_run), "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "run"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    params = load_params(cv_run / "params.yaml")
    split_json = read(cv_run, "reports/split.json")
    info = read(cv_run, "metrics/test.json")["test"]
    _, text = build(cv_run)
    head = text.split("\n## ", 1)[0]
    assert f"# Results of the `{params.base.profile}` profile run" in head
    assert f"`{sha}`" in head and "uncommitted" not in head
    assert f"{split_json['n_frames']} frames" in head
    assert f"{split_json['n_patients']} patients" in head
    assert f"{info['folds']} folds (split.folds {params.split.folds})" in head
    assert f"{info['frames']} frames, {info['videos']} videos, {info['patients']} patients" in head
    assert f"{params.base.image_size} px" in head
    for a in params.train.architectures.values():
        assert f"`{a.model}`" in head
    assert f"percentile bootstrap of patients ({info['bootstrap']} draws)" in head
    ev = params.evaluate
    assert f"primary `{ev.primary.strategy}` vs `{ev.primary.control}`" in head


def test_missing_optional_inputs_are_named_not_fatal(cv_run):
    for rel in (
        "metrics/comparison.json",
        "metrics/summary.json",
        "metrics/rare_patients.json",
        "metrics/selection.json",
        "metrics/validation.json",
        "reports/split.json",
        "reports/onnx_parity.json",
        "models/registered.json",
    ):
        (cv_run / rel).unlink()
    for path in cv_run.glob("metrics/fold-*"):
        shutil.rmtree(path)
    shutil.rmtree(cv_run / "params" / "tuned")
    shutil.rmtree(cv_run / "plots")
    _, text = build(cv_run, costs_log=cv_run / "logs" / "nothing.jsonl")
    for expected in (
        "metrics/comparison.json is missing (stage `evaluate`",
        "metrics/rare_patients.json is missing",
        "metrics/selection.json is missing",
        "metrics/validation.json is missing (stage `validate`",
        "reports/split.json is missing (stage `split`",
        "reports/onnx_parity.json is missing (stage `export`",
        "models/registered.json is missing (stage `register`",
        "no metrics/fold-<k>/synthetic_<G>.json",
        "params/tuned/fold-0.yaml (stage tune@0)",
        "nothing.jsonl does not exist",
        "plots/evaluate/figures/confusion_grid.png is missing",
    ):
        assert expected in text, expected
    assert f"## {table3.TITLE}" in text  # the core table is still there


def test_missing_test_json_is_an_error_naming_it(cv_run):
    (cv_run / "metrics" / "test.json").unlink()
    with pytest.raises(ReportError, match=r"metrics/test\.json not found.*evaluate"):
        build(cv_run)
    assert not (cv_run / "docs" / "results.md").exists()


def test_missing_params_is_an_error(cv_run):
    (cv_run / "params.yaml").unlink()
    with pytest.raises(ReportError, match=r"params\.yaml not found"):
        build(cv_run)


@pytest.mark.parametrize(
    "rel", ["metrics/test.json", "metrics/comparison.json", "metrics/fold-0/encoder.json"]
)
def test_malformed_json_is_an_error_naming_the_file(cv_run, rel):
    (cv_run / rel).write_text('{"settings": {')
    with pytest.raises(ReportError, match=rf"{rel} is not valid JSON"):
        build(cv_run)


def test_malformed_tuned_yaml_is_an_error(cv_run):
    (cv_run / "params/tuned/fold-0.yaml").write_text("a: [unclosed\n")
    with pytest.raises(ReportError, match=r"fold-0\.yaml is not valid YAML"):
        build(cv_run)


def test_hold_out_test_json_is_refused(cv_run):
    data = read(cv_run, "metrics/test.json")
    data["test_split"] = data.pop("test")
    (cv_run / "metrics/test.json").write_text(json.dumps(data))
    with pytest.raises(ReportError, match="hold-out pipeline"):
        build(cv_run)


def test_missing_conclusion_file_is_an_error(cv_run, tmp_path):
    with pytest.raises(ReportError, match="nope.md"):
        build(cv_run, conclusion=tmp_path / "nope.md")


def test_cli_writes_the_report_and_exits_2_on_a_bad_input(cv_run, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out" / "results.md"
    args = ["report", "--repo", str(cv_run), "--out", str(out)]
    args += ["--figures", str(tmp_path / "out" / "img"), "--title", "POCUS study"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# POCUS study\n")
    assert oct(os.stat(out).st_mode & 0o777) == "0o644"
    assert "figures in" in result.output
    (cv_run / "metrics" / "comparison.json").write_text("{")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "comparison.json is not valid JSON" in result.output
    (cv_run / "metrics" / "test.json").unlink()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "metrics/test.json not found" in result.output


def test_report_runs_without_torch(cv_run, tmp_path):
    code = (
        "import sys; from pathlib import Path;"
        "from lusaug.reporting.study import build_study_report as b;"
        f"r = Path({str(cv_run)!r});"
        "b(r, r / 'docs/r.md', r / 'docs/img', title='', costs_log=None, conclusion=None,"
        " reference=None);"
        "bad = [m for m in ('torch', 'mlflow', 'pandas', 'great_expectations') if m in sys.modules];"
        "assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJ_ROOT / "src"), str(PROJ_ROOT)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


def test_cli_default_writes_reports_study_md_and_leaves_the_committed_write_up(cv_run):
    committed = cv_run / "docs" / "results-pocus.md"
    committed.parent.mkdir(parents=True, exist_ok=True)
    committed.write_text("# our written-up run\n")
    result = CliRunner().invoke(app, ["report", "--repo", str(cv_run)])
    assert result.exit_code == 0, result.output
    assert (cv_run / "reports" / "study.md").read_text().startswith("# ")
    assert any((cv_run / "reports" / "study-figures").rglob("*.png"))
    assert committed.read_text() == "# our written-up run\n"
    assert not (cv_run / "docs" / "img" / "pocus").exists()
    result = CliRunner().invoke(app, ["report", "--repo", str(cv_run), "--out", str(committed)])
    assert result.exit_code == 0 and committed.read_text() != "# our written-up run\n"
