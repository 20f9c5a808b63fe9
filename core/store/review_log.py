"""The append-only review log: decisions, undo, effective labels (a mixin of Store)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np

from core.errors import StoreError
from core.store.records import (
    Decision,
    utcnow,
)
from core.store.schema import DECISION_ACTIONS


class ReviewLogMixin:
    """Review decisions of a dataset; needs ``connect`` and ``_dataset_row`` from Store."""

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
                    raise StoreError(f"{action} needs a new label in 0..{n_classes - 1}; got {new_label!r}.")
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
            r["id"],
            r["dataset_id"],
            r["example_index"],
            r["action"],
            r["old_label"],
            r["new_label"],
            r["reviewer"],
            r["decided_at"],
            r["undoes"],
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
