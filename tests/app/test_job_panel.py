"""The job panel: a job that stopped reporting progress shows as stalled and can be abandoned."""

from __future__ import annotations

from app_helpers import open_page

from core.jobs import STALL_AFTER_S


def _stuck_job(store, did, *, idle_s: float) -> int:
    """A running selection job of this process that last reported ``idle_s`` seconds ago."""
    from datetime import UTC, datetime, timedelta

    jid = store.create_job("selection", dataset_id=did)
    then = (datetime.now(UTC) - timedelta(seconds=idle_s)).isoformat(timespec="milliseconds")
    store.update_job(jid, status="running", stage="hostcp", fraction=0.4, message="batch 3")
    with store.connect() as conn:
        conn.execute("UPDATE jobs SET updated_at=? WHERE id=?", (then, jid))
    return jid


def test_a_stalled_job_offers_abandon_and_abandoning_frees_the_page(project):
    store, did = project
    jid = _stuck_job(store, did, idle_s=STALL_AFTER_S + 120)
    at = open_page("select")
    assert any("No progress for" in w.value for w in at.warning)
    abandon = [b for b in at.button if b.key == f"abandon-job-{jid}"]
    assert abandon
    abandon[0].click().run()
    assert not at.exception, at.exception
    job = store.get_job(jid)
    assert job.status == "failed" and job.error.startswith("Abandoned")
    assert not [b for b in at.button if b.key == f"abandon-job-{jid}"]


def test_a_job_that_reports_progress_is_not_called_stalled(project):
    store, did = project
    jid = _stuck_job(store, did, idle_s=2)
    at = open_page("select")
    assert not any("No progress for" in w.value for w in at.warning)
    assert not [b for b in at.button if b.key == f"abandon-job-{jid}"]
    assert [b for b in at.button if b.key == f"cancel-job-{jid}"]
