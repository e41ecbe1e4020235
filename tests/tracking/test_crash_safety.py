"""kill -9 of a real `lusaug promote` / `lusaug rollback` at each step, then the next command.

After the next `lusaug` command the registry is exactly as before the promotion or exactly as
after it: alias, history entry (one, complete), no intent left, and the next promotion works
without waiting for a lease.
"""

from __future__ import annotations

import signal

import pytest

from lusaug.tracking.faults import CRASH_ENV
from lusaug.tracking.promotion import promote, rollback
from tests.tracking.helpers import NAME, history_of, intents_of, run_cli, snapshot

BEFORE_COMMIT = ("lock.acquired", "intent.written")  # the alias has not moved yet
AFTER_COMMIT = ("alias.moved", "history.written", "intent.cleared")
INTENT_LEFT = ("intent.written", "alias.moved", "history.written")


def _crash(args, cwd, point):
    r = run_cli(args, cwd, **{CRASH_ENV: point})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr)


def _next_command_repairs(registry, cwd, point):
    """The crash left what it should; `lusaug models --history` then leaves no trace of it."""
    assert bool(intents_of(registry)) == (point in INTENT_LEFT)
    r = run_cli(["models", "--history"], cwd, COLUMNS="250")
    assert r.returncode == 0, r.stderr
    assert intents_of(registry) == []
    return r


@pytest.mark.parametrize("point", BEFORE_COMMIT + AFTER_COMMIT)
def test_a_killed_promotion_is_repaired_to_before_or_after(registry, params, tmp_path, point):
    before = snapshot(registry)
    old_history = history_of(registry)
    _crash(["promote", "2", "--to", "staging"], tmp_path, point)
    out = _next_command_repairs(registry, tmp_path, point)
    now = snapshot(registry)
    if point in BEFORE_COMMIT:
        assert now == before  # as if the promotion never started
        promote(NAME, "2", "staging", params.register, lock_wait_s=0)  # and it can be redone
    else:
        assert now["aliases"] == {**before["aliases"], "staging": 2}
        assert now["versions"] == before["versions"]
        new = history_of(registry)
        assert new[: len(old_history)] == old_history and len(new) == len(old_history) + 1
        e = new[-1]
        assert (e.kind, e.alias, e.version, e.previous_holder) == (
            "promotion",
            "staging",
            "2",
            None,
        )
        assert e.who == "tester" and e.reason == "gates passed" and all(g.passed for g in e.gates)
        assert e.repaired == (point == "alias.moved")  # completed by the next command
        assert ("(repaired)" in out.stdout) == e.repaired
    # Nothing waits for the dead process's lease: the next move goes through at once.
    promote(NAME, "2", "production", params.register, lock_wait_s=0)
    assert str(registry.get_model_version_by_alias(NAME, "production").version) == "2"


@pytest.mark.parametrize("point", ["intent.written", "alias.moved"])
def test_a_killed_rollback_is_repaired_to_before_or_after(registry, params, tmp_path, point):
    promote(NAME, "1", "staging", params.register)
    promote(NAME, "2", "staging", params.register)
    before = snapshot(registry)
    _crash(["rollback", "staging", "--reason", "bad"], tmp_path, point)
    _next_command_repairs(registry, tmp_path, point)
    if point == "intent.written":
        assert snapshot(registry) == before
        assert rollback(NAME, "staging", lock_wait_s=0).version == "1"
    else:
        assert str(registry.get_model_version_by_alias(NAME, "staging").version) == "1"
        e = history_of(registry)[-1]
        assert (e.kind, e.version, e.previous_holder, e.repaired) == ("rollback", "1", "2", True)
        assert e.reason == "rollback from v2: bad"
    assert len([e for e in history_of(registry) if e.kind == "rollback"]) == 1
