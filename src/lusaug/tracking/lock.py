"""A per-model lock on the MLflow registry that works the same on SQLite and a tracking server.

MLflow has no transactions and no compare-and-set on tags, but it has one operation the store
serialises for us: ``create_model_version`` hands out version numbers that are unique, strictly
increasing and never reused (the SQL store takes ``max(version) + 1`` over every version, soft-
deleted ones included, under a unique key, retrying on conflict; a tracking server runs the same
store). The lock is therefore a *ticket lock* on a companion registered model
``<name>.registry-lock``:

1. take a ticket: create a version of the lock model, tagged with the owner (user, host, boot id,
   pid and its start time, what it is doing, its lease);
2. the lock belongs to the lowest *live* ticket. A ticket is not live once it is released
   (version deleted), its process is gone (same host: pid missing or started at another time),
   or its lease has run out (counted on the store's clock from the ticket's creation time);
3. a ticket that is not the lowest live one waits (``wait_s``) and then gives up with
   :class:`RegistryBusy`, deleting itself.

A ticket with a higher number was created after every lower one was committed, so two processes
cannot both see themselves as the lowest live ticket: at most one holds the lock, as long as the
holder commits within its lease. The holder checks that (:meth:`RegistryLock.ensure_held`: its
ticket still exists, less than ``1 - FENCE_MARGIN`` of the lease has passed) right before its
commit. The remaining, documented hole: a holder that stalls for more than ``FENCE_MARGIN`` of
the lease between that check and its one commit write (the alias move) can overlap the next
holder. Liveness by pid needs the host to be identified correctly: processes that share a
hostname and boot id must share a PID namespace. One process runs one registry operation at a
time: a lower ticket of the process itself is taken for a lost retry and removed.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from lusaug.tracking.errors import RegistryBusy, RegistryError
from lusaug.tracking.versions import MS_PER_S, iso_time

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".registry-lock"
TICKET_SOURCE = "lusaug:/registry-lock"  # no model behind it; absolute, as servers require
ROLE_TAG = "lusaug.role"
DEFAULT_LEASE_S = 60.0  # a promotion takes ~1 s; a crashed holder elsewhere blocks this long
DEFAULT_WAIT_S = 30.0  # how long a command queues behind a live holder before giving up
POLL_S = 0.1  # queue re-check interval while waiting
FENCE_MARGIN = 0.25  # the holder stops committing once 75 % of its lease has passed
TICKET_RETRIES = 5  # SQLite answers "database is locked" to concurrent writers now and then
RETRY_SLEEP_S = 0.2
PID_START_TOLERANCE_S = 1.0  # same pid, start time this far off: the pid was reused
BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
OWNER_KEYS = ("who", "host", "pid", "pid_started", "purpose", "lease_s")
T = TypeVar("T")


def lock_model_name(name: str) -> str:
    """The companion registered model whose versions are the lock tickets of ``name``."""
    return f"{name}{LOCK_SUFFIX}"


def who() -> str:
    """The user recorded in tickets and history (``LUSAUG_USER`` overrides the login name)."""
    return os.environ.get("LUSAUG_USER") or getpass.getuser()


def host_id() -> str:
    """Hostname plus boot id, so a pid is only compared with pids of the same running kernel."""
    try:
        boot = BOOT_ID_FILE.read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


@dataclass(frozen=True)
class TicketOwner:
    """Who took a ticket: enough to tell a live holder from a dead one."""

    who: str
    host: str
    pid: int
    pid_started: float
    purpose: str
    lease_s: float

    @classmethod
    def current(cls, purpose: str, lease_s: float) -> TicketOwner:
        me = psutil.Process()
        return cls(who(), host_id(), me.pid, me.create_time(), purpose, lease_s)

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> TicketOwner:
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


def ticket_state(ticket: ModelVersion, store_now_s: float) -> str:
    """``live``, ``dead`` (its process is gone) or ``expired`` (older than its lease)."""
    owner = TicketOwner.from_tags(ticket.tags)
    if owner.is_dead():
        return "dead"
    if store_now_s - ticket.creation_timestamp / MS_PER_S > owner.lease_s:
        return "expired"
    return "live"


def describe(ticket: ModelVersion) -> str:
    o = TicketOwner.from_tags(ticket.tags)
    return (
        f"{o.who} ({o.purpose}; pid {o.pid} on {o.host.split('/')[0] or '?'}) since "
        f"{iso_time(ticket.creation_timestamp)}, lease {o.lease_s:.0f} s"
    )


def _ensure_lock_model(client: MlflowClient, lock_name: str) -> None:
    with contextlib.suppress(MlflowException):
        client.get_registered_model(lock_name)
        return
    try:
        client.create_registered_model(
            lock_name,
            tags={ROLE_TAG: "lock"},
            description="lusaug registry lock tickets (internal; see lusaug.tracking.lock).",
        )
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another process created it first
            raise


def _retrying(call: Callable[[], T], what: str) -> T:
    """``call()``, retried on store errors (SQLite "database is locked" under contention)."""
    for attempt in range(TICKET_RETRIES):
        try:
            return call()
        except MlflowException as exc:
            if attempt == TICKET_RETRIES - 1:
                raise RegistryError(f"cannot {what}: {exc.message}") from exc
            time.sleep(RETRY_SLEEP_S * (attempt + 1))
    raise AssertionError("unreachable")


def tickets(client: MlflowClient, name: str) -> list[ModelVersion]:
    """The lock tickets of ``name`` that are not released, lowest first."""
    lock_name = lock_model_name(name)
    try:
        found = client.search_model_versions(f"name='{lock_name}'")
    except MlflowException:
        return []
    return sorted(found, key=lambda mv: int(mv.version))


def _discard(client: MlflowClient, ticket: ModelVersion) -> None:
    with contextlib.suppress(MlflowException):  # another waiter may have removed it already
        client.delete_model_version(ticket.name, ticket.version)


class RegistryLock:
    """A held lock: check it before committing, release it when done."""

    def __init__(
        self, client: MlflowClient, name: str, ticket: ModelVersion, started: float, lease_s: float
    ) -> None:
        self.client, self.name, self.ticket = client, name, ticket
        self.started, self.lease_s = started, lease_s

    @property
    def ticket_version(self) -> str:
        return str(self.ticket.version)

    def ensure_held(self) -> None:
        """Raise unless this process still holds the lock with time to commit safely."""
        held = time.monotonic() - self.started
        if held > self.lease_s * (1 - FENCE_MARGIN):
            raise RegistryError(
                f"held the registry lock of {self.name} for {held:.0f} s, too close to its "
                f"{self.lease_s:.0f} s lease to commit safely; nothing was changed, re-run"
            )
        try:
            self.client.get_model_version(self.ticket.name, self.ticket.version)
        except MlflowException:
            raise RegistryError(
                f"lost the registry lock of {self.name} (its ticket was removed as stale); "
                "nothing was changed, re-run"
            ) from None

    def release(self) -> None:
        try:
            self.client.delete_model_version(self.ticket.name, self.ticket.version)
        except MlflowException as exc:  # the lease frees it anyway
            logger.warning("could not release lock ticket %s: %s", self.ticket_version, exc)


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
        wait_s: Seconds to queue behind a live holder before raising :class:`RegistryBusy`.
        lease_s: After this many seconds others may treat the ticket as abandoned.
    """
    if not 0 <= wait_s < lease_s * (1 - FENCE_MARGIN):
        raise ValueError(
            f"lock wait {wait_s} s must be >= 0 and well inside the lease {lease_s} s"
        )
    lock_name = lock_model_name(name)
    _retrying(lambda: _ensure_lock_model(client, lock_name), f"create {lock_name}")
    owner = TicketOwner.current(purpose, lease_s)
    started = time.monotonic()  # the lease runs from before the ticket exists: conservative
    ticket = _retrying(
        lambda: client.create_model_version(lock_name, TICKET_SOURCE, tags=owner.tags()),
        f"take a lock ticket on {lock_name}",
    )
    anchor = time.monotonic()
    try:
        while True:
            store_now = ticket.creation_timestamp / MS_PER_S + (time.monotonic() - anchor)
            blockers = []
            for other in tickets(client, name):
                if int(other.version) >= int(ticket.version):
                    continue
                if TicketOwner.from_tags(other.tags).is_this_process():
                    _discard(client, other)  # an earlier attempt of ours whose answer was lost
                elif (state := ticket_state(other, store_now)) == "live":
                    blockers.append(other)
                else:
                    logger.warning("ignoring %s lock ticket of %s", state, describe(other))
                    _discard(client, other)
            if not blockers:
                return RegistryLock(client, name, ticket, started, lease_s)
            if time.monotonic() - started >= wait_s:
                raise RegistryBusy(
                    f"{name} is being changed by {describe(blockers[0])}; waited {wait_s:.0f} s. "
                    "Try again when it is done (an abandoned lock frees itself when its holder's "
                    "process is gone or its lease ends)"
                )
            time.sleep(POLL_S)
    except BaseException:
        _discard(client, ticket)
        raise


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
