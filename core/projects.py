"""Where the command line keeps its runs: the app's database, and ``OUT/project.json`` pointing at it.

``hostcp select`` and ``curve`` store datasets and runs in ``$HOSTCP_HOME/hostcp.sqlite``
(the app's), so a CLI run shows up in the app; ``--store`` names another database
(``OUT/hostcp.sqlite`` is the layout of earlier versions). They write
``OUT/project.json`` (:data:`PROJECT_FILE`) with the database, dataset and run, which is
how ``hostcp export OUT`` exports exactly that run. A folder without it (made by an
earlier version) is read the old way: its ``hostcp.sqlite``, newest dataset.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import HostcpError
from core.files import atomic_write

if TYPE_CHECKING:  # the store pulls in pandas: `hostcp --help` and `inspect` never load it
    from core.store import Store

__all__ = ["PROJECT_FILE", "check_writable", "find_project", "open_store", "write_project"]

#: Written by ``select`` and ``curve`` into OUT: ``{"store": path, "dataset_id": id, "run_id": id}``.
PROJECT_FILE = "project.json"


def open_store(store: str | None) -> Store:
    """The project database: ``--store`` if given, else the app's (``$HOSTCP_HOME/hostcp.sqlite``)."""
    from core.store import Store, default_store_path

    return Store(Path(store) if store else default_store_path())


def check_writable(out: Path) -> None:
    """Raise the OSError that writing into folder ``out`` would, before any work (nothing is created)."""
    folder = out
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(out))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(out))


def write_project(out: Path, store: Store, dataset_id: int, run_id: int | None = None) -> None:
    """``OUT/project.json``: where ``hostcp export OUT`` finds the database, dataset and run."""
    record = {"store": str(Path(store.path).resolve()), "dataset_id": int(dataset_id), "run_id": run_id}
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(out / PROJECT_FILE, lambda fh: fh.write(text.encode()))


def find_project(project: str | None) -> tuple[Path, dict]:
    """The database (and what ``OUT/project.json`` says) for ``hostcp export PROJECT``."""
    from core.store import default_store_path

    if project is None:
        return default_store_path(), {}
    path = Path(project)
    if path.is_dir():
        if (path / PROJECT_FILE).is_file():
            try:
                record = json.loads((path / PROJECT_FILE).read_text(encoding="utf-8"))
                return Path(record["store"]), record
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise HostcpError(f"{path / PROJECT_FILE} is not a project file written by hostcp select "
                                  f"({e}). Run hostcp select again, or give the .sqlite file.") from e
        return path / "hostcp.sqlite", {}  # a folder of an earlier version: the database is inside
    return path, {}
