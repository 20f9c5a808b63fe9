"""A job's live progress (stage, bar, ETA, Cancel) polled once a second, and its last outcome.

A job that has reported nothing for ``core.jobs.STALL_AFTER_S`` is shown as stalled, with
Abandon: the job is marked failed and the jobs queued behind it start.
"""

from __future__ import annotations

import streamlit as st

from app import services
from app.markup import md
from core.jobs import STALL_AFTER_S, seconds_without_progress

__all__ = ["job_panel"]


def _eta_text(eta_s: float | None) -> str:
    if eta_s is None:
        return "no estimate yet for this step"
    if eta_s < 60:
        return f"about {eta_s:.0f} s left"
    return f"about {eta_s / 60:.1f} min left"


@st.fragment(run_every=1.0)
def _poll(job_id: int, title: str) -> None:
    """Redrawn every second on its own; reruns the whole page when the job ends."""
    job = services.get_store().get_job(job_id)
    if job.finished:
        st.rerun(scope="app")
    with st.container(border=True):
        st.markdown(f"**{title}** · job {job.id} · {job.status}")
        stage = job.stage or "waiting to start"
        detail = f"{stage}: {job.message}" if job.message else stage
        st.progress(min(max(job.fraction, 0.0), 1.0), text=f"{detail} ({job.fraction:.0%})")
        left, right = st.columns([3, 1])
        left.caption("Cancelling..." if job.cancel_requested else _eta_text(job.eta_s))
        if right.button(
            "Cancel",
            key=f"cancel-job-{job.id}",
            disabled=job.cancel_requested,
            help="Stop the job at its next check; results already saved are kept.",
        ):
            services.get_runner().cancel(job.id)
            st.rerun(scope="fragment")
        idle = seconds_without_progress(job)
        if idle > STALL_AFTER_S:
            st.warning(
                f"No progress for {idle / 60:.0f} min: the job may be stuck. Abandon it to run "
                "other jobs; it is marked failed and what it already saved is kept."
            )
            if st.button("Abandon", key=f"abandon-job-{job.id}", type="primary"):
                services.get_runner().abandon(job.id)
                st.rerun(scope="app")


def job_panel(dataset_id: int, kind: str, *, title: str) -> bool:
    """Draw the running job of ``kind`` (polled), or the last one's failure; True while one runs."""
    job = services.active_job(dataset_id, kind)
    if job is not None:
        _poll(job.id, title)
        return True
    last = services.latest_job(dataset_id, kind)
    if last is not None and last.status == "failed":
        st.error(f"{title} failed: {md(last.error)}")  # may name files, columns, classes
    elif last is not None and last.status == "cancelled":
        st.info(f"{title} was cancelled; nothing of it was kept except finished results.")
    return False
