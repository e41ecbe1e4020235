"""Tuned values per fold from params/tuned/fold-<k>.yaml, and whether tuning moved the result."""

from __future__ import annotations

import yaml

from lusaug.core.config import load_params, parse_strategy
from lusaug.reporting.tuned_values import TITLE, untuned_of
from tests.reporting.helpers import build, p1, read, row, section


def _tuned(repo, k):
    return yaml.safe_load((repo / f"params/tuned/fold-{k}.yaml").read_text())


def test_tuned_values_per_fold_equal_the_tuned_files(cv_run):
    params = load_params(cv_run / "params.yaml")
    tuned = [s for s in params.train.strategies if parse_strategy(s).tuned]
    _, text = build(cv_run)
    part = section(text, TITLE)
    for k in params.split.folds:
        sections = _tuned(cv_run, k)
        for s in tuned:
            got, sec = row(part, str(k), f"`{s}`"), sections[s]
            if "blocked" in sec or "skipped" in sec:
                assert got[2].startswith(("blocked", "skipped"))
                continue
            weights = ", ".join(f"{c} {w:.2f}" for c, w in sec["class_weights"].items())
            assert got[3:5] == [weights, format(sec["lr"], ".3g")]
            if "filter" in sec:
                f = sec["filter"]
                assert got[5] == (
                    f"std > {f['min_std']:.2f}, entropy > {f['min_entropy']:.2f}: "
                    f"{len(f['kept'])} kept"
                )


def test_blocked_and_skipped_studies_say_why(cv_run):
    params = load_params(cv_run / "params.yaml")
    s = next(s for s in params.train.strategies if parse_strategy(s).tuned)
    k = params.split.folds[0]
    sections = _tuned(cv_run, k)
    sections[s] = {"skipped": "no candidate of ddpm_all passes the fold's filter"}
    (cv_run / f"params/tuned/fold-{k}.yaml").write_text(yaml.safe_dump(sections))
    _, text = build(cv_run)
    got = row(section(text, TITLE), str(k), f"`{s}`")
    assert got[2] == "skipped: no candidate of ddpm_all passes the fold's filter"


def test_tuned_against_untuned_pooled_estimates(cv_run):
    params = load_params(cv_run / "params.yaml")
    t = params.base.target_class
    settings = read(cv_run, "metrics/test.json")["settings"]
    _, text = build(cv_run)
    part = section(text, TITLE)
    pairs = 0
    for s in params.train.strategies:
        plain = untuned_of(s)
        if not parse_strategy(s).tuned or plain not in params.train.strategies:
            continue
        for a in params.train.architectures:
            mine, theirs = settings.get(f"{s}-{a}"), settings.get(f"{plain}-{a}")
            got = row(part, f"`{s}` vs `{plain}`", a)
            if mine is None or theirs is None:
                assert got[2] == "not evaluated"
                continue
            f1 = f"{p1(mine['f1_macro'])} vs {p1(theirs['f1_macro'])}"
            assert got[2].startswith(f1)
            assert got[3].startswith(f"{p1(mine[f'recall_{t}'])} vs {p1(theirs[f'recall_{t}'])}")
            pairs += 1
    assert "these pairs have no interval" in part
    assert pairs or "nothing to compare" in part


def test_untuned_counterparts():
    assert untuned_of("class_weights_tuned") == "class_weights"
    assert untuned_of("synthetic_tuned-ddpm_all") == "synthetic-ddpm_all"
    assert untuned_of("baseline") == ""
