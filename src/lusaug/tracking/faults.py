"""Named points inside registry operations where tests kill or pause the real process.

A registry operation calls :func:`fault_point` at each step that matters for crash safety and
concurrency. Nothing happens unless an environment variable names the point:

- ``LUSAUG_CRASH_AT=<point>``: the process SIGKILLs itself there (no cleanup, no ``finally``),
  which is what ``kill -9`` does at that moment.
- ``LUSAUG_PAUSE_AT=<point>=<seconds>[,<point>=file:<path>]``: sleep there, or wait until
  ``<path>`` exists (writing ``<path>.reached.<pid>`` on arrival, so a test knows every process
  is in place before it releases them together).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lusaug.tracking.errors import RegistryError

CRASH_ENV = "LUSAUG_CRASH_AT"
PAUSE_ENV = "LUSAUG_PAUSE_AT"
POINTS = (
    "lock.before",  # about to take the registry lock (the alias holder it expects is already read)
    "lock.acquired",  # holds the lock, nothing written to the model yet
    "intent.written",  # intent recorded, alias not moved (the last point before the commit)
    "alias.moved",  # committed: alias moved, history entry not yet appended
    "history.written",  # history entry appended, intent not yet cleared
    "intent.cleared",  # all written, lock not yet released
)
FILE_PREFIX = "file:"
FILE_WAIT_MAX_S = 300.0  # a paused test process never outlives a broken test by much
FILE_POLL_S = 0.005  # processes waiting on one file are released within ~5 ms of each other


def _pauses() -> dict[str, str]:
    spec = os.environ.get(PAUSE_ENV, "").strip()
    pauses = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, sep, value = item.partition("=")
        if not sep or point not in POINTS:
            raise RegistryError(
                f"{PAUSE_ENV}: {item!r} must be <point>=<seconds|file:path>, point in {POINTS}"
            )
        pauses[point] = value
    return pauses


def _pause(value: str) -> None:
    if value.startswith(FILE_PREFIX):
        gate = Path(value.removeprefix(FILE_PREFIX))
        Path(f"{gate}.reached.{os.getpid()}").touch()
        deadline = time.monotonic() + FILE_WAIT_MAX_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(FILE_POLL_S)
        return
    try:
        time.sleep(float(value))
    except ValueError:
        raise RegistryError(f"{PAUSE_ENV}: {value!r} is neither seconds nor file:<path>") from None


def fault_point(point: str) -> None:
    """Pause or SIGKILL this process at ``point`` when the environment asks for it.

    Args:
        point: One of :data:`POINTS`.
    """
    if point not in POINTS:  # a typo here would silently test nothing
        raise ValueError(f"unknown fault point {point!r}; known: {POINTS}")
    value = _pauses().get(point)
    if value is not None:
        _pause(value)
    if os.environ.get(CRASH_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
