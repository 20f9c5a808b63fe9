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

__all__ = ["ReviewLogMixin", "StaleDecisionError", "decisions_in_force", "example_revisions"]


class StaleDecisionError(StoreError):
    """A decision was made against an older revision of the example than the one in the log.

    Two tabs or two reviewers looked at the same example; the other one decided first.
    Nothing was written. ``current`` is the decision now in force (``None`` when the newer
    entry was an undo that left none), so the user can see it and confirm theirs.

    Attributes:
        example_index: The example.
        revision: Its revision now (see :func:`example_revisions`).
        current: The decision in force now, or ``None``.
    """

    def __init__(self, example_index: int, revision: int, current: Decision | None) -> None:
        self.example_index, self.revision, self.current = int(example_index), int(revision), current
        now = (f"{current.reviewer} decided {current.action} at {current.decided_at}" if current
               else "its decision was undone")
        super().__init__(
            f"Example {example_index} changed after you opened it ({now}); your decision was not "
            "saved. Look at the newer decision and confirm yours to replace it."
        )


def example_revisions(log_: list[Decision]) -> dict[int, int]:
    """Each example's revision: the id of its newest log entry (undo entries count); absent means 0.

    A decision is made against the revision the reviewer saw; if the example's revision
    moved on since, someone else decided (or undid) in between.
    """
    out: dict[int, int] = {}
    for d in log_:
        out[d.example_index] = max(out.get(d.example_index, 0), d.id)
    return out


