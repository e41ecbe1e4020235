"""A per-model lock on the MLflow store that works the same on SQLite and a tracking server.

MLflow has no transactions and no compare-and-set on tags, but experiment names are unique: the
store refuses a second experiment of a taken name with ``RESOURCE_ALREADY_EXISTS`` (a unique key
in SQLite and PostgreSQL; a tracking server runs the same store). The registry lock of model
``<name>`` is therefore the existence of an active experiment ``<name>.registry-lock``:

1. take it: create that experiment, tagged with the owner (user, host, boot id, pid and its start
   time, what it is doing, its lease). Whoever's create succeeds holds the lock;
2. a lock experiment is abandoned when its process is gone (same host: pid missing or started at
   another time) or its lease has run out (its creation time on the store against this host's
   clock, with ``CLOCK_TOLERANCE_S`` for clocks that NTP keeps close). A waiter breaks an
   abandoned lock by *id*: it renames that experiment to a unique name and deletes it, so a newer
   lock of the same name is never touched;
3. release: the same rename and delete (a deleted experiment keeps its name reserved, hence the
   rename). A waiter that cannot take the lock within ``wait_s`` raises :class:`RegistryBusy`.

Deleted experiments are hidden in the MLflow UI, so the lock shows in the Experiments list only
while a registry command runs (about a second) or after a crash until the next command clears
it, and never among the Registered Models. The holder checks, right before its one commit write
(the alias move), that its lock experiment is still the active one and that less than
``1 - FENCE_MARGIN`` of the lease has passed (:meth:`RegistryLock.ensure_held`). The remaining,
documented hole: a holder that stalls for more than ``FENCE_MARGIN`` of the lease between that
check and the alias move can overlap the next holder. Liveness by pid needs the host to be
identified correctly: processes that share a hostname and boot id must share a PID namespace.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
from mlflow import MlflowClient
from mlflow.entities import Experiment, LifecycleStage
from mlflow.exceptions import MlflowException

from lusaug.tracking.errors import RegistryBusy, RegistryError
from lusaug.tracking.versions import MS_PER_S, iso_time

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".registry-lock"
RELEASED_PREFIX = "lusaug.released-lock."  # + a uuid: frees the lock name before the delete
ROLE_TAG = "lusaug.role"
DEFAULT_LEASE_S = 60.0  # a promotion takes ~1 s; a crashed holder elsewhere blocks this long
DEFAULT_WAIT_S = 30.0  # how long a command waits behind a live holder before giving up
POLL_S = 0.1  # re-try interval while waiting
FENCE_MARGIN = 0.25  # the holder stops committing once 75 % of its lease has passed
CLOCK_TOLERANCE_S = 2.0  # a lease counts as over only this much after it ends (host clocks differ)
STORE_RETRIES = 5  # SQLite answers "database is locked" to concurrent writers now and then
RETRY_SLEEP_S = 0.2
PID_START_TOLERANCE_S = 1.0  # same pid, start time this far off: the pid was reused
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
OWNER_KEYS = ("who", "host", "pid", "pid_started", "purpose", "lease_s")
T = TypeVar("T")


def lock_experiment_name(name: str) -> str:
    """The experiment whose existence is the registry lock of model ``name``."""
    return f"{name}{LOCK_SUFFIX}"


def who() -> str:
    """The user recorded in locks and history (``LUSAUG_USER`` overrides the login name)."""
    return os.environ.get("LUSAUG_USER") or getpass.getuser()


def host_id() -> str:
    """Hostname plus boot id, so a pid is only compared with pids of the same running kernel."""
    try:
        boot = BOOT_ID_FILE.read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: enough to tell a live holder from a dead one."""

    who: str
    host: str
    pid: int
    pid_started: float
    purpose: str
    lease_s: float

    @classmethod
    def current(cls, purpose: str, lease_s: float) -> LockOwner:
        me = psutil.Process()
        return cls(who(), host_id(), me.pid, me.create_time(), purpose, lease_s)

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> LockOwner:
        try:
            return cls(
                tags["who"],
                tags["host"],
                int(tags["pid"]),
                float(tags["pid_started"]),
                tags["purpose"],
                float(tags["lease_s"]),
            )
        except (KeyError, ValueError):  # not one of ours: judge it by the default lease only
            return cls("unknown", "", 0, 0.0, "unknown", DEFAULT_LEASE_S)

    def tags(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in OWNER_KEYS}

    def is_this_process(self) -> bool:
        me = psutil.Process()
        return (self.host, self.pid) == (host_id(), me.pid) and abs(
            self.pid_started - me.create_time()
        ) < PID_START_TOLERANCE_S

    def is_dead(self) -> bool:
        """True only when certain: same host, and the pid is gone or belongs to a newer process."""
        if self.host != host_id() or self.pid <= 0:
            return False
        try:
            started = psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:  # exists but not inspectable: assume alive
            return False
        return abs(started - self.pid_started) >= PID_START_TOLERANCE_S


def lock_state(lock: Experiment, now_s: float) -> str:
    """``live``, ``dead`` (its process is gone) or ``expired`` (older than its lease)."""
    owner = LockOwner.from_tags(lock.tags)
    if owner.is_dead():
        return "dead"
    if now_s - lock.creation_time / MS_PER_S > owner.lease_s + CLOCK_TOLERANCE_S:
        return "expired"
    return "live"


