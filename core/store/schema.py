"""The SQLite schema of the project store and its version."""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "DECISION_ACTIONS", "SCHEMA", "ADDED_COLUMNS"]

SCHEMA_VERSION = 1
#: What a reviewer can decide about an example. ``undo`` cancels an earlier decision.
DECISION_ACTIONS = ("relabel", "accept", "keep", "exclude", "undo")

SCHEMA = """
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
    owner_token TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
"""

#: Columns added after version 1 shipped, as ``(table, column, declaration)``: a store made
#: before them gains them when it is opened (nullable, so older programs still read it).
ADDED_COLUMNS = (("jobs", "owner_token", "TEXT"), ("decisions", "batch_id", "INTEGER"))
