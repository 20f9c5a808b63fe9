"""ETAs from the rate measured in the current stage: none until measured, none for a silent step."""

from __future__ import annotations

import pytest

import core.jobs as jobs
from core.jobs import JobReporter


class _Jobs:
    """Stands in for the store: records what the reporter writes."""

    def __init__(self) -> None:
        self.etas: list[float | None] = []

    def update_job(self, job_id: int, **fields) -> None:
        self.etas.append(fields["eta_s"])


@pytest.fixture()
def clock(monkeypatch) -> list[float]:
    now = [0.0]
    monkeypatch.setattr(jobs.time, "monotonic", lambda: now[0])
    return now


def _reporter() -> tuple[JobReporter, _Jobs]:
    store = _Jobs()
    return JobReporter(store, 1, min_interval=0.0), store  # type: ignore[arg-type]


def test_a_stage_that_reports_nothing_until_it_ends_gets_no_eta(clock):
    """The UMAP job: embedding is quick, then one silent 50 s fit; it said "about 1 s left"."""
    reporter, store = _reporter()
    for i in range(1, 11):  # embedding: 0 -> 0.3 in 1 s
        clock[0] = i * 0.1
        reporter.report("embedding", 0.03 * i)
    clock[0] = 1.0
    reporter.report("umap", 0.3, "laying out")
    clock[0] = 51.0
    reporter.report("umap", 1.0, "map ready")
    assert store.etas[-2:] == [None, None]


def test_a_steady_stage_gets_the_time_left_at_its_rate(clock):
    reporter, store = _reporter()
    clock[0] = 0.0
    reporter.report("embedding", 0.1)  # a fast first stage must not skew the estimate
    for step in range(1, 9):  # selection: 0.1 of the job per 10 s
        clock[0] = 10.0 * step
        reporter.report("selection", 0.1 + 0.1 * step)
    assert store.etas[:3] == [None, None, None]  # not measured yet (one report, then two)
    assert store.etas[-1] == pytest.approx(10.0 * 1, rel=1e-6)  # 0.1 of the job left at 10 s per 0.1
    assert store.etas[-2] == pytest.approx(20.0, rel=1e-6)
