"""Atomic file writes: a reader never sees half a file, a failed write leaves the old one intact.

Every file the engine writes (exports, ``selection.csv`` and the CLI's other
outputs, the store's array files, the embedding cache) goes through
:func:`atomic_write`:

- The bytes go to a temporary file in a hidden folder :data:`TEMP_FOLDER` beside
  the target (the same folder's filesystem, so the final ``os.replace`` is atomic),
  named ``<target name>.<host>-<pid>.<random>.part``, and the folder is removed again
  when it is empty. The user's folder shows only finished files.
- A writer that is killed mid-write (``kill -9``, a crash, a power cut) cannot tidy
  up, so every write first removes the temporaries in that folder whose writer is
  gone: written on this host by a PID that no longer runs. Files of a live writer
  (this process included), of another host, or with a name we did not make are never
  touched. Stale temporaries are only recognised on POSIX (where a PID can be probed
  safely); elsewhere they stay until removed by hand.
- The finished file gets the permissions of any newly created file,
  ``0o666 & ~umask`` (``0644`` under the usual umask 022), not ``mkstemp``'s ``0600``.
  The umask is read from ``/proc/self/status`` at each write (``os.umask`` can only
  be read by setting it, which races with other threads); where that is missing it is
  the umask the process had when this module was imported.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from core.processes import pid_alive

__all__ = ["TEMP_FOLDER", "atomic_write", "clean_stale_temporaries", "default_file_mode"]

log = logging.getLogger(__name__)

#: Hidden folder, beside each written file, that holds its temporary while it is being written.
TEMP_FOLDER = ".hostcp-tmp"
_SUFFIX = ".part"
#: Longest part of the target's name kept in a temporary's name (names are limited to 255 bytes).
_NAME_CHARS = 100
#: Attempts to create the temporary when a concurrent writer removes the empty folder meanwhile.
_CREATE_ATTEMPTS = 5


def _host_tag() -> str:
    """This host's name as a tag without separators: stale temporaries are judged per host."""
    return re.sub(r"[^A-Za-z0-9]+", "", socket.gethostname())[:32] or "host"


def _read_umask() -> int | None:
    """The process umask from ``/proc/self/status`` (Linux 4.7+), or ``None`` where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _umask_at_import() -> int:
    found = _read_umask()
    if found is None:  # set-and-restore: the only portable read; done once, at import
        found = os.umask(0o022)
        os.umask(found)
    return found


_HOST = _host_tag()
_IMPORT_UMASK = _umask_at_import()


def default_file_mode() -> int:
    """Permission bits of a newly created file under the current umask (``0o666 & ~umask``)."""
    umask = _read_umask()
    return 0o666 & ~(_IMPORT_UMASK if umask is None else umask)


def _writer_of(name: str) -> tuple[str, int] | None:
    """``(host, pid)`` from a temporary's name ``<target>.<host>-<pid>.<random>.part``, else ``None``."""
    parts = name.rsplit(".", 3)
    if len(parts) != 4 or not parts[0] or "." + parts[3] != _SUFFIX:
        return None
    host, sep, pid = parts[1].rpartition("-")
    if not sep or not host or not pid.isdigit() or not re.fullmatch(r"[a-z0-9_]+", parts[2]):
        return None
    return host, int(pid)


def clean_stale_temporaries(folder: str | os.PathLike) -> int:
    """Remove the temporaries of dead writers in ``folder``'s :data:`TEMP_FOLDER`; returns how many.

    A temporary is stale when its name is one :func:`atomic_write` makes, it is a
    regular file (not a link or folder), and its writer ran on this host under a PID
    that no longer exists. Everything else is left alone. The folder itself is removed
    when it ends up empty.
    """
    tmp_dir = Path(folder) / TEMP_FOLDER
    try:
        entries = list(os.scandir(tmp_dir))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    removed = 0
    for entry in entries:
        writer = _writer_of(entry.name)
        if writer is None or writer[0] != _HOST or writer[1] == os.getpid() or pid_alive(writer[1]):
            continue
        try:
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
            os.unlink(entry.path)
        except FileNotFoundError:  # another writer cleaned it first
            continue
        removed += 1
    if removed:
        log.info("removed %d stale temporary file(s) of killed writers in %s", removed, tmp_dir)
    _remove_if_empty(tmp_dir)
    return removed


def _remove_if_empty(tmp_dir: Path) -> None:
    try:
        tmp_dir.rmdir()
    except OSError:  # not empty (a live writer), already gone, or not ours to remove
        pass


def _create_temporary(path: Path) -> tuple[int, str]:
    """Open a new temporary for ``path`` in its :data:`TEMP_FOLDER`; returns ``(fd, name)``."""
    tmp_dir = path.parent / TEMP_FOLDER
    prefix = f"{path.name[:_NAME_CHARS]}.{_HOST}-{os.getpid()}."
    for _ in range(_CREATE_ATTEMPTS - 1):
        _make_folder(tmp_dir)
        try:
            return tempfile.mkstemp(dir=tmp_dir, prefix=prefix, suffix=_SUFFIX)
        except FileNotFoundError:  # a concurrent writer removed the empty folder just now
            continue
    _make_folder(tmp_dir)
    return tempfile.mkstemp(dir=tmp_dir, prefix=prefix, suffix=_SUFFIX)


def _make_folder(folder: Path) -> None:
    """``mkdir`` that tolerates an existing folder, even one another writer removes meanwhile.

    ``Path.mkdir(exist_ok=True)`` re-raises when the folder goes between its two checks;
    a file of that name is not caught here but fails in ``mkstemp``.
    """
    try:
        folder.mkdir()
    except FileExistsError:
        pass


def atomic_write(path: str | os.PathLike, writer: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``writer(binary_file)`` into a temporary file, then rename it.

    Missing parent folders are created. The temporary (see the module docstring) is
    flushed to disk before the rename and removed if anything fails; stale ones of
    killed writers are removed first. The result has the umask's permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path.parent)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), default_file_mode())
            os.fsync(fh.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _remove_if_empty(path.parent / TEMP_FOLDER)
    return path