def describe(lock: Experiment) -> str:
    o = LockOwner.from_tags(lock.tags)
    return (
        f"{o.who} ({o.purpose}; pid {o.pid} on {o.host.split('/')[0] or '?'}) since "
        f"{iso_time(lock.creation_time)}, lease {o.lease_s:.0f} s"
    )


def _retrying(call: Callable[[], T], what: str) -> T:
    """``call()``, retried on store errors (SQLite "database is locked" under contention)."""
    for attempt in range(STORE_RETRIES):
        try:
            return call()
        except MlflowException as exc:
            if attempt == STORE_RETRIES - 1:
                raise RegistryError(f"cannot {what}: {exc.message}") from exc
            time.sleep(RETRY_SLEEP_S * (attempt + 1))
    raise AssertionError("unreachable")


def current_lock(client: MlflowClient, name: str) -> Experiment | None:
    """The active lock experiment of model ``name``, or None when nobody holds the lock."""
    found = client.get_experiment_by_name(lock_experiment_name(name))
    return found if found is not None and found.lifecycle_stage == LifecycleStage.ACTIVE else None


def _remove(client: MlflowClient, experiment_id: str) -> bool:
    """Free the lock held as ``experiment_id``; False when it was already gone."""
    try:
        client.rename_experiment(experiment_id, f"{RELEASED_PREFIX}{uuid.uuid4().hex}")
    except MlflowException:  # deleted (or being deleted) by a waiter that judged it abandoned
        return False
    with contextlib.suppress(MlflowException):  # a racing breaker deleted it first
        client.delete_experiment(experiment_id)
    return True


def _create(client: MlflowClient, lock_name: str, owner: LockOwner) -> str | None:
    """Create the lock experiment: its id if this process now holds the lock, else None."""
    try:
        return client.create_experiment(lock_name, tags={ROLE_TAG: "lock", **owner.tags()})
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_ALREADY_EXISTS":  # somebody holds the lock
            return None
        raise


class RegistryLock:
    """A held lock: check it before committing, release it when done."""

    def __init__(
        self, client: MlflowClient, name: str, lock_id: str, started: float, lease_s: float
    ) -> None:
        self.client, self.name, self.lock_id = client, name, lock_id
        self.started, self.lease_s = started, lease_s

    def ensure_held(self) -> None:
        """Raise unless this process still holds the lock with time to commit safely."""
        held = time.monotonic() - self.started
        if held > self.lease_s * (1 - FENCE_MARGIN):
            raise RegistryError(
                f"held the registry lock of {self.name} for {held:.0f} s, too close to its "
                f"{self.lease_s:.0f} s lease to commit safely; nothing was changed, re-run"
            )
        mine = current_lock(self.client, self.name)
        if mine is None or mine.experiment_id != self.lock_id:
            raise RegistryError(
                f"lost the registry lock of {self.name} (it was removed as abandoned); "
                "nothing was changed, re-run"
            )

    def release(self) -> None:
        if not _remove(self.client, self.lock_id):  # a waiter judged it abandoned meanwhile
            logger.warning("the registry lock of %s was already removed", self.name)


def acquire(
    client: MlflowClient,
    name: str,
    *,
    purpose: str,
    wait_s: float = DEFAULT_WAIT_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> RegistryLock:
    """Take the registry lock of model ``name``, waiting up to ``wait_s`` behind a live holder.

    Args:
        client: MLflow client of the store.
        name: Registered model the lock protects.
        purpose: What the holder does (shown to whoever waits for it).
        wait_s: Seconds to wait behind a live holder before raising :class:`RegistryBusy`.
        lease_s: After this many seconds others may treat the lock as abandoned.
    """
    if not 0 <= wait_s < lease_s * (1 - FENCE_MARGIN):
        raise ValueError(
            f"lock wait {wait_s} s must be >= 0 and well inside the lease {lease_s} s"
        )
    lock_name = lock_experiment_name(name)
    owner = LockOwner.current(purpose, lease_s)
    started = time.monotonic()  # the lease runs from before the lock exists: conservative
    while True:
        lock_id = _retrying(
            lambda: _create(client, lock_name, owner), f"take the lock {lock_name}"
        )
        if lock_id is not None:
            return RegistryLock(client, name, lock_id, started, lease_s)
        holder = _retrying(lambda: current_lock(client, name), f"read the lock {lock_name}")
        if holder is not None:
            state = lock_state(holder, time.time())
            ours = LockOwner.from_tags(holder.tags).is_this_process()  # a create's lost answer
            if ours or state != "live":
                why = "our own earlier" if ours else state
                logger.warning("removing %s registry lock of %s", why, describe(holder))
                _remove(client, holder.experiment_id)
                continue
            if time.monotonic() - started >= wait_s:
                raise RegistryBusy(
                    f"{name} is being changed by {describe(holder)}; waited {wait_s:.0f} s. "
                    "Try again when it is done (an abandoned lock frees itself when its "
                    "holder's process is gone or its lease ends)"
                )
        time.sleep(POLL_S)


@contextlib.contextmanager
def registry_lock(
    client: MlflowClient,
    name: str,
    *,
    purpose: str,
    wait_s: float = DEFAULT_WAIT_S,
    lease_s: float = DEFAULT_LEASE_S,
) -> Iterator[RegistryLock]:
    """Hold the registry lock of ``name`` for the ``with`` block (see :func:`acquire`)."""
    lock = acquire(client, name, purpose=purpose, wait_s=wait_s, lease_s=lease_s)
    try:
        yield lock
    finally:
        lock.release()
