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
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, Split
from core.errors import StoreError

__all__ = [
    "DECISION_ACTIONS",
    "SCHEMA_VERSION",
    "DatasetInfo",
    "Decision",
    "JobRecord",
    "RunRecord",
    "Store",
    "default_store_path",
    "utcnow",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: What a reviewer can decide about an example. ``undo`` cancels an earlier decision.
DECISION_ACTIONS = ("relabel", "accept", "keep", "exclude", "undo")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    n INTEGER NOT NULL,
    class_names TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    data_file TEXT NOT NULL,
    split_seed INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    method TEXT NOT NULL,
    budget REAL NOT NULL,
    seed INTEGER NOT NULL,
    settings TEXT NOT NULL,
    info TEXT NOT NULL DEFAULT '{}',
    labels_revision INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_examples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    example_index INTEGER NOT NULL,
    selected INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, example_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mislabel_results (
    id INTEGER PRIMARY KEY,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    noise_rate REAL NOT NULL,
    threshold REAL NOT NULL,
    settings TEXT NOT NULL,
    labels_revision INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS mislabel_examples (
    result_id INTEGER NOT NULL REFERENCES mislabel_results(id) ON DELETE CASCADE,
    example_index INTEGER NOT NULL,
    score REAL NOT NULL,
    flagged INTEGER NOT NULL,
    suggested_label INTEGER NOT NULL,
    suggested_confidence REAL NOT NULL,
    PRIMARY KEY (result_id, example_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    example_index INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('relabel', 'accept', 'keep', 'exclude', 'undo')),
    old_label INTEGER NOT NULL,
    new_label INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    undoes INTEGER REFERENCES decisions(id)
);
CREATE INDEX IF NOT EXISTS decisions_by_dataset ON decisions(dataset_id, example_index);
CREATE TABLE IF NOT EXISTS artifacts (
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    file TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, kind, key)
);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    dataset_id INTEGER REFERENCES datasets(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    stage TEXT NOT NULL DEFAULT '',
    fraction REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    eta_s REAL,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    params TEXT NOT NULL DEFAULT '{}',
    owner_pid INTEGER,
    created_at TEXT NOT NULL,
    started_at TEXT,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
"""


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


def _atomic_save(path: Path, writer) -> None:
    """Write a file through ``writer(fileobj)`` to a temporary name, then rename it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Store:
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
                conn.executescript(_SCHEMA)
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
        _atomic_save(self._file(fname), lambda fh: np.save(fh, np.asarray(array), allow_pickle=False))
        return fname

    def load_array(self, fname: str) -> np.ndarray:
        """Read an array written by :meth:`save_array`."""
        path = self._file(fname)
        if not path.exists():
            raise StoreError(f"Array file {path} is missing; the project folder was changed by hand.")
        return np.load(path, allow_pickle=False)

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
        fname = f"dataset-{dataset.content_hash()}-{os.urandom(4).hex()}.npz"
        _atomic_save(self._file(fname), lambda fh: np.savez_compressed(fh, **arrays))
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

    # ----------------------------------------------------------------- reviews
    def add_decision(
        self,
        dataset_id: int,
        example_index: int,
        action: str,
        *,
        new_label: int | None = None,
        reviewer: str = "reviewer",
        undoes: int | None = None,
    ) -> Decision:
        """Append one review decision; it is committed (durable) when this returns.

        ``old_label`` is the example's effective label before this decision.
        For ``relabel``/``accept`` give ``new_label``; ``keep`` and ``exclude``
        keep the label; ``undo`` needs ``undoes`` (the id it cancels).
        """
        if action not in DECISION_ACTIONS:
            raise StoreError(f"Unknown review action {action!r}; expected one of {DECISION_ACTIONS}.")
        with self.connect() as conn:
            row = self._dataset_row(conn, dataset_id)
            n = row["n"]
            n_classes = len(json.loads(row["class_names"]))
            if not 0 <= int(example_index) < n:
                raise StoreError(f"Example index {example_index} is out of range 0..{n - 1}.")
            labels = self._effective_labels(conn, dataset_id)
            old = int(labels[int(example_index)])
            if action in ("relabel", "accept"):
                if new_label is None or not 0 <= int(new_label) < n_classes:
                    raise StoreError(
                        f"{action} needs a new label in 0..{n_classes - 1}; got {new_label!r}."
                    )
                new = int(new_label)
            else:
                new = old
            if action == "undo":
                target = conn.execute(
                    "SELECT * FROM decisions WHERE id=? AND dataset_id=?", (undoes, dataset_id)
                ).fetchone()
                if target is None or target["action"] == "undo":
                    raise StoreError(f"Decision {undoes!r} does not exist or cannot be undone.")
                if conn.execute("SELECT 1 FROM decisions WHERE undoes=?", (undoes,)).fetchone():
                    raise StoreError(f"Decision {undoes} was already undone.")
                example_index = target["example_index"]
                old = int(labels[int(example_index)])
            now = utcnow()
            cur = conn.execute(
                "INSERT INTO decisions(dataset_id, example_index, action, old_label, new_label,"
                " reviewer, decided_at, undoes) VALUES (?,?,?,?,?,?,?,?)",
                (dataset_id, int(example_index), action, old, new, reviewer, now, undoes),
            )
            did = int(cur.lastrowid)
        return Decision(did, dataset_id, int(example_index), action, old, new, reviewer, now, undoes)

    def decisions(self, dataset_id: int) -> list[Decision]:
        """The whole review log of a dataset, oldest first (undo entries included)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM decisions WHERE dataset_id=? ORDER BY id", (dataset_id,)
            ).fetchall()
        return [self._decision(r) for r in rows]

    @staticmethod
    def _decision(r: sqlite3.Row) -> Decision:
        return Decision(
            r["id"], r["dataset_id"], r["example_index"], r["action"], r["old_label"],
            r["new_label"], r["reviewer"], r["decided_at"], r["undoes"],
        )

    def active_decisions(self, dataset_id: int) -> dict[int, Decision]:
        """The decision in force per example: the latest one that was not undone."""
        return self._active(self.decisions(dataset_id))

    @staticmethod
    def _active(log_: list[Decision]) -> dict[int, Decision]:
        undone = {d.undoes for d in log_ if d.action == "undo"}
        active: dict[int, Decision] = {}
        for d in log_:
            if d.action == "undo" or d.id in undone:
                continue
            active[d.example_index] = d
        return active

    def _effective_labels(self, conn: sqlite3.Connection, dataset_id: int) -> np.ndarray:
        row = self._dataset_row(conn, dataset_id)
        with np.load(self._file(row["data_file"]), allow_pickle=False) as z:
            labels = z["labels"].astype(np.int64).copy()
        rows = conn.execute(
            "SELECT * FROM decisions WHERE dataset_id=? ORDER BY id", (dataset_id,)
        ).fetchall()
        for idx, d in self._active([self._decision(r) for r in rows]).items():
            labels[idx] = d.new_label
        return labels

    def effective_labels(self, dataset_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels with review decisions applied, and the ``(N,)`` mask of excluded examples."""
        with self.connect() as conn:
            labels = self._effective_labels(conn, dataset_id)
            n = len(labels)
        excluded = np.zeros(n, dtype=bool)
        for idx, d in self.active_decisions(dataset_id).items():
            if d.action == "exclude":
                excluded[idx] = True
        return labels, excluded

    def labels_revision(self, dataset_id: int) -> int:
        """A counter that changes whenever the review log does (keys caches)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(id), 0) FROM decisions WHERE dataset_id=?", (dataset_id,)
            ).fetchone()
        return int(row[0])

    # -------------------------------------------------------------------- runs
    def add_run(
        self,
        dataset_id: int,
        *,
        method: str,
        budget: float,
        seed: int,
        settings: dict,
        selected: np.ndarray,
        value: np.ndarray,
        info: dict | None = None,
        labels_revision: int | None = None,
    ) -> int:
        """Store a finished run with one row per dataset example, in one transaction."""
        selected = np.asarray(selected, dtype=bool)
        value = np.asarray(value, dtype=float)
        rev = self.labels_revision(dataset_id) if labels_revision is None else labels_revision
        with self.connect() as conn:
            n = self._dataset_row(conn, dataset_id)["n"]
            if len(selected) != n or len(value) != n:
                raise StoreError(f"A run needs {n} rows; got {len(selected)} and {len(value)}.")
            cur = conn.execute(
                "INSERT INTO runs(dataset_id, method, budget, seed, settings, info,"
                " labels_revision, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (dataset_id, method, float(budget), int(seed), json.dumps(settings, default=str),
                 json.dumps(info or {}, default=str), rev, utcnow()),
            )
            run_id = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO run_examples(run_id, example_index, selected, value) VALUES (?,?,?,?)",
                (
                    (run_id, i, int(s), None if np.isnan(v) else float(v))
                    for i, (s, v) in enumerate(zip(selected, value, strict=True))
                ),
            )
        return run_id

    def get_run(self, run_id: int) -> RunRecord:
        """A stored run with its per-example arrays."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"No run with id {run_id} in {self.path}.")
            ex = conn.execute(
                "SELECT selected, value FROM run_examples WHERE run_id=? ORDER BY example_index",
                (run_id,),
            ).fetchall()
        arr = np.array(
            [(e[0], np.nan if e[1] is None else e[1]) for e in ex], dtype=float
        ).reshape(-1, 2)
        return RunRecord(
            id=row["id"], dataset_id=row["dataset_id"], method=row["method"], budget=row["budget"],
            seed=row["seed"], settings=json.loads(row["settings"]), info=json.loads(row["info"]),
            labels_revision=row["labels_revision"], created_at=row["created_at"],
            selected=arr[:, 0].astype(bool), value=arr[:, 1],
        )

    def list_runs(self, dataset_id: int) -> list[dict[str, Any]]:
        """Runs of a dataset, newest first, as plain dicts (no per-example arrays)."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM runs WHERE dataset_id=? ORDER BY id DESC", (dataset_id,)
            ).fetchall()
        return [
            {**dict(r), "settings": json.loads(r["settings"]), "info": json.loads(r["info"])}
            for r in rows
        ]

    def latest_run(self, dataset_id: int, method: str | None = None) -> RunRecord | None:
        """The newest run of a dataset (optionally of one method), or ``None``."""
        runs = [r for r in self.list_runs(dataset_id) if method is None or r["method"] == method]
        return self.get_run(runs[0]["id"]) if runs else None

    # --------------------------------------------------------------- mislabels
    def add_mislabel_result(
        self,
        dataset_id: int,
        *,
        score: np.ndarray,
        flagged: np.ndarray,
        suggested_label: np.ndarray,
        suggested_confidence: np.ndarray,
        noise_rate: float,
        threshold: float,
        settings: dict | None = None,
        labels_revision: int | None = None,
    ) -> int:
        """Store per-example mislabel scores (one row per dataset example)."""
        rev = self.labels_revision(dataset_id) if labels_revision is None else labels_revision
        with self.connect() as conn:
            n = self._dataset_row(conn, dataset_id)["n"]
            if not len(score) == len(flagged) == len(suggested_label) == len(suggested_confidence) == n:
                raise StoreError(f"Mislabel results need {n} rows per array.")
            cur = conn.execute(
                "INSERT INTO mislabel_results(dataset_id, noise_rate, threshold, settings,"
                " labels_revision, created_at) VALUES (?,?,?,?,?,?)",
                (dataset_id, float(noise_rate), float(threshold),
                 json.dumps(settings or {}, default=str), rev, utcnow()),
            )
            rid = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO mislabel_examples VALUES (?,?,?,?,?,?)",
                (
                    (rid, i, float(s), int(f), int(sl), float(sc))
                    for i, (s, f, sl, sc) in enumerate(
                        zip(score, flagged, suggested_label, suggested_confidence, strict=True)
                    )
                ),
            )
        return rid

    def latest_mislabels(self, dataset_id: int) -> pd.DataFrame | None:
        """Newest mislabel scores as a DataFrame indexed by example, or ``None``.

        Columns: score, flagged (bool), suggested_label, suggested_confidence;
        ``df.attrs`` holds noise_rate, threshold, labels_revision, result_id.
        """
        with self.connect() as conn:
            row = conn.execute(
                "SELECT * FROM mislabel_results WHERE dataset_id=? ORDER BY id DESC LIMIT 1",
                (dataset_id,),
            ).fetchone()
            if row is None:
                return None
            ex = conn.execute(
                "SELECT example_index, score, flagged, suggested_label, suggested_confidence"
                " FROM mislabel_examples WHERE result_id=? ORDER BY example_index",
                (row["id"],),
            ).fetchall()
        df = pd.DataFrame(
            [tuple(e) for e in ex],
            columns=["example_index", "score", "flagged", "suggested_label", "suggested_confidence"],
        ).set_index("example_index")
        df["flagged"] = df["flagged"].astype(bool)
        df.attrs.update(
            noise_rate=row["noise_rate"], threshold=row["threshold"],
            labels_revision=row["labels_revision"], result_id=row["id"],
            settings=json.loads(row["settings"]),
        )
        return df

    # --------------------------------------------------------------- artefacts
    def put_artifact(self, dataset_id: int, kind: str, key: str, array: np.ndarray) -> None:
        """Cache an array (embedding, UMAP layout...) under ``(kind, key)``."""
        fname = self.save_array(f"{kind}-{dataset_id}-{os.urandom(6).hex()}", array)
        with self.connect() as conn:
            old = conn.execute(
                "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                (dataset_id, kind, key),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO artifacts(dataset_id, kind, key, file, created_at)"
                " VALUES (?,?,?,?,?)",
                (dataset_id, kind, key, fname, utcnow()),
            )
        if old is not None and old["file"] != fname:
            self._file(old["file"]).unlink(missing_ok=True)

    def get_artifact(self, dataset_id: int, kind: str, key: str) -> np.ndarray | None:
        """A cached array, or ``None`` when absent."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                (dataset_id, kind, key),
            ).fetchone()
        if row is None or not self._file(row["file"]).exists():
            return None
        return self.load_array(row["file"])

    def put_table(self, dataset_id: int, kind: str, key: str, table: pd.DataFrame) -> None:
        """Cache a small table (a value curve) as JSON in an artefact file."""
        payload = table.to_json(orient="split").encode()
        fname = f"{kind}-{dataset_id}-{os.urandom(6).hex()}.json"
        _atomic_save(self._file(fname), lambda fh: fh.write(payload))
        with self.connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO artifacts(dataset_id, kind, key, file, created_at)"
                " VALUES (?,?,?,?,?)",
                (dataset_id, kind, key, fname, utcnow()),
            )

    def get_table(self, dataset_id: int, kind: str, key: str | None = None) -> pd.DataFrame | None:
        """A cached table (the newest of that kind when ``key`` is None), or ``None``."""
        with self.connect() as conn:
            if key is None:
                row = conn.execute(
                    "SELECT file FROM artifacts WHERE dataset_id=? AND kind=?"
                    " ORDER BY created_at DESC LIMIT 1",
                    (dataset_id, kind),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT file FROM artifacts WHERE dataset_id=? AND kind=? AND key=?",
                    (dataset_id, kind, key),
                ).fetchone()
        if row is None or not self._file(row["file"]).exists():
            return None
        from io import StringIO

        return pd.read_json(StringIO(self._file(row["file"]).read_text()), orient="split")

    # -------------------------------------------------------------------- jobs
    def create_job(self, kind: str, *, dataset_id: int | None = None, params: dict | None = None) -> int:
        """Insert a queued job; returns its id."""
        now = utcnow()
        with self.connect() as conn:
            cur = conn.execute(
                "INSERT INTO jobs(kind, dataset_id, status, params, owner_pid, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (kind, dataset_id, "queued", json.dumps(params or {}, default=str), os.getpid(),
                 now, now),
            )
            return int(cur.lastrowid)

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set columns of a job row (``result`` is JSON-encoded)."""
        allowed = {"status", "stage", "fraction", "message", "eta_s", "error", "result",
                   "started_at", "finished_at", "cancel_requested"}
        bad = set(fields) - allowed
        if bad:
            raise StoreError(f"Unknown job fields {sorted(bad)}.")
        if "result" in fields and fields["result"] is not None:
            fields["result"] = json.dumps(fields["result"], default=str)
        fields["updated_at"] = utcnow()
        cols = ", ".join(f"{k}=?" for k in fields)
        with self.connect() as conn:
            conn.execute(f"UPDATE jobs SET {cols} WHERE id=?", (*fields.values(), job_id))

    def get_job(self, job_id: int) -> JobRecord:
        """A job's current state."""
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise StoreError(f"No job with id {job_id}.")
        return self._job(row)

    @staticmethod
    def _job(row: sqlite3.Row) -> JobRecord:
        return JobRecord(
            id=row["id"], kind=row["kind"], dataset_id=row["dataset_id"], status=row["status"],
            stage=row["stage"], fraction=row["fraction"], message=row["message"],
            eta_s=row["eta_s"], error=row["error"], cancel_requested=bool(row["cancel_requested"]),
            result=json.loads(row["result"]) if row["result"] else None,
            params=json.loads(row["params"]), created_at=row["created_at"],
            started_at=row["started_at"], updated_at=row["updated_at"],
            finished_at=row["finished_at"],
        )

    def list_jobs(self, dataset_id: int | None = None, *, limit: int = 50) -> list[JobRecord]:
        """Newest jobs first (of one dataset when given)."""
        with self.connect() as conn:
            if dataset_id is None:
                rows = conn.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
            else:
                rows = conn.execute(
                    "SELECT * FROM jobs WHERE dataset_id=? ORDER BY id DESC LIMIT ?",
                    (dataset_id, limit),
                )
            return [self._job(r) for r in rows.fetchall()]

    def request_cancel(self, job_id: int) -> None:
        """Ask a running job to stop at its next check."""
        self.update_job(job_id, cancel_requested=1)

    def cancel_requested(self, job_id: int) -> bool:
        """Whether someone asked the job to stop."""
        with self.connect() as conn:
            row = conn.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row[0])

    def fail_interrupted_jobs(self) -> int:
        """Mark jobs whose owning process is gone (killed mid-run) as failed; returns how many."""
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id, owner_pid FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
            dead = [r["id"] for r in rows if not _pid_alive(r["owner_pid"])]
            now = utcnow()
            conn.executemany(
                "UPDATE jobs SET status='failed', error='Interrupted: the process running this job"
                " stopped. Start it again.', finished_at=?, updated_at=? WHERE id=?",
                ((now, now, i) for i in dead),
            )
        return len(dead)


def _pid_alive(pid: int | None) -> bool:
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
