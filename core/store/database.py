"""The project store: a SQLite database file (WAL) plus array files beside it.

Durable state lives here: datasets and their splits, runs with their settings
and per-example results, mislabel scores, the append-only log of review
decisions, cached artefacts (embeddings, UMAP, value curves) and background
jobs. Large arrays are written as ``.npy``/``.npz`` files next to the
database (atomically: temporary file, then rename) and referenced from it, so
killing the process never leaves a row pointing at half a file.

Every operation opens its own connection (sqlite3 connections refuse
cross-thread use), so one :class:`Store` object may be shared by the UI thread
and job worker threads.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from core.data.dataset import Dataset, Split
from core.errors import StoreError
from core.files import atomic_write
from core.store.jobs_table import JobsTableMixin
from core.store.records import (
    DatasetInfo,
    default_store_path,
    utcnow,
)
from core.store.results import ResultsMixin
from core.store.review_log import ReviewLogMixin
from core.store.schema import ADDED_COLUMNS, SCHEMA, SCHEMA_VERSION

__all__ = ["Store", "MMAP_MIN_BYTES"]

log = logging.getLogger(__name__)

#: ``.npy`` files at least this large are memory-mapped on load (smaller ones are read whole).
MMAP_MIN_BYTES = 1 << 20


def _load_npy(path: Path) -> np.ndarray:
    """``np.load`` of a ``.npy``: a read-only memory-mapped view from :data:`MMAP_MIN_BYTES` on.

    The view is a plain ``ndarray``, not the ``np.memmap`` subclass (whose slices and
    reductions keep the subclass and surprise pickling); its ``base`` holds the map.
    """
    if path.suffix == ".npy" and path.stat().st_size >= MMAP_MIN_BYTES:
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    return np.load(path, allow_pickle=False)


class Store(ReviewLogMixin, ResultsMixin, JobsTableMixin):
    """The project database. ``Store(path)`` creates the file and schema if needed.

    Args:
        path: The SQLite file. Arrays go in a folder ``<stem>_files`` beside it.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.files_dir = self.path.with_name(self.path.stem + "_files")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._init_lock = threading.Lock()
        self._init_schema()

    # ------------------------------------------------------------------ basics
    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection in a transaction: committed on success, rolled back on error."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def _init_schema(self) -> None:
        with self._init_lock:
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                row = None
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                except sqlite3.DatabaseError as e:
                    if "no such table" not in str(e):
                        raise StoreError(
                            f"{self.path} is not a hostcp-studio project database ({e}). "
                            "Choose another path or move the file away."
                        ) from e
                if row is not None and int(row[0]) > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path} has schema version {row[0]}, newer than this program's "
                        f"{SCHEMA_VERSION}. Upgrade hostcp-studio to open it."
                    )
                conn.executescript(SCHEMA)
                for table, column, decl in ADDED_COLUMNS:
                    have = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                conn.commit()
            finally:
                conn.close()

    def _file(self, name: str) -> Path:
        return self.files_dir / name

    def save_array(self, name: str, array: np.ndarray) -> str:
        """Write ``array`` atomically as ``<files>/<name>.npy``; returns the file name."""
        fname = name if name.endswith(".npy") else name + ".npy"
        atomic_write(self._file(fname), lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))
        return fname

    def load_array(self, fname: str) -> np.ndarray:
        """Read an array written by :meth:`save_array`, memory-mapped when it is large.

        A ``.npy`` of at least :data:`MMAP_MIN_BYTES` comes back as a read-only view of
        a memory map (a plain ``ndarray`` whose ``base`` is the map), so an embedding or
        layout larger than memory is paged in as it is read; writing into it raises
        ``ValueError`` (copy it first). Smaller files are read whole: a map holds a file
        descriptor for as long as the array lives. :meth:`save_array` replaces a file by
        rename, so a map of the old file stays valid after the store writes a new one.
        """
        path = self._file(fname)
        if not path.exists():
            raise StoreError(f"Array file {path} is missing; the project folder was changed by hand.")
        return _load_npy(path)

    # ---------------------------------------------------------------- datasets
    def add_dataset(self, dataset: Dataset, split: Split) -> int:
        """Store a dataset with its split; returns its id."""
        roles = np.asarray(split.role_of(dataset.n)).astype(str)
        arrays: dict[str, np.ndarray] = {
            "ids": dataset.ids.astype(str),
            "labels": dataset.labels.astype(np.int64),
            "sources": np.asarray(dataset.sources).astype(str),
            "roles": roles,
        }
        if dataset.features is not None:
            arrays["features"] = dataset.features
        else:
            arrays["images"] = dataset.images
        if dataset.true_labels is not None:
            arrays["true_labels"] = dataset.true_labels.astype(np.int64)
        # feature names and the source file, as JSON text in the same file (no schema change);
        # a dataset stored before they were kept has no "meta" and loads with generated names
        arrays["meta"] = np.array(json.dumps({
            "feature_names": None if dataset.feature_names is None else list(dataset.feature_names),
            "source_file": dataset.source_file, "source_sha256": dataset.source_sha256,
        }))
        fname = f"dataset-{dataset.content_hash()}-{os.urandom(4).hex()}.npz"
        atomic_write(self._file(fname), lambda fh: np.savez_compressed(fh, **arrays))
        with self.connect() as conn:
            cur = conn.execute(
                "INSERT INTO datasets(name, kind, origin, n, class_names, content_hash, data_file,"
                " split_seed, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    dataset.name,
                    dataset.kind,
                    dataset.origin,
                    dataset.n,
                    json.dumps(list(dataset.class_names)),
                    dataset.content_hash(),
                    fname,
                    split.seed,
                    utcnow(),
                ),
            )
            return int(cur.lastrowid)

    def _dataset_row(self, conn: sqlite3.Connection, dataset_id: int) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM datasets WHERE id=?", (dataset_id,)).fetchone()
        if row is None:
            raise StoreError(f"No dataset with id {dataset_id} in {self.path}.")
        return row

    @staticmethod
    def _info(row: sqlite3.Row) -> DatasetInfo:
        return DatasetInfo(
            id=row["id"],
            name=row["name"],
            kind=row["kind"],
            origin=row["origin"],
            n=row["n"],
            class_names=tuple(json.loads(row["class_names"])),
            content_hash=row["content_hash"],
            split_seed=row["split_seed"],
            created_at=row["created_at"],
        )

    def dataset_info(self, dataset_id: int) -> DatasetInfo:
        """The dataset's row without loading its arrays."""
        with self.connect() as conn:
            return self._info(self._dataset_row(conn, dataset_id))

    def list_datasets(self) -> list[DatasetInfo]:
        """All stored datasets, newest first."""
        with self.connect() as conn:
            rows = conn.execute("SELECT * FROM datasets ORDER BY id DESC").fetchall()
        return [self._info(r) for r in rows]

    def get_dataset(self, dataset_id: int) -> tuple[Dataset, Split]:
        """Load a stored dataset (with its original labels) and its split."""
        with self.connect() as conn:
            row = self._dataset_row(conn, dataset_id)
        path = self._file(row["data_file"])
        if not path.exists():
            raise StoreError(f"Data file {path} of dataset {dataset_id} is missing.")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        roles = arrays["roles"]
        meta = json.loads(str(arrays["meta"])) if "meta" in arrays else {}
        names = meta.get("feature_names")
        dataset = Dataset(
            name=row["name"],
            ids=arrays["ids"].astype(object),
            labels=arrays["labels"],
            class_names=tuple(json.loads(row["class_names"])),
            features=arrays.get("features"),
            images=arrays.get("images"),
            sources=arrays["sources"].astype(object),
            true_labels=arrays.get("true_labels"),
            origin=row["origin"],
            feature_names=None if names is None else tuple(names),
            source_file=meta.get("source_file", ""),
            source_sha256=meta.get("source_sha256", ""),
        )
        split = Split(
            train=np.flatnonzero(roles == "train"),
            val=np.flatnonzero(roles == "val"),
            test=np.flatnonzero(roles == "test"),
            seed=int(row["split_seed"]),
        )
        return dataset, split

    def delete_dataset(self, dataset_id: int) -> None:
        """Remove a dataset and everything that belongs to it (runs, decisions, files)."""
        with self.connect() as conn:
            row = self._dataset_row(conn, dataset_id)
            files = [row["data_file"]] + [
                r["file"]
                for r in conn.execute("SELECT file FROM artifacts WHERE dataset_id=?", (dataset_id,))
            ]
            conn.execute("DELETE FROM datasets WHERE id=?", (dataset_id,))
        for f in files:
            self._file(f).unlink(missing_ok=True)
