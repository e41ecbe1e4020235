"""The registry lock: mutual exclusion between real processes, dead and expired holders."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lusaug.tracking.errors import RegistryBusy, RegistryError
from lusaug.tracking.faults import CRASH_ENV, PAUSE_ENV
from lusaug.tracking.lock import (
    CLOCK_TOLERANCE_S,
    LOCK_SUFFIX,
    acquire,
    lock_experiment_name,
    registry_lock,
)
from tests.tracking.helpers import NAME, cli_env, held_lock, wait_for_files

HOLD_S = 0.4  # each holder keeps the lock this long, so overlaps would be wide
ROUNDS = 3  # acquisitions per process
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    import mlflow
    from mlflow import MlflowClient
    from lusaug.tracking.faults import fault_point
    from lusaug.tracking.lock import registry_lock

    name, hold, rounds = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    client = MlflowClient()
    spans = []
    for i in range(rounds):
        fault_point("lock.before")
        with registry_lock(client, name, purpose=f"test round {i}", wait_s=40):
            fault_point("lock.acquired")
            start = time.time()
            time.sleep(hold)
            spans.append([start, time.time()])
    print(json.dumps(spans))
    """
)


def _holder(rounds: int = ROUNDS, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, NAME, str(HOLD_S), str(rounds)],
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_released_together_never_hold_the_lock_at_once(registry, tmp_path):
    gate = tmp_path / "go"
    procs = [_holder(**{PAUSE_ENV: f"lock.before=file:{gate}"}) for _ in range(2)]
    wait_for_files(tmp_path, "go.reached.", 2, timeout_s=60)  # both ready to take the lock
    gate.touch()  # ... and released within a few ms of each other
    spans = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        spans += json.loads(out)
    assert len(spans) == 2 * ROUNDS
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two holders at once: {spans}"
    assert held_lock(registry) is None  # every lock released
    # ... and nothing of it clutters the UI's lists (deleted experiments are hidden there)
    assert [m.name for m in registry.search_registered_models() if LOCK_SUFFIX in m.name] == []
    assert [e.name for e in registry.search_experiments() if LOCK_SUFFIX in e.name] == []


def test_a_killed_holder_does_not_block_the_next_command(registry):
    p = _holder(rounds=1, **{CRASH_ENV: "lock.acquired"})
    p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL
    assert held_lock(registry) is not None  # its lock is still there ...
    started = time.monotonic()
    lock = acquire(registry, NAME, purpose="next", wait_s=0)  # ... but its pid is gone
    assert time.monotonic() - started < HOLD_S * 10
    lock.ensure_held()
    lock.release()
    assert held_lock(registry) is None  # the dead holder's lock was cleared too


def test_a_holder_elsewhere_blocks_until_its_lease_ends(registry):
    lease_s = 1.5
    owner = {"who": "alice", "host": "another-host/boot", "pid": "4242", "pid_started": "1.0",
             "purpose": "promote v9 to production", "lease_s": str(lease_s)}  # fmt: skip
    alices = registry.create_experiment(lock_experiment_name(NAME), tags=owner)
    with pytest.raises(RegistryBusy, match="alice .promote v9 to production"):
        acquire(registry, NAME, purpose="blocked", wait_s=0)
    assert held_lock(registry).experiment_id == alices  # the refused attempt left it alone
    time.sleep(lease_s + CLOCK_TOLERANCE_S + 0.2)
    with registry_lock(registry, NAME, purpose="after the lease", wait_s=0) as lock:
        assert held_lock(registry).experiment_id == lock.lock_id != alices


def test_a_holder_past_its_lease_or_without_its_lock_may_not_commit(registry):
    lease_s = 0.4
    lock = acquire(registry, NAME, purpose="slow", wait_s=0, lease_s=lease_s)
    lock.ensure_held()
    time.sleep(lease_s)
    with pytest.raises(RegistryError, match="too close to its"):
        lock.ensure_held()
    lock.release()
    lock = acquire(registry, NAME, purpose="robbed", wait_s=0)
    registry.rename_experiment(lock.lock_id, "broken by a waiter")  # judged abandoned
    registry.delete_experiment(lock.lock_id)
    with pytest.raises(RegistryError, match="lost the registry lock"):
        lock.ensure_held()
    with pytest.raises(ValueError, match="inside the lease"):
        acquire(registry, NAME, purpose="bad", wait_s=60, lease_s=60)
