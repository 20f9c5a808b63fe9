"""AppTest of the Select page with ``HOSTCP_RAY_ADDRESS``: where jobs run, a job on Ray, a cluster gone."""

from __future__ import annotations

from app_helpers import open_page, wait_for_jobs


def _location(at) -> str:
    lines = [c.value for c in at.caption if "Jobs " in c.value]
    assert len(lines) == 1, [c.value for c in at.caption]
    return lines[0]


def test_without_a_cluster_jobs_run_in_this_process(project, monkeypatch):
    monkeypatch.delenv("HOSTCP_RAY_ADDRESS", raising=False)
    assert _location(open_page("select")).startswith("Jobs run in this process")


def test_a_job_runs_on_the_configured_cluster(project, monkeypatch, ray_cluster, ray_executor):
    store, did = project
    monkeypatch.setenv("HOSTCP_RAY_ADDRESS", ray_cluster.address)
    at = open_page("select")
    assert _location(at) == f"Jobs run on the Ray cluster at {ray_cluster.address}, 2 CPUs."
    at.selectbox(key="method").set_value("random")
    at.button(key="run_selection").click().run()
    wait_for_jobs(store)
    job = store.list_jobs(did)[0]
    assert job.status == "done", job.error
    assert store.latest_run(did).info["ran_on"] == f"Ray cluster at {ray_cluster.address}, 2 CPUs"


def test_a_cluster_that_is_not_there_fails_the_job_and_the_app_stays_usable(project, monkeypatch):
    store, did = project
    monkeypatch.setenv("HOSTCP_RAY_ADDRESS", "127.0.0.1:9")
    at = open_page("select")
    assert "nothing answers there" in _location(at)
    at.selectbox(key="method").set_value("random")
    at.button(key="run_selection").click().run()
    wait_for_jobs(store)
    job = store.list_jobs(did)[0]
    assert job.status == "failed" and job.error.startswith("No Ray cluster answers at 127.0.0.1:9"), job.error
    at.run()
    assert not at.exception
    monkeypatch.delenv("HOSTCP_RAY_ADDRESS")  # the cluster setting removed: jobs run here again
    at.button(key="run_selection").click().run()
    wait_for_jobs(store)
    assert store.list_jobs(did)[0].status == "done"
