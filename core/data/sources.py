"""Where a dataset comes from: a file path or an upload ``(filename, bytes)``, read within limits."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from core.data.archive import check_upload_size
from core.data.limits import LoadLimits
from core.errors import DataError

__all__ = ["Source", "describe", "read_bytes", "check_path"]

Source = str | os.PathLike | tuple[str, bytes]
"""A file path, or an upload as ``(filename, bytes)``."""


def describe(source: Source) -> tuple[str, str]:
    """Return (file name for messages, lower-case extension) of a path or upload."""
    if isinstance(source, tuple | list):
        if len(source) != 2 or not isinstance(source[0], str):
            raise TypeError(
                f"An upload must be a (filename, bytes) pair; got a {type(source).__name__} "
                f"of length {len(source)}."
            )
        if not isinstance(source[1], bytes | bytearray | memoryview):
            raise TypeError(f"Upload content must be bytes; got {type(source[1]).__name__}.")
        filename = PurePath(source[0].replace("\\", "/")).name or "upload"
    elif isinstance(source, str | os.PathLike):
        filename = str(source)
    else:
        raise TypeError(
            f"source must be a path (str or Path) or a (filename, bytes) upload; got {type(source).__name__}."
        )
    return filename, PurePath(filename).suffix.lower()


def read_bytes(source: Source, filename: str, limits: LoadLimits) -> bytes:
    """Read a path or upload into memory after checking its size."""
    if isinstance(source, tuple | list):
        data = bytes(source[1])
        check_upload_size(len(data), where=filename, limits=limits)
        return data
    path = Path(source)
    check_path(path)
    check_upload_size(path.stat().st_size, where=str(path), limits=limits)
    return path.read_bytes()


def check_path(path: Path) -> None:
    """Raise a DataError if ``path`` does not exist or is a folder."""
    if not path.exists():
        raise DataError(f"File not found: {path}. Check the path (relative to {Path.cwd()}).")
    if path.is_dir():
        raise DataError(
            f"{path} is a folder. Zip it first (for example `zip -r data.zip {path.name}`) and load the ZIP."
        )
