"""`lusaug cluster repro` on a real Dask scheduler and two worker processes, with the team stack
(PostgreSQL for MLflow and Optuna, moto's S3 as the DVC remote and artifact store, `mlflow
server` of its own), on the team test's micro run (tests/team/stack.py: one hold-out fold and
the final split, one generator, four strategies; the cluster is under test here, tests/pipelines
runs every strategy), up to `evaluate`: the cross-validated answer. The final split's items
(encoder@final ... export) are items of the same kinds, whose local run tests/team checks; leaving
them out halves the test.

In order, one checkout:
1. a commit whose one generator has broken params: the run stops naming that item, with its log,
   and the items already running finish into the checkout;
2. the fixed commit: the items step 1 finished are not run again; the checkout ends as a plain
   `dvc repro evaluate` of the same params, code and data leaves it (dvc.lock outputs,
   metrics/test.json and comparison.json):
   the team's repro, which tests/team reads too; `dvc repro` here has nothing to do, and MLflow
   holds every run once;
3. a fresh clone re-runs `train@0`; `kill -9` of its worker mid-item: the item finishes on the
   other worker, resumed from the checkpoints in S3, with identical runs.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from lusaug.cluster.plan import read_plan
from lusaug.cluster.worktree import merge_lock_entries
from tests.cluster.conftest import DaskCluster, start_dask
from tests.pipelines.helpers import micro_repo
from tests.team.helpers import git_commit_all, run, team_env
from tests.team.stack import (
    DVC_BUCKET,
    TEAM_GENERATOR,
    TeamRepro,
    TrackingServer,
    add_s3_remote,
    team_params,
    tracking_server_on,
)

pytestmark = pytest.mark.slow

GENERATOR = TEAM_GENERATOR
TARGET = "evaluate"  # the cross-validated answer (everything but the final split's refit)
STORE = "cluster"  # the cluster's DVC remote: s3://dvc/cluster (the team's is s3://dvc/store)
SYNC_S = "2"  # checkpoint copies every 2 s, so a killed train item has something to resume
KILL_WAIT_S = 1800
# Outputs whose bytes hold wall-clock seconds or the MLflow run ids of their run, so no two runs
# (here: the cluster's runs on the team server, the reference's on its own mlflow.db) agree on
# their hash, until the outputs are made byte-stable. What each holds is in the report.
TIMED_OUTS = [
    "metrics/fold-*/encoder.json",  # seconds
    "models/fold-*/encoder",
    "models/fold-*/base_model",  # train_seconds, mlflow_run_id
    "models/fold-*/generators/*",  # train_seconds, mlflow_run_id
    "metrics/fold-*/synthetic_*.json",  # mlflow_run_id
    "models/classifiers/fold-*",  # run.json/val_metrics.json: seconds, MLflow run ids
    "models/final",
    "metrics/final.json",  # mlflow_run_id
    "models/registered.json",  # run ids
    "plots/tune/fold-*",  # the study's history plot: trial times
    "models/onnx",  # export: the registered version's metadata
    "reports/onnx_parity.json",
]
DONE = re.compile(r"\] +(\S+): done \((\w[\w-]*),")


@dataclass
class Stack:
    repo: Path
    env: dict[str, str]
    server: TrackingServer
    dask: DaskCluster
    root: Path
    reference: TeamRepro  # a plain `dvc repro` of the same params, code and data
    outputs: dict[str, str] = field(default_factory=dict)  # step -> coordinator output


def _params(repo: Path) -> dict:
    return yaml.safe_load((repo / "params.yaml").read_text())


def _write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def stack(team_repro, postgres, s3, dask_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    (root / "repo").mkdir()
    repo = micro_repo(root / "repo")
    # MLflow of its own (the team's registry and runs stay the team's); Optuna on PostgreSQL
    server = tracking_server_on(postgres, s3, "cluster", root / "mlflow-server.log")
    try:
        team_params(repo, storage=postgres.create_database("cluster_optuna"))
        env = team_env(server.url)
        add_s3_remote(repo, s3, env, prefix=STORE)
        git_commit_all(repo, "micro, team stores, S3 remote")
        dask = start_dask(dask_folder, env, workers=2)
        try:
            yield Stack(repo, env, server, dask, root, team_repro)
        finally:
            dask.stop()
    finally:
        server.server.stop()


def _cluster_repro(stack: Stack, repo: Path, *args: str, check: bool = True):
    cmd = ["lusaug", "cluster", "repro", *args, "--scheduler", stack.dask.scheduler,
           "--checkpoint-every", SYNC_S]  # fmt: skip
    return run(cmd, repo, stack.env, check=check)


def _statuses(output: str) -> dict[str, str]:
    return dict(DONE.findall(output))


def _lock(repo: Path) -> dict:
    return yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


def test_1_an_item_with_broken_params_stops_the_run_with_its_name_and_log(stack):
    params = _params(stack.repo)
    params["generate"]["ddpm"]["learning_rate"] = -1.0  # AdamW refuses it when the item runs
    _write_params(stack.repo, params)
    git_commit_all(stack.repo, "a broken generator")
    proc = _cluster_repro(stack, stack.repo, TARGET, check=False)
    stack.outputs["broken"] = proc.stdout
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = re.search(rf"generate@0-{GENERATOR} failed; the run stopped", proc.stderr)
    assert failed, proc.stderr[-3000:]
    assert "Invalid learning rate" in proc.stderr  # the stage's own error, from its log tail
    lock = _lock(stack.repo)
    committed = yaml.safe_load(
        subprocess.run(["git", "show", "HEAD:dvc.lock"], cwd=stack.repo, capture_output=True,
                       text=True, check=True).stdout
    )["stages"]  # fmt: skip
    for name in ("frames", "split", "validate", "base_model@0"):
        assert lock[name] != committed.get(name), f"{name} finished: its entry is in dvc.lock"
    for name in ("train@0", "evaluate", "final"):  # never reached: as committed
        assert lock.get(name) == committed.get(name), name


def test_2_the_checkout_ends_as_a_local_dvc_repro_leaves_it(stack):
    before = subprocess.run(
        ["git", "show", "HEAD~1:params.yaml"], cwd=stack.repo, capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    (stack.repo / "params.yaml").write_text(before)
    git_commit_all(stack.repo, "generator fixed")
    proc = _cluster_repro(stack, stack.repo, TARGET)
    stack.outputs["fixed"] = proc.stdout
    status = _statuses(proc.stdout)
    planned = {item.name for item in read_plan(stack.repo, [TARGET]).items}
    assert set(status) == planned, status
    assert "final" not in planned and "train@0" in planned
    # items the stopped run finished are not run again
    for name in ("frames", "split", "validate", "base_model@0"):
        assert status[name] in ("adopted", "unchanged"), (name, status)
    assert status["train@0"] == "ran" and status[f"generate@0-{GENERATOR}"] in ("ran",)
    # nothing left for DVC to do here
    status_cmd = ["dvc", "status", TARGET, "--with-deps", "--json"]
    assert json.loads(run(status_cmd, stack.repo, stack.env).stdout) == {}
    again = run(["dvc", "repro", TARGET], stack.repo, stack.env).stdout
    assert "Running stage" not in again, again[-2000:]

    mine, theirs = _lock(stack.repo), json.loads(json.dumps(stack.reference.lock))
    for lock in (mine, theirs):  # the one param that differs, by design (above)
        for entry in lock.values():
            tune = entry.get("params", {}).get("params.yaml", {}).get("tune")
            if isinstance(tune, dict):
                tune.pop("storage", None)
    differ = set()
    for name in status:
        assert mine[name].get("params") == theirs[name].get("params"), name
        assert mine[name]["cmd"] == theirs[name]["cmd"], name
        for kind in ("outs", "deps"):
            a = {o["path"]: o["md5"] for o in mine[name].get(kind, [])}
            b = {o["path"]: o["md5"] for o in theirs[name].get(kind, [])}
            assert a.keys() == b.keys(), (name, kind)
            differ |= {(name, kind, path) for path in a if a[path] != b[path]}
    print("outputs and dependencies that differ from a local dvc repro:", sorted(differ))
    outs = {path for _, kind, path in differ if kind == "outs"}
    # check_params hashes the whole params.yaml, which differs by that same tune.storage
    deps = {path for name, kind, path in differ if kind == "deps" and name != "check_params"}
    for metrics in ("metrics/test.json", "metrics/comparison.json"):
        assert (stack.repo / metrics).read_bytes() == stack.reference.metrics[metrics], metrics

    # MLflow: every run once (finished runs, by name and fold, across the experiments)
    client = MlflowClient(tracking_uri=stack.server.url)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, "attributes.status = 'FINISHED'", max_results=5000)
    keys = Counter((r.info.experiment_id, r.info.run_name, r.data.tags.get("fold", ""))
                   for r in runs)  # fmt: skip
    assert [k for k, n in keys.items() if n > 1] == []
    p = _params(stack.repo)
    trained = [r for r in runs if r.data.tags.get("lusaug.role") == "train"]
    per_fold = len(p["train"]["strategies"]) * len(p["train"]["architectures"])
    assert len(trained) == per_fold * len(p["split"]["folds"]) * len(p["train"]["seeds"])
    git_commit_all(stack.repo, "results of the cluster run")
    # last, so that the kill test still has its commit: only timed outputs differ
    timed = sorted(o for o in outs if not any(fnmatch.fnmatch(o, p) for p in TIMED_OUTS))
    assert timed == [], f"deterministic outputs that differ: {timed}"
    assert all(any(d == o or d.startswith(f"{o}/") or o.startswith(f"{d}/") for o in outs)
               for d in deps), f"dependencies that differ: {sorted(differ)}"  # fmt: skip
    assert len(differ) < sum(len(mine[n].get("outs", [])) for n in status)  # most are equal


def _wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout_s} s")
        time.sleep(0.5)


def test_3_a_killed_worker_s_item_resumes_on_the_other_from_the_store(stack):
    import psutil
    import torch

    repo = stack.root / "kill"
    subprocess.run(["git", "clone", "-q", str(stack.repo), str(repo)], check=True)
    merge_lock_entries(repo, {"train@0": None})  # as if train@0 had never run here ...
    s3 = stack.server.s3
    prefix = f"{STORE}/lusaug-cluster/"
    for key in s3.keys(DVC_BUCKET, f"{prefix}records/train_at_0/"):  # ... nor anywhere
        s3.client().delete_object(Bucket=DVC_BUCKET, Key=key)
    log = stack.root / "kill.log"
    cmd = ["lusaug", "cluster", "repro", "train@0", "--scheduler", stack.dask.scheduler,
           "--checkpoint-every", SYNC_S]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=stack.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        running = re.compile(r"train@0: running on (tcp://\S+)")
        _wait_for(lambda: running.search(log.read_text()), KILL_WAIT_S, "train@0 start", proc)
        address = running.search(log.read_text()).group(1)
        _wait_for(
            lambda: any(k.endswith("manifest.json")
                        for k in s3.keys(DVC_BUCKET, f"{prefix}checkpoints/train_at_0/")),
            KILL_WAIT_S, "checkpoint of train@0 in S3", proc,
        )  # fmt: skip
        (victim,) = [w for w in stack.dask.workers if w.address == address]
        victim.kill()
        proc.wait(timeout=KILL_WAIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode == 0, text[-4000:]
    (other,) = [w.address for w in stack.dask.workers if w.address != address]
    assert re.search(rf"train@0: running on {re.escape(other)}", text), text[-3000:]
    assert re.search(r"train@0: running \(resumed: [1-9]\d* files\)", text), text[-3000:]
    assert _statuses(text)["train@0"] == "ran"
    # the dead worker's stage processes went with it (the guard)
    left = [p for p in psutil.process_iter(["cwd"]) if str(victim.folder) in (p.info["cwd"] or "")]
    assert left == [], left
    # every run of the fold: same predictions and same weights as the uninterrupted run
    ours, first = repo / "models/classifiers/fold-0", stack.repo / "models/classifiers/fold-0"
    runs = sorted(p.name for p in first.iterdir() if p.is_dir())
    assert runs and sorted(p.name for p in ours.iterdir() if p.is_dir()) == runs
    for name in runs:
        for csv in ("val_predictions.csv",):
            if (first / name / csv).exists():
                assert (ours / name / csv).read_bytes() == (first / name / csv).read_bytes()
        if (first / name / "model.pt").exists():
            a = torch.load(ours / name / "model.pt", weights_only=False)["state_dict"]
            b = torch.load(first / name / "model.pt", weights_only=False)["state_dict"]
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
