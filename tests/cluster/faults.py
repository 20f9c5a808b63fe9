"""Faults for the distributed tests: kill a Ray worker process while it runs a piece of work."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from core.errors import JobCancelled

T = TypeVar("T")

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


def kill_one_worker_during(
    work: Callable[[], T], *, timeout: float = 60.0, join: float = 300.0
) -> tuple[T, int]:
    """Run ``work`` in a thread and SIGKILL one worker running a piece meanwhile.

    Returns:
        ``(what work returned, the killed PID)``.
    """
    out: dict = {}
    job = threading.Thread(target=lambda: out.setdefault("result", work()))
    job.start()
    try:
        killed = kill_one_worker(timeout=timeout)
    finally:
        job.join(timeout=join)
    assert not job.is_alive() and "result" in out, "the work did not finish after the kill"
    return out["result"], killed


class CancelAfter:
    """A reporter that asks to stop once ``n`` progress reports have come in."""

    def __init__(self, n: int) -> None:
        self.n, self.reports = n, 0

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        self.reports += 1

    def check_cancelled(self) -> None:
        if self.reports >= self.n:
            raise JobCancelled()


def no_task_left_running(timeout: float = 20.0) -> bool:
    """Whether every worker has left its piece within ``timeout`` s (cancelled tasks stop)."""
    deadline = time.monotonic() + timeout
    while running_task_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not running_task_pids()
