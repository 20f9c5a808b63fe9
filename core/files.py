"""Atomic file writes: a reader never sees half a file, a failed write leaves the old one intact."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, writer: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``writer(binary_file)`` into a temporary file, then rename it.

    The temporary file sits in the same folder (so the rename is atomic), is
    flushed to disk before the rename, and is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