def decisions_in_force(log_: list[Decision]) -> dict[int, Decision]:
    """The decision in force per example of a log (oldest first): the latest one not undone.

    What :meth:`ReviewLogMixin.active_decisions` gives, for a log already read (the app
    reads the log once per rerun and derives labels, queue and progress from it).
    """
    undone = {d.undoes for d in log_ if d.action == "undo"}
    active: dict[int, Decision] = {}
    for d in log_:
        if d.action == "undo" or d.id in undone:
            continue
        active[d.example_index] = d
    return active


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
        expected_revision: int | None = None,
    ) -> Decision:
        """Append one review decision; it is committed (durable) when this returns.

        ``old_label`` is the example's effective label before this decision and
        ``new_label`` the one after it. For ``relabel``/``accept`` give ``new_label``;
        ``keep`` and ``exclude`` keep the label; ``undo`` needs ``undoes`` (the id it
        cancels) and records the label it restores as ``new_label`` (the label of the
        decision then in force, or the imported label), so the log alone tells what each
        undo changed. With ``expected_revision`` the write is refused with
        :class:`StaleDecisionError` unless the example is still at that revision.
        """
        return self.add_decisions(
            dataset_id, [(example_index, action, new_label, undoes)], reviewer=reviewer, batch=False,
            expected=None if expected_revision is None else {int(example_index): int(expected_revision)},
        )[0]

    def add_decisions(
        self,
        dataset_id: int,
        items: list[tuple[int, str, int | None, int | None]],
        *,
        reviewer: str = "reviewer",
        batch: bool = True,
        expected: dict[int, int] | None = None,
    ) -> list[Decision]:
        """Append several decisions in one transaction: all are durable, or none is.

        Each item is ``(example_index, action, new_label, undoes)`` with the meaning of
        :meth:`add_decision`'s arguments. With ``batch`` they share a new batch id
        (:attr:`Decision.batch`), which is how one bulk action is undone as one.

        Args:
            expected: ``{example_index: revision}`` the decisions were made against (see
                :func:`example_revisions`); checked in the same transaction as the write.

        Raises:
            StaleDecisionError: an example's revision is not the expected one (nothing written).
        """
        with self.connect() as conn:
            row = self._dataset_row(conn, dataset_id)
            base = self._stored_labels(row)
            log_ = self._log(conn, dataset_id)
            if expected:
                revisions = example_revisions(log_)
                for idx, seen in expected.items():
                    if revisions.get(int(idx), 0) != int(seen):
                        raise StaleDecisionError(idx, revisions.get(int(idx), 0),
                                                 self._active(log_).get(int(idx)))
            batch_id = None
            if batch:
                top = conn.execute("SELECT COALESCE(MAX(batch_id), 0) FROM decisions").fetchone()
                batch_id = int(top[0]) + 1
            out = []
            for example_index, action, new_label, undoes in items:
                d = self._append(conn, row, base, log_, int(example_index), action, new_label=new_label,
                                 reviewer=reviewer, undoes=undoes, batch=batch_id)
                log_.append(d)
                out.append(d)
        return out

    def _append(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        base: np.ndarray,
        log_: list[Decision],
        example_index: int,
        action: str,
        *,
        new_label: int | None,
        reviewer: str,
        undoes: int | None,
        batch: int | None,
    ) -> Decision:
        """Insert one decision given the log so far (``log_``, oldest first) in an open transaction."""
        dataset_id = int(row["id"])
        if action not in DECISION_ACTIONS:
            raise StoreError(f"Unknown review action {action!r}; expected one of {DECISION_ACTIONS}.")
        n = row["n"]
        n_classes = len(json.loads(row["class_names"]))
        if not 0 <= int(example_index) < n:
            raise StoreError(f"Example index {example_index} is out of range 0..{n - 1}.")
        labels = self._apply(base, log_)
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
            example_index = int(target["example_index"])
            # from-label -> restored label: the effective label before and after this undo
            # (the same rule as effective_labels, so the log reads as what happened).
            pending = Decision(id=0, dataset_id=dataset_id, example_index=example_index,
                               action="undo", old_label=old, new_label=old, reviewer=reviewer,
                               decided_at="", undoes=int(undoes))
            old = int(labels[example_index])
            new = int(self._apply(base, [*log_, pending])[example_index])
        now = utcnow()
        cur = conn.execute(
            "INSERT INTO decisions(dataset_id, example_index, action, old_label, new_label,"
            " reviewer, decided_at, undoes, batch_id) VALUES (?,?,?,?,?,?,?,?,?)",
            (dataset_id, int(example_index), action, old, new, reviewer, now, undoes, batch),
        )
        return Decision(int(cur.lastrowid), dataset_id, int(example_index), action, old, new, reviewer,
                        now, undoes, batch)

    def decisions(self, dataset_id: int) -> list[Decision]:
        """The whole review log of a dataset, oldest first (undo entries included)."""
        with self.connect() as conn:
            return self._log(conn, dataset_id)

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
            r["batch_id"],
        )

    def active_decisions(self, dataset_id: int) -> dict[int, Decision]:
        """The decision in force per example: the latest one that was not undone."""
        return self._active(self.decisions(dataset_id))

    @staticmethod
    def _active(log_: list[Decision]) -> dict[int, Decision]:
        return decisions_in_force(log_)

    def _stored_labels(self, row: sqlite3.Row) -> np.ndarray:
        """The labels as imported, ``(N,)`` int64."""
        with np.load(self._file(row["data_file"]), allow_pickle=False) as z:
            return z["labels"].astype(np.int64).copy()

    def _log(self, conn: sqlite3.Connection, dataset_id: int) -> list[Decision]:
        rows = conn.execute(
            "SELECT * FROM decisions WHERE dataset_id=? ORDER BY id", (dataset_id,)
        ).fetchall()
        return [self._decision(r) for r in rows]

    @classmethod
    def _apply(cls, labels: np.ndarray, log_: list[Decision]) -> np.ndarray:
        """``labels`` with the label of each example's decision in force set (a copy)."""
        out = labels.copy()
        for idx, d in cls._active(log_).items():
            out[idx] = d.new_label
        return out

    def _effective_labels(self, conn: sqlite3.Connection, dataset_id: int) -> np.ndarray:
        row = self._dataset_row(conn, dataset_id)
        return self._apply(self._stored_labels(row), self._log(conn, dataset_id))

    def effective_labels(self, dataset_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Labels with review decisions applied, and the ``(N,)`` mask of excluded examples.

        Both come from one read of the log, so they agree even while others are deciding.
        """
        with self.connect() as conn:
            row = self._dataset_row(conn, dataset_id)
            log_ = self._log(conn, dataset_id)
            labels = self._apply(self._stored_labels(row), log_)
        excluded = np.zeros(len(labels), dtype=bool)
        for idx, d in self._active(log_).items():
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
