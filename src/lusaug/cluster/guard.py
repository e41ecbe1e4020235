"""An item's process tree dies with the worker that started it.

``python guard.py PARENT_PID -- CMD...`` leads a new process group, asks Linux to
send it SIGTERM when the thread that started it dies (``PR_SET_PDEATHSIG``), runs ``CMD`` in that
group and, on SIGTERM, kills the whole group (``dvc repro`` and the stage it started). So a worker
killed with ``kill -9`` leaves no stage running on its machine while Dask reschedules the item
elsewhere. Elsewhere than Linux the guard just runs the command.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    parent_pid, sep, *cmd = argv
    if sep != "--" or not cmd:
        raise SystemExit("usage: python guard.py PARENT_PID -- CMD...")

    def kill_group(*_: object) -> None:
        os.killpg(0, signal.SIGKILL)

    signal.signal(signal.SIGTERM, kill_group)
    _die_with_parent(int(parent_pid))
    return subprocess.call(cmd)


def guarded(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped in the guard (start it with ``start_new_session=True``). The guard runs as
    a script (standard library only), so it works whatever ``lusaug`` the item's PYTHONPATH
    points at."""
    return [sys.executable, __file__, str(os.getpid()), "--", *cmd]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
