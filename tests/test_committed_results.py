"""Committed results match the code: what dvc.lock says made them is what the tree holds.

dvc.lock records, for every stage, the hash of each code dependency it ran (``pipelines/``,
``src/``), the params values it read and the hash of each output; the outputs that git holds
(``cache: false`` in dvc.yaml: metrics/, reports/, params/tuned/, filter tables,
models/registered.json) were made by exactly that. When code or params change after those
outputs were committed, the repository shows results that its code no longer produces.

DVC itself compares (``dvc status``, its Python API): this test keeps what concerns code,
params, the stage command and the committed outputs, and ignores data that a clean clone does
not have (``data/raw``, the DVC cache: "deleted", "not in cache"). It runs in CI on a clean
clone and on a working tree alike.

EXPECTED TO FAIL on a branch that changed code or params until its outputs are made again:
``make run`` (``dvc repro``) from a clean tree, then commit dvc.lock and the outputs git holds.
Run it alone: ``python -m pytest -m committed_results -q``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lusaug.core.config import PROJ_ROOT

pytestmark = pytest.mark.committed_results

CODE_DIRS = ("pipelines/", "src/")
ABSENT_DATA = {"deleted", "not in cache"}  # what a clean clone lacks: not a mismatch
COMMITTED_OUTPUTS = (
    "dvc.lock, metrics/, reports/ (ingest, split, comparison.md, onnx_parity), params/tuned/, "
    "models/registered.json and data/synthetic/fold-*/*/filter.csv"
)


def _mismatches(status: dict) -> dict[str, list[str]]:
    """Per stage: the code deps, params, command and committed outputs that differ from
    dvc.lock (``dvc status`` entries, data a clean clone lacks left out)."""
    found: dict[str, list[str]] = {}
    for stage, entries in status.items():
        if stage.endswith(".dvc"):  # data.dvc: data, not code
            continue
        why: list[str] = []
        for entry in entries:
            if isinstance(entry, str):  # "changed command", "always changed"
                why.append(entry)
                continue
            for path, state in entry.get("changed deps", {}).items():
                if isinstance(state, dict):  # a params file: key -> new | modified | deleted
                    why += [f"param {key} {s}" for key, s in sorted(state.items())]
                elif path.startswith(CODE_DIRS):
                    why.append(f"code {path} {state}")
            for path, state in entry.get("changed outs", {}).items():
                if state not in ABSENT_DATA:
                    why.append(f"committed output {path} {state}")
        if why:
            found[stage] = why
    return found


def test_the_mismatch_filter_keeps_code_params_and_committed_outputs():
    """Data a clean clone lacks is not a mismatch; code, params and edited outputs are."""
    status = {
        "data.dvc": [{"changed outs": {"data/raw": "not in cache"}}],
        "frames": [
            {"changed deps": {"data/raw": "deleted", "src/lusaug/data": "modified"}},
            {"changed outs": {"data/frames": "not in cache"}},
        ],
        "split": [{"changed deps": {"data/frames.csv": "deleted"}}],
        "tune@0": [
            {"changed deps": {"params.yaml": {"tune.n_trials": "modified"}}},
            {"changed outs": {"params/tuned/fold-0.yaml": "modified"}},
        ],
        "export": ["changed command"],
    }
    assert _mismatches(status) == {
        "frames": ["code src/lusaug/data modified"],
        "tune@0": [
            "param tune.n_trials modified",
            "committed output params/tuned/fold-0.yaml modified",
        ],
        "export": ["changed command"],
    }


def test_dvc_lock_matches_the_code_and_params_of_the_tree():
    if not (PROJ_ROOT / ".dvc").is_dir() or not (PROJ_ROOT / "dvc.lock").is_file():
        pytest.skip("not a DVC repository with a dvc.lock (a copy without .dvc/)")
    from dvc.repo import Repo

    with Repo(str(PROJ_ROOT)) as repo:
        found = _mismatches(repo.status())
    lines = [f"  {stage}: {'; '.join(why)}" for stage, why in sorted(found.items())]
    assert not found, (
        "the committed results were not made by this code and these params (dvc.lock differs "
        f"from the tree in {len(found)} stage(s)):\n" + "\n".join(lines) + "\n"
        "Make them again from a clean tree and commit them: `make run` (or `dvc repro`), then "
        f"`git add` {COMMITTED_OUTPUTS} and commit (see README, 'Committed results')."
    )


MAX_METRICS_COLUMNS = 200  # issue 22: the headline must fit a wide terminal


def test_dvc_metrics_show_of_the_committed_run_fits_200_columns():
    """`dvc metrics show` on the committed default run: one file, the headline, < 200 columns."""
    import shutil
    import subprocess
    import sys

    if not (PROJ_ROOT / ".dvc").is_dir():
        pytest.skip("not a DVC repository (a copy without .dvc/)")
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    shown = subprocess.run(
        [dvc, "metrics", "show"], cwd=PROJ_ROOT, capture_output=True, text=True, check=True
    ).stdout
    lines = shown.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["metrics/summary.json"], shown
    assert max(map(len, lines)) < MAX_METRICS_COLUMNS, shown


def test_dvc_lock_holds_only_stages_that_dvc_yaml_defines():
    """DVC never drops the lock entry of a stage removed from dvc.yaml: a stale entry is a
    record of results no stage makes any more (`lusaug repro` prunes them)."""
    if not (PROJ_ROOT / ".dvc").is_dir() or not (PROJ_ROOT / "dvc.lock").is_file():
        pytest.skip("not a DVC repository with a dvc.lock (a copy without .dvc/)")
    from dvc.repo import Repo
    from dvc.utils.serialize import load_yaml

    with Repo(str(PROJ_ROOT)) as repo:
        defined = {stage.addressing for stage in repo.index.stages}
    locked = set((load_yaml(str(PROJ_ROOT / "dvc.lock")) or {}).get("stages", {}))
    assert sorted(locked - defined) == []
