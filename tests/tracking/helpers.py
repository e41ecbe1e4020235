"""Real registries for the registry tests: cheap versions on SQLite, the CLI as a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from lusaug.core.config import PROJ_ROOT
from lusaug.tracking.history import INTENT_PREFIX, read_history
from lusaug.tracking.lock import current_lock
from lusaug.tracking.registration import register_version

NAME = "lus-classifier"
CLI_TIMEOUT_S = 120
MODEL_SOURCE = "lusaug:/tests/placeholder-model"  # absolute, so a tracking server accepts it
# version -> validation macro-F1 and its interval's lower bound (all pass the metric gate
# against each other: each is above the others' lower bounds)
VERSIONS = {"1": (0.70, 0.64), "2": (0.72, 0.66), "3": (0.71, 0.65)}


def use_store(uri: str) -> str:
    """Point this process (and the subprocesses it starts) at the store ``uri``."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    return uri


def build_registry() -> None:
    """Three registered versions (each registered in turn as ``candidate``), parity passed.

    Registers into the current tracking URI. The versions' source is a placeholder: promotion
    never loads the model, and registering real ONNX pyfuncs costs seconds each
    (tests/tracking/test_registry.py does that).
    """
    for version, (f1, lo) in VERSIONS.items():
        got = register_version(
            MODEL_SOURCE,
            NAME,
            tags={
                "run_name": f"run-{version}",
                "onnx_parity": "passed",
                "val_f1_macro": str(f1),
                "val_f1_macro_lo": str(lo),
            },
            description=f"card of v{version}",
            alias="candidate",
            reason=f"registered run-{version}",
        )
        assert got == version


def copy_registry(template: Path, root: Path) -> str:
    """A private copy of a registry built once by :func:`build_registry`."""
    shutil.copy(template / "mlflow.db", root / "mlflow.db")
    shutil.copy(PROJ_ROOT / "params.yaml", root / "params.yaml")
    return use_store(sqlite_uri(root))


def sqlite_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def snapshot(client: MlflowClient) -> dict:
    """Everything a registry operation may touch: aliases, model tags, every version's tags."""
    rm = client.get_registered_model(NAME)
    versions = {mv.version: dict(mv.tags) for mv in client.search_model_versions(f"name='{NAME}'")}
    return {"aliases": dict(rm.aliases), "model_tags": dict(rm.tags), "versions": versions}


def history_of(client: MlflowClient) -> list:
    return read_history(dict(client.get_registered_model(NAME).tags))


def intents_of(client: MlflowClient) -> list[str]:
    return [k for k in client.get_registered_model(NAME).tags if k.startswith(INTENT_PREFIX)]


def held_lock(client: MlflowClient):
    """The active registry-lock experiment of NAME, or None."""
    return current_lock(client, NAME)


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "LUSAUG_USER": "tester", **extra}
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    env.pop("MLFLOW_RUN_ID", None)
    return env


def start_cli(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """Start a real ``lusaug`` process (this tree's, via the interpreter running the tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lusaug.cli", *args],
        cwd=cwd,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    proc = start_cli(args, cwd, **env)
    out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for_files(pattern_dir: Path, prefix: str, count: int, timeout_s: float) -> None:
    """Wait until ``count`` files named ``prefix*`` exist (processes reached a fault point)."""
    deadline = time.monotonic() + timeout_s
    while len(list(pattern_dir.glob(f"{prefix}*"))) < count:
        assert time.monotonic() < deadline, f"only {list(pattern_dir.glob(prefix + '*'))}"
        time.sleep(0.05)


RACE_HOLD_S = 1.0  # the lock winner pauses this long inside, so a broken lock lets both in


def race_two_promotions(client: MlflowClient, cwd: Path, versions: tuple[str, str]) -> str:
    """Two real `lusaug promote V --to staging` released at once; asserts exactly one wins.

    Both read the staging holder, then wait at the lock until a file releases them together;
    whoever gets the lock pauses inside it before deciding. Returns the winning version.
    """
    gate = cwd / "go"
    pause = f"lock.before=file:{gate},lock.acquired={RACE_HOLD_S}"
    before = str(client.get_registered_model(NAME).aliases.get("staging", "-"))
    procs = {
        v: start_cli(["promote", v, "--to", "staging"], cwd, LUSAUG_PAUSE_AT=pause)
        for v in versions
    }
    wait_for_files(cwd, "go.reached.", len(procs), timeout_s=CLI_TIMEOUT_S)
    gate.touch()
    results = {v: (p.communicate(timeout=CLI_TIMEOUT_S), p.returncode) for v, p in procs.items()}
    winners = [v for v, (_, code) in results.items() if code == 0]
    assert len(winners) == 1, results
    (winner,) = winners
    ((_, err),) = [out for v, (out, _) in results.items() if v != winner]
    assert f"moved from v{before} to v{winner} while this promotion waited" in err, err
    was = "unset" if before == "-" else f"v{before}"
    assert f"@staging: {was} -> v{winner}" in results[winner][0][0]
    assert str(client.get_model_version_by_alias(NAME, "staging").version) == winner
    last = [e for e in history_of(client) if e.alias == "staging"][-1]
    assert (last.version, last.previous_holder) == (winner, None if before == "-" else before)
    return winner
