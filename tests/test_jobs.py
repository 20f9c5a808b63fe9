"""The background job runner: progress, cancellation, errors, consistency of the store."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.errors import DataError
from core.jobs import JobRunner


@pytest.fixture()
def runner(store):
    return JobRunner(store)


def test_progress_is_reported_and_result_stored(runner, store):
    seen = []

    def work(reporter):
        for i in range(5):
            reporter.report("counting", (i + 1) / 5, f"step {i + 1}/5")
            seen.append(store.get_job(job_id_box[0]).fraction)
            time.sleep(0.3)
        return {"answer": 42}

    job_id_box: list[int] = []
    job_id = runner.submit("demo", work)
    job_id_box.append(job_id)
    job = runner.wait(job_id, timeout=30)
    assert job.status == "done" and job.result == {"answer": 42}
    assert job.fraction == 1.0 and job.started_at and job.finished_at
    assert seen == sorted(seen) and seen[0] > 0  # progress rose as the job ran


def test_cancel_is_honoured_between_batches(runner, store):
    started = threading.Event()
    batches = []

    def work(reporter):
        for i in range(1000):
            reporter.check_cancelled()
            batches.append(i)
            started.set()
            time.sleep(0.01)
        return {}

    job_id = runner.submit("long", work)
    assert started.wait(10)
    runner.cancel(job_id)
    job = runner.wait(job_id, timeout=30)
    assert job.status == "cancelled" and len(batches) < 1000


def test_cancel_through_the_store_alone(store):
    """Another process (the CLI, a second tab) can cancel by writing the flag."""
    runner = JobRunner(store)
    started = threading.Event()

    def work(reporter):
        while True:
            started.set()
            reporter.check_cancelled()
            time.sleep(0.01)

    job_id = runner.submit("long", work)
    assert started.wait(10)
    store.request_cancel(job_id)
    assert runner.wait(job_id, timeout=30).status == "cancelled"


def test_failing_job_reports_error_and_keeps_committed_results(runner, store, digits_dataset,
                                                               digits_split):
    did = store.add_dataset(digits_dataset, digits_split)

    def work(reporter):
        store.add_run(did, method="random", budget=0.1, seed=0, settings={},
                      selected=np.zeros(digits_dataset.n, bool), value=np.zeros(digits_dataset.n))
        raise DataError("the data went bad halfway")

    job = runner.wait(runner.submit("selection", work, dataset_id=did), timeout=30)
    assert job.status == "failed" and job.error == "the data went bad halfway"
    assert len(store.list_runs(did)) == 1  # committed before the failure, still there
    assert store.get_dataset(did)[0].n == digits_dataset.n


def test_unexpected_exception_is_captured(runner):
    def work(reporter):
        return 1 / 0

    job = runner.wait(runner.submit("bug", work), timeout=30)
    assert job.status == "failed" and "ZeroDivisionError" in job.error


def test_a_new_stage_is_written_at_once_despite_throttling(store):
    from core.jobs import JobReporter

    job_id = store.create_job("demo")
    reporter = JobReporter(store, job_id, min_interval=60)
    reporter.report("embedding", 0.1, "first")
    reporter.report("embedding", 0.2, "throttled")
    assert store.get_job(job_id).message == "first"
    reporter.report("selection", 0.3, "new stage")
    job = store.get_job(job_id)
    assert (job.stage, job.message) == ("selection", "new stage")


def test_jobs_run_one_at_a_time_and_a_queued_cancel_never_starts(runner, store):
    """Native libraries' thread settings are process-wide: jobs must not overlap."""
    release = threading.Event()
    running, overlap, ran_third = [], [], []

    def first(reporter):
        running.append(1)
        release.wait(10)
        running.pop()
        return {}

    def second(reporter):
        overlap.append(len(running))
        return {}

    a = runner.submit("a", first)
    b = runner.submit("b", second)
    c = runner.submit("c", lambda reporter: ran_third.append(1))
    time.sleep(0.5)
    assert store.get_job(b).status == "queued"
    runner.cancel(c)
    release.set()
    assert runner.wait(a, 30).status == "done" and runner.wait(b, 30).status == "done"
    assert overlap == [0]
    assert runner.wait(c, 30).status == "cancelled" and ran_third == []


def test_a_stalled_job_can_be_abandoned_and_the_queue_moves_on(runner, store):
    """A job stuck without progress (a hung pool, a dead lock) must not block every later job."""
    from datetime import UTC, datetime, timedelta

    from core.jobs import STALL_AFTER_S, seconds_without_progress

    stuck = threading.Event()
    started = threading.Event()

    def hangs(reporter):
        reporter.report("waiting", 0.1, "about to hang")
        started.set()
        stuck.wait(60)
        reporter.report("waiting", 0.9, "woke up")
        return {"late": True}

    a = runner.submit("hang", hangs)
    assert started.wait(10)
    b = runner.submit("next", lambda reporter: {"ran": True})
    time.sleep(0.5)
    assert store.get_job(b).status == "queued"  # waits behind the stuck one
    job = store.get_job(a)
    later = datetime.now(UTC) + timedelta(seconds=STALL_AFTER_S + 5)
    assert seconds_without_progress(job, later) > STALL_AFTER_S
    assert seconds_without_progress(store.get_job(b), later) == 0.0  # queued jobs are not stalled

    abandoned = runner.abandon(a)
    assert abandoned.status == "failed" and "Abandoned" in abandoned.error
    assert runner.wait(b, 30).status == "done"  # the queue moved on while `a` is still stuck
    assert runner.is_alive(a)
    stuck.set()
    runner.wait(a, 30)
    final = store.get_job(a)
    assert final.status == "failed" and final.result is None and final.message == "about to hang"


def test_a_job_whose_pid_now_belongs_to_another_process_is_interrupted(store):
    """PID 1 in a container, or a reused PID: alive, but not the process that owned the job."""
    from core.store.records import process_token

    jid = store.create_job("mislabels")
    with store.connect() as conn:
        conn.execute(
            "UPDATE jobs SET status='running', owner_pid=1, owner_token=? WHERE id=?",
            (f"{process_token(1)}-an-earlier-process", jid),
        )
    own = store.create_job("selection")
    JobRunner(store)  # start-up settles stale jobs
    job = store.get_job(jid)
    assert job.status == "failed" and job.error.startswith("Interrupted")
    assert store.get_job(own).status == "queued"  # this process's own job is left alone


def test_a_store_made_before_owner_tokens_gains_the_column(tmp_path):
    import sqlite3

    from core.store import Store

    path = tmp_path / "old.sqlite"
    Store(path)
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE jobs DROP COLUMN owner_token")
    store = Store(path)
    jid = store.create_job("selection")
    with store.connect() as conn:
        token = conn.execute("SELECT owner_token FROM jobs WHERE id=?", (jid,)).fetchone()[0]
    from core.store.records import process_token

    assert token == process_token()
