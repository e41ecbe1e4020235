"""One alias move, crash-safe: lock, repair, intent, alias (the commit point), history, clear.

Order of writes inside :func:`commit_move`, with the state a ``kill -9`` after each leaves:

====================  =====================================  ==============================
after                 registry                               next command (under the lock)
====================  =====================================  ==============================
lock taken            unchanged (a lock of a dead pid)       removes the abandoned lock
intent written        unchanged + intent                     drops the intent: *before*
alias moved           moved, no history entry yet + intent   appends the entry: *after*
history written       moved + entry + intent                 clears the intent: *after*
intent cleared        *after* (+ the dead lock)              removes the abandoned lock
====================  =====================================  ==============================

The alias move is one store write, so it either happened or not, and the repair tells which by
reading the alias: an interrupted move is completed if the alias already points at its version
and abandoned otherwise. Nothing is ever rolled back after the alias moved (a server following
the alias may already serve it), and history entries are only ever appended. Every command that
changes the registry repairs first (under the lock, so it never touches a live operation), and
``lusaug models`` repairs when it finds an intent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from lusaug.tracking.errors import RegistryBusy
from lusaug.tracking.faults import fault_point
from lusaug.tracking.history import (
    KINDS,
    GateResult,
    HistoryEntry,
    append_entry,
    clear_intent,
    next_seq,
    read_history,
    read_intents,
    write_intent,
)
from lusaug.tracking.lock import (
    DEFAULT_LEASE_S,
    DEFAULT_WAIT_S,
    RegistryLock,
    host_id,
    registry_lock,
    who,
)
from lusaug.tracking.versions import alias_holder, get_version

logger = logging.getLogger(__name__)

# Called with (entry) after the intent is written and before the alias moves; raising aborts.
FinalCheck = Callable[[HistoryEntry], None]


def model_tags(client: MlflowClient, name: str) -> dict[str, str]:
    """The registered model's tags, or {} when the model does not exist (yet)."""
    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException:
        return {}


def repair_pending(client: MlflowClient, name: str, lock: RegistryLock) -> list[str]:
    """Finish or drop the moves that crashed half-way; call it holding the lock.

    Returns one line per repaired move (also logged as a warning).
    """
    done = []
    for intent in read_intents(model_tags(client, name)):
        e = intent.entry
        if intent.lock_id == lock.lock_id:
            continue  # our own, in progress
        if alias_holder(client, name, e.alias) == e.version:
            written = append_entry(client, name, replace(e, repaired=True))
            done.append(
                f"completed {e.kind} of v{e.version} to {e.alias} (history #{written.seq})"
            )
        else:
            done.append(f"dropped unfinished {e.kind} of v{e.version} to {e.alias} (never moved)")
        clear_intent(client, name, e.op)
    for line in done:
        logger.warning("repaired %s: %s", name, line)
    return done


@contextlib.contextmanager
def registry_operation(
    client: MlflowClient,
    name: str,
    *,
    purpose: str,
    wait_s: float = DEFAULT_WAIT_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[RegistryLock]:
    """Hold the model's lock with every interrupted move repaired, for one change."""
    fault_point("lock.before")
    with registry_lock(client, name, purpose=purpose, wait_s=wait_s, lease_s=lease_s) as lock:
        fault_point("lock.acquired")
        repair_pending(client, name, lock)
        yield lock


def ensure_repaired(client: MlflowClient, name: str, wait_s: float = 0.0) -> list[str]:
    """Repair interrupted moves if there are any (read-only commands call this first).

    Returns what was repaired, or a note that a live operation holds the lock (then the
    history may not show that operation yet).
    """
    if not read_intents(model_tags(client, name)):
        return []
    try:
        with registry_lock(client, name, purpose="repair", wait_s=wait_s) as lock:
            return repair_pending(client, name, lock)
    except RegistryBusy as exc:
        return [f"not repaired now: {exc}"]


def plan_move(
    client: MlflowClient,
    name: str,
    *,
    kind: str,
    alias: str,
    version: str,
    reason: str,
    forced: bool = False,
    gates: Sequence[GateResult] = (),
) -> HistoryEntry:
    """The history entry of moving ``alias`` to ``version`` now (call it holding the lock)."""
    if kind not in KINDS:
        raise ValueError(f"history kind must be one of {KINDS}, got {kind!r}")
    mv = get_version(client, name, version)
    return HistoryEntry(
        seq=next_seq(model_tags(client, name)),
        kind=kind,
        alias=alias,
        version=str(version),
        from_aliases=tuple(sorted(a for a in mv.aliases or [] if a != alias)),
        previous_holder=alias_holder(client, name, alias),
        who=who(),
        host=host_id().split("/")[0],
        reason=reason,
        forced=forced,
        gates=tuple(gates),
    )


def commit_move(
    client: MlflowClient,
    name: str,
    entry: HistoryEntry,
    lock: RegistryLock,
    final_checks: Sequence[FinalCheck] = (),
) -> HistoryEntry:
    """Intent, final checks, alias move, history entry, intent cleared (see the module table).

    A final check or the lock check failing drops the intent, so nothing changed. Once the alias
    has moved the move counts as done; if a later write fails, the next command completes it.
    Returns the entry as written.
    """
    write_intent(client, name, entry, lock.lock_id)
    fault_point("intent.written")
    try:
        for check in final_checks:
            check(entry)
        lock.ensure_held()
    except BaseException:
        clear_intent(client, name, entry.op)
        raise
    client.set_registered_model_alias(name, entry.alias, entry.version)  # the commit point
    fault_point("alias.moved")
    written = append_entry(client, name, entry)
    fault_point("history.written")
    clear_intent(client, name, entry.op)
    fault_point("intent.cleared")
    logger.info(
        "%s: %s@%s v%s -> v%s (%s)",
        entry.kind,
        name,
        entry.alias,
        entry.previous_holder or "-",
        entry.version,
        entry.reason,
    )
    return written


def history(client: MlflowClient, name: str) -> list[HistoryEntry]:
    """The committed history of ``name``, oldest first."""
    return read_history(model_tags(client, name))
