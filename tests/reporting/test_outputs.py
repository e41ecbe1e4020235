"""Reading the run: the plan of settings, stale outputs refused, absent settings explained."""

from __future__ import annotations

import json

import pytest
import yaml

from lusaug.core.config import PROJ_ROOT, deep_merge, load_params, params_from_dict, parse_strategy
from lusaug.reporting.outputs import ReportError, RunOutputs, planned_settings
from tests.reporting.helpers import build, read, write


@pytest.mark.parametrize("profile", ["default", "micro", "pocus"])
def test_planned_settings_agree_with_the_train_plan(params_dict, profile):
    from lusaug.models.run_setup import planned_runs

    overlay = yaml.safe_load((PROJ_ROOT / "profiles" / f"{profile}.yaml").read_text()) or {}
    params = params_from_dict(deep_merge(params_dict, overlay))
    expected = list(dict.fromkeys(f"{r.strategy}-{r.arch}" for r in planned_runs(params.train)))
    assert planned_settings(params) == expected


def test_settings_params_do_not_plan_are_refused_as_left_over(cv_run):
    data = read(cv_run, "metrics/test.json")
    data["settings"]["oversample-nosucharch"] = next(iter(data["settings"].values()))
    write(cv_run, "metrics/test.json", data)
    with pytest.raises(
        ReportError, match=r"does not plan \(\['oversample-nosucharch'\]\).*left over"
    ):
        build(cv_run)


def test_an_absent_setting_is_explained_by_its_skipped_run_or_tuned_file(cv_run):
    params = load_params(cv_run / "params.yaml")
    tuned = next(s for s in params.train.strategies if parse_strategy(s).tuned)
    plain = next(
        s for s in params.train.strategies if not parse_strategy(s).tuned and s != "baseline"
    )
    arch, k = next(iter(params.train.architectures)), params.split.folds[-1]
    data = read(cv_run, "metrics/test.json")
    for s in (tuned, plain):
        del data["settings"][f"{s}-{arch}"]
    write(cv_run, "metrics/test.json", data)
    sections = yaml.safe_load((cv_run / f"params/tuned/fold-{k}.yaml").read_text())
    sections[tuned] = {"skipped": "no candidate passes"}
    (cv_run / f"params/tuned/fold-{k}.yaml").write_text(yaml.safe_dump(sections))
    skipped = cv_run / f"models/classifiers/fold-{k}/{plain}-{arch}-{params.train.seeds[0]}"
    skipped.mkdir(parents=True)
    (skipped / "skipped.json").write_text(json.dumps({"reason": "input missing"}))
    run = RunOutputs.load(cv_run)
    assert run.missing_settings() == {
        f"{tuned}-{arch}": f"fold {k}: no candidate passes",
        f"{plain}-{arch}": f"fold {k}: input missing",
    }
