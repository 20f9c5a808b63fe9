"""Records the store returns, and small file and time helpers it shares."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

__all__ = [
    "DatasetInfo",
    "RunRecord",
    "Decision",
    "JobRecord",
    "utcnow",
    "default_store_path",
    "pid_alive",
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


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id still runs on this machine."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
