"""The coordinator on a two-stage toy repository and a local cluster (seconds, not the micro run).

`s2` depends on `s1`'s output: it is submitted only once `s1` is done, with `s1`'s result from
the coordinator, and the checkout ends as a local `dvc repro` leaves it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster.conftest import start_dask
from tests.pipelines.helpers import BIN, run
from tests.workspace.helpers import commit, set_params, toy_repo

pytestmark = pytest.mark.slow  # a local Dask cluster and real dvc, ~40 s


def _outs(repo: Path) -> dict[str, list]:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {name: stage.get("outs", []) for name, stage in lock["stages"].items()}


def test_each_item_starts_after_its_upstream_and_the_checkout_ends_as_dvc_repro(tmp_path):
    repo = toy_repo(tmp_path / "repo")
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], repo)
    set_params(repo, a=5, b=3)
    commit(repo, "new params")
    local = tmp_path / "local"
    shutil.copytree(repo, local, symlinks=True)
    run(["dvc", "repro", "-q"], local)

    proc = run(["lusaug", "cluster", "repro", "--workers", "2", "--dashboard", ""], repo)
    lines = (proc.stdout + proc.stderr).splitlines()
    s1_done = next(i for i, line in enumerate(lines) if "s1: done (ran" in line)
    s2_start = next(i for i, line in enumerate(lines) if "s2: running on" in line)
    assert s1_done < s2_start, "\n".join(lines)
    assert "done in" in proc.stdout and "2 ran" in proc.stdout, proc.stdout[-2000:]
    assert "Data and pipelines are up to date." in run(["dvc", "status"], repo).stdout
    assert _outs(repo) == _outs(local)
    assert (repo / "m2.json").read_text() == (local / "m2.json").read_text() == '{"b": 3}'
    assert (repo / "d2/rest.txt").read_text() == "6"


# s1 and s3 start together on the two workers; s2 needs both. s3 waits for a file, so the test
# can kill s1's worker after s1 finished and before s2 is ready.
KILL_DVC_YAML = """\
stages:
  s1:
    cmd: python -c "open('o1.txt', 'w').write(open('one.txt').read())"
    deps: [one.txt]
    outs: [o1.txt]
  s3:
    cmd: python wait.py
    deps: [wait.py]
    outs: [o3.txt]
  s2:
    cmd: python -c "open('o2.txt', 'w').write(open('o1.txt').read() + open('o3.txt').read())"
    deps: [o1.txt, o3.txt]
    outs: [o2.txt]
"""
WAIT_PY = """\
import pathlib, time
go = pathlib.Path({go!r})
while not go.exists():
    time.sleep(0.2)
pathlib.Path("o3.txt").write_text("three")
"""
EVENT_WAIT_S = 240


def _wait_for_line(log: Path, pattern: str, proc) -> re.Match:
    deadline = time.monotonic() + EVENT_WAIT_S
    while not (found := re.search(pattern, log.read_text())):
        assert proc.poll() is None, f"the run ended before {pattern!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {pattern!r}:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    return found


def test_a_worker_lost_after_its_item_finished_costs_no_rerun(tmp_path):
    """The worker that ran s1 dies while s3 still runs: s2 gets s1's result from the
    coordinator, so s1 runs once (Dask would recompute a result that lived on the dead worker)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    go = tmp_path / "go"
    (repo / "dvc.yaml").write_text(KILL_DVC_YAML)
    (repo / "wait.py").write_text(WAIT_PY.format(go=str(go)))
    (repo / "one.txt").write_text("one")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")], repo)
    commit(repo, "three stages")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    dask = start_dask(tmp_path / "dask", env, workers=2)
    log = tmp_path / "cluster.log"
    try:
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["lusaug", "cluster", "repro", "--scheduler", dask.scheduler],
                cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            ran_s1 = _wait_for_line(log, r"s1: running on (tcp://\S+)", proc).group(1)
            ran_s3 = _wait_for_line(log, r"s3: running on (tcp://\S+)", proc).group(1)
            assert ran_s1 != ran_s3, log.read_text()
            _wait_for_line(log, r"s1: done \(ran", proc)
            (victim,) = [w for w in dask.workers if w.address == ran_s1]
            victim.kill()
            go.touch()
            proc.wait(timeout=EVENT_WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
    finally:
        dask.stop()
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert len(re.findall(r"s1: running on", text)) == 1, text
    assert re.search(rf"s2: running on {re.escape(ran_s3)}", text), text
    assert (repo / "o2.txt").read_text() == "onethree"
    assert "Data and pipelines are up to date." in run(["dvc", "status"], repo).stdout
