"""Faults for the distributed tests: kill a Ray worker process while it runs a piece of work."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

#: Process title of a Ray worker running one of the engine's pieces (core.cluster.executor._call).
TASK_TITLE = "ray::_call"


def running_task_pids(title: str = TASK_TITLE) -> list[int]:
    """PIDs of this user's processes whose title (``/proc/PID/cmdline``) starts with ``title``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(title.encode()):
            pids.append(int(entry.name))
    return pids


def kill_one_worker(timeout: float = 60.0, title: str = TASK_TITLE) -> int:
    """SIGKILL the first worker seen running a piece within ``timeout`` s; returns its PID.

    Raises:
        AssertionError: no such worker appeared (the work ended before it could be hit).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = running_task_pids(title)
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"no process titled {title!r} appeared within {timeout:.0f} s")
