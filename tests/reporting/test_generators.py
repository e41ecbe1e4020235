"""The generator section: per-fold rows equal metrics/fold-<k>/*.json, targets, figures."""

from __future__ import annotations

from lusaug.core.config import load_params
from lusaug.reporting.synthetic import TITLE, figure_folds
from lusaug.reporting.targets import generator_targets
from tests.reporting.helpers import build, p1, read, row, section, table, write

TARGETS_HEADER = "| Generator | Fold | recognition |"


def _line(text: str, start: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(start))


def _fixed(x, digits):
    return "n/a" if x is None else f"{x:.{digits}f}"


def test_filter_and_fidelity_rows_equal_the_fold_metrics(cv_run):
    params = load_params(cv_run / "params.yaml")
    _, text = build(cv_run)
    part = section(text, TITLE)
    checked = 0
    for k in params.split.folds:
        for g in params.generate.enabled:
            m = read(cv_run, f"metrics/fold-{k}/synthetic_{g}.json")
            filt = row(part, f"`{g}` ({m['kind']})", str(k))
            kept = f"{m['kept']} of {m['candidates']}"
            assert filt[3] == (f"**blocked** ({kept} would be kept)" if m["blocked"] else kept)
            study = m["study_filter_pass_rate"]
            assert filt[5] == " / ".join(
                p1(study[s]) for s in ("candidates", "real_train", "real_val")
            )
            fid = row(part, f"`{g}`", str(k))
            rec, ref = m["recognition"], m["recognition_real_val"]
            assert fid[2] == (
                f"{p1(rec['rate'])} [{p1(rec['low'])}, {p1(rec['high'])}] ({p1(ref['rate'])})"
            )
            assert fid[3].startswith(
                f"{p1(m['memorisation']['rate'])} ({p1(m['memorisation']['real_val_rate'])})"
            )
            kid = (m.get("kid") or {}).get("mean")
            assert fid[4].startswith(_fixed(kid, 4))
            prdc = m.get("prdc") or {}
            assert fid[5].startswith(_fixed((prdc.get("precision") or {}).get("value"), 2))
            checked += 1
    assert checked == len(params.split.folds) * len(params.generate.enabled)


def test_targets_rows_are_computed_from_the_fold_metrics(cv_run):
    params = load_params(cv_run / "params.yaml")
    _, text = build(cv_run)
    part = section(text, TITLE)
    for k in params.split.folds:
        for g in params.generate.enabled:
            m = read(cv_run, f"metrics/fold-{k}/synthetic_{g}.json")
            targets = generator_targets(m, params.filter.max_memorisation_rate)
            got = row(table(part, TARGETS_HEADER), f"`{g}`", str(k))
            assert got[2:] == [t.cell() for t in targets]
            met = sum(t.status == "met" for t in targets)
            assert f"fold {k}: {met} of {len(targets)}" in _line(part, f"- `{g}`: targets met: ")


def test_a_zero_reference_reads_not_assessable_and_a_copying_generator_is_blocked(cv_run):
    params = load_params(cv_run / "params.yaml")
    k, g = params.split.folds[0], params.generate.enabled[0]
    rel = f"metrics/fold-{k}/synthetic_{g}.json"
    m = read(cv_run, rel)
    m["recognition"] = {"rate": 0.0, "low": 0.0, "high": 0.2, "n": 12}
    m["recognition_real_val"] = {"rate": 0.0, "low": 0.0, "high": 0.4, "n": 5}
    m["memorisation"]["rate"] = 0.25
    m.update(blocked=True, blocked_reason="memorisation rate 0.250 > filter.max_memorisation_rate")
    write(cv_run, rel, m)
    _, text = build(cv_run)
    part = section(text, TITLE)
    got = row(table(part, TARGETS_HEADER), f"`{g}`", str(k))
    assert got[2] == "not assessable (real reference 0: the classifier recognises none)"
    assert got[4].startswith("not met (25.0% >")
    assert f"`{g}` fold {k}: blocked: memorisation rate 0.250" in part
    assert "**blocked**" in row(part, f"`{g}` ({m['kind']})", str(k))[3]


def test_a_missing_fold_file_is_named_in_its_rows(cv_run):
    params = load_params(cv_run / "params.yaml")
    k, g = params.split.folds[-1], params.generate.enabled[-1]
    (cv_run / f"metrics/fold-{k}/synthetic_{g}.json").unlink()
    _, text = build(cv_run)
    assert f"missing: metrics/fold-{k}/synthetic_{g}.json (stage filter@{k}-{g})" in text


def test_figures_of_the_shown_folds_and_ti_grids_only_for_ti(cv_run):
    params = load_params(cv_run / "params.yaml")
    out, text = build(cv_run)
    img = out.parent / "img" / "study"
    for k in params.split.folds:
        for g in params.generate.enabled:
            kind = read(cv_run, f"metrics/fold-{k}/synthetic_{g}.json")["kind"]
            shown = k in figure_folds(params.split.folds)
            assert (img / f"fold-{k}/{g}/beside_real.png").exists() == shown
            assert (img / f"fold-{k}/{g}/filter_scatter.png").exists() == shown
            ti = img / f"fold-{k}/{g}/with_without_token.png"
            assert ti.exists() == (shown and kind == "textual_inversion")
            if shown:
                assert f"](img/study/fold-{k}/{g}/beside_real.png)" in text


def test_figure_folds_are_all_when_few_else_the_first():
    assert figure_folds([0, 1]) == [0, 1]
    assert figure_folds([0, 1, 2, 3]) == [0]
