"""`lusaug repro`: a failing or interrupted `dvc repro` leaves the previous outputs in place."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.pipelines.helpers import run
from tests.workspace.helpers import commit, set_params, toy_repo

pytestmark = pytest.mark.slow  # real dvc repro in a temp repository, ~10 s each

OUTPUTS = ("o1.txt", "d2/part.txt", "d2/rest.txt", "m2.json", "dvc.lock")


def _digests(repo: Path) -> dict[str, str]:
    return {p: hashlib.sha1((repo / p).read_bytes()).hexdigest() for p in OUTPUTS}


def test_plain_dvc_repro_loses_the_failed_stages_outputs(tmp_path):
    """Why the wrapper exists: DVC removes s2's outputs before s2 fails."""
    repo = toy_repo(tmp_path / "repo")
    set_params(repo, b=-1)
    assert run(["dvc", "repro"], repo, check=False).returncode != 0
    assert not (repo / "d2/rest.txt").exists()
    assert (repo / "m2.json").read_text() == "{"


def test_failing_late_stage_keeps_its_previous_outputs_and_the_earlier_ones(tmp_path):
    repo = toy_repo(tmp_path / "repo")
    set_params(repo, a=5, b=3)  # a previous run that was not committed: git holds b = 2
    run(["lusaug", "repro"], repo)
    before = _digests(repo)
    assert (repo / "m2.json").read_text() == '{"b": 3}'
    set_params(repo, a=7, b=-1)  # s1 re-runs and succeeds, s2 fails half-way
    proc = run(["lusaug", "repro"], repo, check=False)
    assert proc.returncode == 255, proc.stderr[-2000:]
    after = _digests(repo)
    assert (repo / "o1.txt").read_text() == "7"  # s1 finished: its new output stays
    for path in ("d2/part.txt", "d2/rest.txt", "m2.json"):
        assert after[path] == before[path], path  # s2's previous outputs, byte for byte
    assert (repo / "m2.json").read_text() == '{"b": 3}'  # the copy, not git's older b = 2
    assert sorted(p.name for p in (repo / "d2").iterdir()) == ["part.txt", "rest.txt"]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("lusaug repro:")]
    assert "restored the previous outputs of s2" in line
    assert "d2 from the DVC cache" in line and "m2.json from the copy" in line
    status = run(["dvc", "status", "--json"], repo).stdout
    assert '"s2"' in status and "changed outs" not in status  # stale deps, intact outputs


def test_a_stage_that_never_started_keeps_hand_edits(tmp_path):
    """Only what the run touched is put back: s2 never runs when s1 fails."""
    repo = toy_repo(tmp_path / "repo")
    (repo / "m2.json").write_text('{"b": "edited by hand"}')
    (repo / "dvc.yaml").write_text((repo / "dvc.yaml").read_text().replace("['a']", "['nope']"))
    proc = run(["lusaug", "repro"], repo, check=False)
    assert proc.returncode != 0
    assert (repo / "m2.json").read_text() == '{"b": "edited by hand"}'
    assert (repo / "o1.txt").read_text() == "1"  # s1's own output is back from the cache
    assert "restored the previous outputs of s1: o1.txt from the DVC cache" in proc.stderr


def test_missing_data_says_how_to_get_it(tmp_path):
    repo = toy_repo(tmp_path / "repo")
    (repo / "raw").mkdir()
    (repo / "raw/a.txt").write_text("1")
    run(["dvc", "add", "-q", "raw"], repo)
    (repo / "dvc.yaml").write_text(
        (repo / "dvc.yaml")
        .read_text()
        .replace("deps: [s2.py, o1.txt]", "deps: [s2.py, o1.txt, raw]")
    )
    run(["dvc", "repro", "-q"], repo)
    commit(repo, "raw data")
    shutil.rmtree(repo / "raw")  # a fresh clone: git ignores the data, DVC has not pulled it
    proc = run(["lusaug", "repro"], repo, check=False)
    assert proc.returncode != 0
    assert "raw is missing or empty: run `make data`" in proc.stderr, proc.stderr[-2000:]
