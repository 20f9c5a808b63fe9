"""How long-running engine code reports progress and learns that it was cancelled.

Engine functions take an optional :class:`Reporter`. The job runner passes one
that writes to the jobs table and raises :class:`~core.errors.JobCancelled`
from :meth:`Reporter.check_cancelled`; the CLI passes one that draws a progress
bar. Engine code never knows which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["ProgressEvent", "Reporter", "NullReporter", "SubReporter"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report: ``fraction`` in [0, 1] of the whole job."""

    stage: str
    fraction: float
    message: str = ""


@runtime_checkable
class Reporter(Protocol):
    """What engine code may call while it works."""

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        """Record progress; ``fraction`` is of the current (sub)task, in [0, 1]."""

    def check_cancelled(self) -> None:
        """Raise :class:`~core.errors.JobCancelled` if the user asked to stop."""


class NullReporter:
    """A reporter that ignores progress and is never cancelled."""

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        return None

    def check_cancelled(self) -> None:
        return None


class SubReporter:
    """Maps a sub-task's [0, 1] progress onto ``[start, end]`` of a parent reporter."""

    def __init__(self, parent: Reporter | None, start: float, end: float) -> None:
        self.parent = parent if parent is not None else NullReporter()
        self.start = float(start)
        self.end = float(end)

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        f = min(max(float(fraction), 0.0), 1.0)
        self.parent.report(stage, self.start + (self.end - self.start) * f, message)

    def check_cancelled(self) -> None:
        self.parent.check_cancelled()
