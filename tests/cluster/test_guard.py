"""An item's process tree dies with the worker process that started it (kill -9 included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

# A stand-in worker: starts a guarded stage that starts its own child, prints both pids, waits.
WORKER = textwrap.dedent(
    """
    import subprocess, sys, threading, time
    from lusaug.cluster.guard import guarded
    stage = "import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); print(c.pid, flush=True); time.sleep(600)"
    def item():  # like a Dask task thread: it waits on the guarded stage
        proc = subprocess.Popen(guarded([sys.executable, "-c", stage]), stdout=subprocess.PIPE,
                                text=True, start_new_session=True)
        print(proc.pid, proc.stdout.readline().strip(), flush=True)
        proc.wait()
    threading.Thread(target=item, daemon=True).start()
    time.sleep(600)
    """
)


def _gone(pid: int, timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_kill_9_of_the_worker_kills_the_guarded_stage_and_its_children():
    worker = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    try:
        guard_pid, grandchild = map(int, worker.stdout.readline().split())
        assert psutil.pid_exists(grandchild)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        assert _gone(guard_pid) and _gone(grandchild)
    finally:
        if worker.poll() is None:
            worker.kill()
