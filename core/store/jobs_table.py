"""The jobs table: state of background jobs, cancel flags, interrupted jobs (a mixin of Store)."""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from core.errors import StoreError
from core.store.records import (
    JobRecord,
    owner_alive,
    process_token,
    utcnow,
)


class JobsTableMixin:
    """Rows of background jobs; needs ``connect`` from Store."""

    # -------------------------------------------------------------------- jobs
    def create_job(self, kind: str, *, dataset_id: int | None = None, params: dict | None = None) -> int:
        """Insert a queued job; returns its id."""
        now = utcnow()
        with self.connect() as conn:
            cur = conn.execute(
                "INSERT INTO jobs(kind, dataset_id, status, params, owner_pid, owner_token, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?)",
                (kind, dataset_id, "queued", json.dumps(params or {}, default=str), os.getpid(),
                 process_token(), now, now),
            )
            return int(cur.lastrowid)

    def update_job(self, job_id: int, **fields: Any) -> None:
        """Set columns of a job row (``result`` is JSON-encoded)."""
        allowed = {
            "status",
            "stage",
            "fraction",
            "message",
            "eta_s",
            "error",
            "result",
            "started_at",
            "finished_at",
            "cancel_requested",
        }
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
            id=row["id"],
            kind=row["kind"],
            dataset_id=row["dataset_id"],
            status=row["status"],
            stage=row["stage"],
            fraction=row["fraction"],
            message=row["message"],
            eta_s=row["eta_s"],
            error=row["error"],
            cancel_requested=bool(row["cancel_requested"]),
            result=json.loads(row["result"]) if row["result"] else None,
            params=json.loads(row["params"]),
            created_at=row["created_at"],
            started_at=row["started_at"],
            updated_at=row["updated_at"],
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
        """Mark jobs whose owning process is gone (killed mid-run) as failed; returns how many.

        The owner is the process identity recorded with the job (PID and start time, see
        :func:`~core.store.records.process_token`), so a job whose PID now belongs to
        another process (PID 1 of a restarted container, a reused PID) counts as interrupted.
        """
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id, owner_pid, owner_token FROM jobs WHERE status IN ('queued', 'running')"
            ).fetchall()
            dead = [r["id"] for r in rows if not owner_alive(r["owner_pid"], r["owner_token"])]
            now = utcnow()
            conn.executemany(
                "UPDATE jobs SET status='failed', error='Interrupted: the process running this job"
                " stopped. Start it again.', finished_at=?, updated_at=? WHERE id=?",
                ((now, now, i) for i in dead),
            )
        return len(dead)
