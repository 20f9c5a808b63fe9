"""Background jobs: engine work in a worker thread with progress, ETA, cancel and errors.

A job is a function ``fn(reporter) -> dict | None`` run in a daemon thread.
Its :class:`JobReporter` writes stage, fraction, message and ETA to the jobs
table (throttled), and raises :class:`~core.errors.JobCancelled` from
``check_cancelled`` once someone called :meth:`JobRunner.cancel`. The worker
never touches Streamlit: the UI polls :meth:`Store.get_job`, the CLI passes its
own reporter. Results are persisted by ``fn`` itself as it makes them, so a
failed or cancelled job leaves everything already committed intact.

A job that reports no progress for :data:`STALL_AFTER_S` is *stalled*
(:func:`seconds_without_progress`); the user may :meth:`JobRunner.abandon` it:
it is marked failed at once and the jobs queued behind it start, whatever its
thread is stuck in.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime

import core.processes  # noqa: F401  (counts and logs any fork of this process; see its docstring)
from core.errors import HostcpError, JobCancelled
from core.progress import Reporter
from core.store import JobRecord, Store, utcnow

__all__ = ["JobRunner", "JobReporter", "JobFunction", "STALL_AFTER_S", "seconds_without_progress"]

log = logging.getLogger(__name__)

#: Jobs of one process run one at a time. Engine work calls native libraries whose thread
#: settings are process-wide and not safe to change while another thread computes (OpenBLAS
#: thread counts set by threadpoolctl, torch.set_num_threads, numba's pool): two jobs at once
#: (the map's UMAP beside a selection) hung the app. On a 2-core machine they gain nothing
#: from overlapping; a waiting job shows as queued.

#: Seconds without a progress report after which a running job counts as stalled
#: (``HOSTCP_STALL_AFTER_S`` overrides). Engine steps report at least every few seconds;
#: a single step that does not (a large UMAP fit) shows as stalled but keeps running.
STALL_AFTER_S = float(os.environ.get("HOSTCP_STALL_AFTER_S", "300"))


class _EngineSlot:
    """The one engine job of this process; an abandoned job gives up its slot without ending."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._owner: int | None = None
        self._waiting: set[int] = set()

    def acquire(self, job_id: int, should_stop: Callable[[], bool]) -> bool:
        """Wait for the slot, in job order; ``False`` (without it) once ``should_stop()`` says so.

        Jobs get the slot in the order they were submitted (smallest id first), and a
        job asked to stop while it waited never takes it, even when the slot frees at
        the same moment (both used to race: a cancelled queued job could still start).
        """
        with self._cond:
            self._waiting.add(job_id)
            try:
                while self._owner is not None or min(self._waiting) != job_id:
                    if should_stop():
                        return False
                    self._cond.wait(0.25)
                if should_stop():
                    return False
                self._owner = job_id
                return True
            finally:
                self._waiting.discard(job_id)
                self._cond.notify_all()

    def release(self, job_id: int) -> None:
        """Free the slot if ``job_id`` still holds it (an abandoned job no longer does)."""
        with self._cond:
            if self._owner == job_id:
                self._owner = None
                self._cond.notify_all()


_ENGINE_SLOT = _EngineSlot()


def seconds_without_progress(job: JobRecord, now: datetime | None = None) -> float:
    """Seconds since a running job last wrote progress (0 for jobs not running).

    Compare with :data:`STALL_AFTER_S` to tell a stalled job.
    """
    if job.status != "running":
        return 0.0
    now = now or datetime.now(UTC)
    return max(0.0, (now - datetime.fromisoformat(job.updated_at)).total_seconds())

#: An ETA is shown once the current stage has reported this often, run this long (s) and moved
#: this far (share of the job): a rate measured on less swung between 12 s and 1.1 min.
ETA_MIN_REPORTS, ETA_MIN_SECONDS, ETA_MIN_PROGRESS = 3, 2.0, 0.02

#: A job body: gets a reporter, returns a small JSON-able result (e.g. ``{"run_id": 3}``).
JobFunction = Callable[[Reporter], "dict | None"]


