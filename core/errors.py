"""Project error classes: every message says what was wrong, where, and how to fix it.

All user-facing errors subclass :class:`HostcpError` (a ``ValueError``), so the
CLI and the UI can show ``str(err)`` to the user instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "HostcpError",
    "DataError",
    "ArchiveError",
    "ConfigError",
    "NotFittedError",
    "StoreError",
    "JobCancelled",
    "ExportError",
    "ClusterError",
    "one_line",
]


class HostcpError(ValueError):
    """Base class of errors caused by user input or configuration."""


class DataError(HostcpError):
    """A dataset could not be loaded or is not usable (wrong columns, NaN, one class...)."""


class ArchiveError(DataError):
    """An uploaded archive is corrupt, too large, or hostile (path traversal, bomb)."""


class ConfigError(HostcpError):
    """A setting is out of range or inconsistent with the data."""


class NotFittedError(HostcpError):
    """A method's ``result`` was read before ``fit`` was called."""


class StoreError(HostcpError):
    """The project store is missing, of a newer schema, or an id does not exist."""


class ExportError(HostcpError):
    """An export could not be written; nothing partial was left behind."""


class ClusterError(HostcpError):
    """The Ray cluster a job runs on cannot be reached, went away, or lost a task for good."""


class JobCancelled(Exception):
    """Raised inside a worker when the user cancelled the job (not an error)."""


def one_line(text: object, *, limit: int = 300) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters.

    Errors are read line by line (the CLI's stderr, the app's alerts); text quoted from
    other libraries (pandas, pyarrow, PIL) often spans lines.
    """
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
