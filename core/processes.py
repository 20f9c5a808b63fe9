"""The engine's process-pool policy: engine code never forks its host process.

The engine runs inside the Streamlit server (job threads) as well as in the
CLI. A ``fork`` of the server copies its signal handlers into the child:
Streamlit's SIGTERM handler does not exit, so pool workers forked from the
server (cleanlab's ``find_label_issues`` without ``n_jobs`` forks a
``multiprocessing.Pool`` of every CPU) could never be terminated, the job
thread waited in ``Pool._terminate_pool`` for ever, every later job queued
behind it, and the server no longer stopped on SIGTERM. A spawned pool is no
cure inside Streamlit either: a spawn child re-imports the server's
``__main__`` (the app script).

So the policy is one number: every library call that can start worker
processes (cleanlab, scikit-learn/joblib, UMAP, torch data loaders) gets
``n_jobs=ENGINE_N_JOBS`` (1), and engine code starts no pool of its own.
Parallelism past one thread belongs to a Ray cluster, where workers are
processes of their own and not children of the server. Every fork of this
process after :mod:`core.processes` was imported is counted and logged with
the stack that caused it, so a library that forks anyway shows up in the log
and in the tests (:func:`fork_count`).
"""

from __future__ import annotations

import logging
import os
import threading
import traceback

__all__ = ["ENGINE_N_JOBS", "fork_count", "pid_alive"]

log = logging.getLogger(__name__)

#: Worker processes any engine call may start: none besides the calling process.
ENGINE_N_JOBS = 1

_forks = 0
_lock = threading.Lock()


def _before_fork() -> None:
    global _forks
    with _lock:
        _forks += 1
    log.warning(
        "process %d is forking (engine code must not fork; see core.processes):\n%s",
        os.getpid(),
        "".join(traceback.format_stack(limit=12)[:-1]),
    )


def fork_count() -> int:
    """How many times this process forked (``os.fork``, ``multiprocessing``) since start-up.

    ``subprocess`` without ``preexec_fn`` does not fork through Python and is not counted.
    """
    with _lock:
        return _forks


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (it may be another one, reused).

    ``True`` when in doubt: where a PID cannot be probed without harm (Windows, whose
    ``os.kill`` terminates), or when it runs as another user.
    """
    if pid is None:
        return False
    if int(pid) == os.getpid() or os.name != "posix":
        return True
    if int(pid) <= 0:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork)
