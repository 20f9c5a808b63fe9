"""Records the store returns, and small file and time helpers it shares."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np

from core.processes import pid_alive

__all__ = [
    "DatasetInfo",
    "RunRecord",
    "Decision",
    "JobRecord",
    "ReviewStamp",
    "utcnow",
    "default_store_path",
    "owner_alive",
    "pid_alive",
    "process_token",
]


def utcnow() -> str:
    """Current UTC time as an ISO-8601 string (what the store writes)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def default_store_path() -> Path:
    """``$HOSTCP_HOME/hostcp.sqlite``, by default ``~/.hostcp/hostcp.sqlite``."""
    home = Path(os.environ.get("HOSTCP_HOME", Path.home() / ".hostcp"))
    return home / "hostcp.sqlite"


@dataclass(frozen=True)
class DatasetInfo:
    """A stored dataset's row (without its arrays)."""

    id: int
    name: str
    kind: str
    origin: str
    n: int
    class_names: tuple[str, ...]
    content_hash: str
    split_seed: int
    created_at: str


@dataclass(frozen=True)
class RunRecord:
    """A stored selection run; ``selected`` and ``value`` are over the dataset's rows.

    Rows that were not candidates (validation, test, excluded) have ``selected``
    0 and ``value`` NaN.
    """

    id: int
    dataset_id: int
    method: str
    budget: float
    seed: int
    settings: dict
    info: dict
    labels_revision: int
    created_at: str
    selected: np.ndarray  # (N,) bool
    value: np.ndarray  # (N,) float


class ReviewStamp(NamedTuple):
    """What a dataset's review queue is made of, read in one query (:meth:`Store.review_stamp`).

    Every write that changes the queue (a decision, a re-score, a new run) changes it, so
    it keys the app's caches of the queue's pieces.
    """

    created_at: str  # the dataset's: tells it from a later dataset that got the same id
    revision: int  # labels revision: id of the newest review log entry, 0 before any
    result_id: int  # newest mislabel result, 0 for none
    run_id: int  # newest run, 0 for none


@dataclass(frozen=True)
class Decision:
    """One entry of the append-only review log."""

    id: int
    dataset_id: int
    example_index: int
    action: str
    old_label: int
    new_label: int
    reviewer: str
    decided_at: str
    undoes: int | None
    #: Decisions written by one bulk action share this id (``None`` for a single decision);
    #: "Undo last" withdraws a whole batch at once.
    batch: int | None = None


@dataclass(frozen=True)
class JobRecord:
    """A background job's state as last written by its worker."""

    id: int
    kind: str
    dataset_id: int | None
    status: str
    stage: str
    fraction: float
    message: str
    eta_s: float | None
    error: str | None
    cancel_requested: bool
    result: dict | None
    params: dict
    created_at: str
    started_at: str | None
    updated_at: str
    finished_at: str | None

    @property
    def finished(self) -> bool:
        """True once the job is done, failed or cancelled."""
        return self.status in ("done", "failed", "cancelled")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()
#: Stands in for the start time where /proc is missing (not Linux): unique to this process.
_FALLBACK_TOKEN = f"{os.getpid()}:{os.urandom(8).hex()}"


def process_token(pid: int | None = None) -> str | None:
    """An identity of a running process that a later process with the same PID does not share.

    On Linux: ``boot id:PID:start time`` (clock ticks after boot, field 22 of
    ``/proc/PID/stat``), so a PID reused after a restart (PID 1 of a container,
    a recycled PID) reads as another process. Elsewhere this process gets a
    random token and other processes' tokens are unknown (``None``).

    Args:
        pid: The process; this one by default.

    Returns:
        The token, or ``None`` when the process does not exist or cannot be identified.
    """
    pid = os.getpid() if pid is None else int(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return _FALLBACK_TOKEN if pid == os.getpid() and not _BOOT_ID else None
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return f"{_BOOT_ID}:{pid}:{fields[19]}"


def owner_alive(pid: int | None, token: str | None) -> bool:
    """Whether the process that recorded ``(pid, token)`` (see :func:`process_token`) still runs.

    A row without a token (written before tokens were recorded) falls back to the PID alone.
    """
    if token is None or not pid_alive(pid):
        return pid_alive(pid)
    current = process_token(pid)
    if current is None:  # gone, or not identifiable on this platform: trust the PID
        return _BOOT_ID == "" and pid_alive(pid)
    return current == token
