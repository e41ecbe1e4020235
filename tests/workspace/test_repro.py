"""`lusaug repro`: a failing or interrupted `dvc repro` leaves the previous outputs in place."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.pipelines.helpers import BIN, run
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


def _stage_processes(repo: Path) -> list:
    import psutil

    return [p for p in psutil.process_iter(["cmdline", "cwd"])
            if p.info["cwd"] == str(repo) and "s2.py" in " ".join(p.info["cmdline"] or [])]  # fmt: skip


def test_sigterm_mid_stage_stops_dvc_and_the_stage_and_restores_its_outputs(tmp_path):
    """`kill <lusaug repro>` while s2 runs: dvc and s2's own process stop (a stage left running
    would write into the restored outputs), and s2's previous outputs are back."""
    repo = toy_repo(tmp_path / "repo")
    before = _digests(repo)
    set_params(repo, a=1, b=-2)  # s2 hangs after writing half of its outputs
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "repro.log").open("w")
    proc = subprocess.Popen([str(BIN / "lusaug"), "repro"], cwd=repo, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        part = repo / "d2/part.txt"  # dvc removes d2 before s2 writes it again
        while not (part.exists() and part.read_text().endswith("-2")):
            assert proc.poll() is None and time.monotonic() < deadline, "s2 never started"
            time.sleep(0.2)
        assert _stage_processes(repo), "s2 is not running"
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = (tmp_path / "repro.log").read_text()
    assert code != 0, text[-2000:]
    assert _stage_processes(repo) == [], "s2 outlived the run"
    assert _digests(repo) == before, text[-2000:]
    assert "restored the previous outputs of s2" in text, text[-2000:]


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


def test_a_successful_repro_drops_the_lock_entries_of_stages_dvc_yaml_no_longer_defines(tmp_path):
    """DVC keeps a removed stage's dvc.lock entry forever; a successful `lusaug repro` drops it
    and leaves the other entries as they were."""
    import yaml

    repo = toy_repo(tmp_path / "repo")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    lock["gone@0"] = lock["s1"]  # as a stage removed from dvc.yaml leaves it
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": lock}))
    run(["dvc", "repro"], repo)
    assert "gone@0" in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]  # DVC keeps it
    proc = run(["lusaug", "repro"], repo)
    after = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert sorted(after) == ["s1", "s2"]
    assert after["s1"] == lock["s1"] and after["s2"] == lock["s2"]
    assert "dropped the dvc.lock entries of gone@0" in proc.stderr