class JobReporter:
    """Reporter writing progress of one job to the store.

    Args:
        store: The project store.
        job_id: The job's row.
        min_interval: Seconds between writes of progress (the last one always lands).
    """

    def __init__(self, store: Store, job_id: int, *, min_interval: float = 0.25) -> None:
        self.store = store
        self.job_id = job_id
        self.min_interval = min_interval
        self._started = time.monotonic()
        self._last_write = 0.0
        self._last_stage: str | None = None
        self._stage_start: tuple[float, float] = (self._started, 0.0)  # (time, fraction) the stage began
        self._stage_reports = 0
        self._cancel_event = threading.Event()
        self.detached = False  # set when the job is abandoned: nothing more is written

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        """Record progress, with an ETA from the rate measured in the current stage (or none)."""
        if self.detached:
            return
        now = time.monotonic()
        fraction = min(max(float(fraction), 0.0), 1.0)
        new_stage = stage != self._last_stage
        if new_stage:
            self._stage_start, self._stage_reports = (now, fraction), 0
        self._stage_reports += 1
        if not new_stage and now - self._last_write < self.min_interval and fraction < 1.0:
            return  # throttled within a stage; a new stage is always written at once
        self._last_write = now
        self._last_stage = stage
        self.store.update_job(self.job_id, stage=stage, fraction=fraction, message=message,
                              eta_s=self._eta(now, fraction))

    def _eta(self, now: float, fraction: float) -> float | None:
        """Seconds left at the rate this stage has kept so far; ``None`` until it has been measured.

        Stages run at very different rates (embedding, detection, a UMAP fit that reports
        nothing until it ends), so extrapolating the whole job's elapsed time said "about
        1 s left" for a 50 s UMAP fit. The rate is taken over the current stage only, once
        it has reported :data:`ETA_MIN_REPORTS` times over :data:`ETA_MIN_SECONDS` and moved by
        :data:`ETA_MIN_PROGRESS` of the job; before that no ETA is shown.
        """
        t0, f0 = self._stage_start
        moved, spent = fraction - f0, now - t0
        if (fraction >= 1.0 or self._stage_reports < ETA_MIN_REPORTS or spent < ETA_MIN_SECONDS
                or moved < ETA_MIN_PROGRESS):
            return None
        return spent * (1.0 - fraction) / moved

    def cancel(self) -> None:
        """Mark this job as cancelled from this process (no database round trip)."""
        self._cancel_event.set()

    def cancelled(self) -> bool:
        """Whether the job was asked to stop (here or through the store)."""
        if self._cancel_event.is_set() or self.store.cancel_requested(self.job_id):
            self._cancel_event.set()
        return self._cancel_event.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when the job was asked to stop."""
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} cancelled")


class JobRunner:
    """Runs jobs in background threads and tracks them in the store.

    One runner per process is enough; it is thread-safe. On construction it
    marks jobs left running by a dead process as failed, so the store never
    shows a job as running forever.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._threads: dict[int, threading.Thread] = {}
        self._reporters: dict[int, JobReporter] = {}
        self._lock = threading.Lock()
        n = store.fail_interrupted_jobs()
        if n:
            log.warning("marked %d interrupted job(s) as failed", n)

    def submit(
        self,
        kind: str,
        fn: JobFunction,
        *,
        dataset_id: int | None = None,
        params: dict | None = None,
    ) -> int:
        """Start ``fn`` in a worker thread; returns the job id at once."""
        job_id = self.store.create_job(kind, dataset_id=dataset_id, params=params)
        reporter = JobReporter(self.store, job_id)
        thread = threading.Thread(
            target=self._run, args=(job_id, fn, reporter), name=f"hostcp-job-{job_id}", daemon=True
        )
        with self._lock:
            self._threads[job_id] = thread
            self._reporters[job_id] = reporter
        thread.start()
        return job_id

    def _run(self, job_id: int, fn: JobFunction, reporter: JobReporter) -> None:
        # one engine job at a time in this process (see _ENGINE_SLOT); a job cancelled while
        # it waits in the queue never starts
        if not _ENGINE_SLOT.acquire(job_id, reporter.cancelled):
            if not reporter.detached:
                self.store.update_job(
                    job_id, status="cancelled", message="Cancelled before it started.",
                    finished_at=utcnow(),
                )
            with self._lock:
                self._reporters.pop(job_id, None)
            return
        try:
            self._run_now(job_id, fn, reporter)
        finally:
            _ENGINE_SLOT.release(job_id)

    def _run_now(self, job_id: int, fn: JobFunction, reporter: JobReporter) -> None:
        if reporter.detached:  # abandoned while it waited
            return
        self.store.update_job(job_id, status="running", started_at=utcnow(), stage="starting")
        try:
            result = fn(reporter)
        except JobCancelled:
            if not reporter.detached:
                self.store.update_job(
                    job_id, status="cancelled", message="Cancelled by the user.", finished_at=utcnow()
                )
        except HostcpError as e:
            if not reporter.detached:
                self.store.update_job(job_id, status="failed", error=str(e), finished_at=utcnow())
        except Exception as e:  # a bug, not bad input: keep the traceback in the log
            log.error("job %d failed:\n%s", job_id, traceback.format_exc())
            if not reporter.detached:
                self.store.update_job(
                    job_id, status="failed", error=f"{type(e).__name__}: {e}", finished_at=utcnow()
                )
        else:
            if reporter.detached:
                log.warning("job %d finished after it was abandoned; its result is not recorded", job_id)
                return
            self.store.update_job(
                job_id,
                status="done",
                fraction=1.0,
                eta_s=0.0,
                result=result or {},
                finished_at=utcnow(),
                message="Finished.",
            )
        finally:
            with self._lock:
                self._reporters.pop(job_id, None)

    def cancel(self, job_id: int) -> None:
        """Ask a job to stop at its next check (between batches)."""
        self.store.request_cancel(job_id)
        with self._lock:
            reporter = self._reporters.get(job_id)
        if reporter is not None:
            reporter.cancel()

    def abandon(self, job_id: int) -> JobRecord:
        """Give up a stalled job: mark it failed now and let the queued jobs start.

        Its thread cannot be killed; it is asked to stop at its next check, writes
        nothing more to the job row, and if it ever ends, its result is dropped.
        Results it already saved stay. Returns the job's new record.
        """
        job = self.store.get_job(job_id)
        if job.finished:
            return job
        idle = seconds_without_progress(job)
        with self._lock:
            reporter = self._reporters.get(job_id)
        if reporter is not None:
            reporter.detached = True
            reporter.cancel()
        self.store.request_cancel(job_id)
        self.store.update_job(
            job_id,
            status="failed",
            error=f"Abandoned by the user after {idle:.0f} s without progress. Results it had "
            "already saved are kept; start it again to retry.",
            finished_at=utcnow(),
        )
        log.warning("job %d abandoned after %.0f s without progress", job_id, idle)
        _ENGINE_SLOT.release(job_id)
        return self.store.get_job(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> JobRecord:
        """Block until the job's thread ends (or ``timeout``); returns its record."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.store.get_job(job_id)

    def is_alive(self, job_id: int) -> bool:
        """Whether the job's worker thread is still running in this process."""
        with self._lock:
            thread = self._threads.get(job_id)
        return bool(thread and thread.is_alive())
