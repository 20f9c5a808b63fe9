"""AppTest of the Select page: budget previews from stored scores, a real (fast) run as a job."""

from __future__ import annotations

import numpy as np
from app_helpers import metric, open_page, wait_for_jobs


def test_moving_the_slider_previews_other_budgets(project):
    store, did = project
    at = open_page("select")
    run = store.latest_run(did)
    assert metric(at, "Chosen") == str(int(run.selected.sum()))
    assert not at.info or not any("Preview" in i.value for i in at.info)
    at.slider(key="budget_pct").set_value(30).run()
    n_cand = int((~np.isnan(run.value)).sum())
    assert metric(at, "Chosen") == f"{round(0.3 * n_cand):,}"
    assert metric(at, "Discarded") == f"{n_cand - round(0.3 * n_cand):,}"
    assert any("Preview at **30%**" in i.value for i in at.info)
    assert at.button(key="rerun_at_budget").label.endswith("at exactly 30%")
    assert len(store.list_runs(did)) == 1  # the engine was not rerun
    assert len(at.get("plotly_chart")) >= 2  # map, value curves, per-class counts


def test_the_budget_survives_a_page_switch(project):
    at = open_page("select")
    at.slider(key="budget_pct").set_value(25).run()
    at.switch_page("app_pages/data.py").run()
    at.switch_page("app_pages/select.py").run()
    assert at.slider(key="budget_pct").value == 25


def test_run_starts_a_background_job_and_shows_its_result(project):
    store, did = project
    at = open_page("select")
    at.selectbox(key="method").set_value("random")
    at.slider(key="budget_pct").set_value(20)
    at.button(key="run_selection").click().run()
    assert not at.exception, at.exception
    wait_for_jobs(store)
    jobs = store.list_jobs(did)
    assert [(j.kind, j.status) for j in jobs] == [("selection", "done")], jobs[0].error
    at.run()
    runs = store.list_runs(did)
    assert len(runs) == 2 and runs[0]["method"] == "random" and runs[0]["budget"] == 0.2
    assert at.selectbox(key="run_choice").value == runs[0]["id"]
    assert metric(at, "Chosen") == str(runs[0]["info"]["k"])


def test_bad_method_settings_show_an_error(project):
    at = open_page("select")
    at.text_area(key="method_config").input("{not json")
    at.button(key="run_selection").click().run()
    assert not at.exception
    assert any("JSON" in e.value for e in at.error)


def test_value_curves_run_as_a_job_and_replace_the_chart(project):
    store, did = project
    at = open_page("select")
    at.multiselect[0].set_value(["random", "clean_random"])
    at.text_input[0].set_value("0.1,0.3")
    at.button[[b.label for b in at.button].index("Compute value curves")].click().run()
    assert not at.exception, at.exception
    wait_for_jobs(store, timeout=120)
    job = store.list_jobs(did)[0]
    assert (job.kind, job.status) == ("curve", "done"), job.error
    table = store.get_table(did, "curve")
    assert set(table["method"]) == {"random", "clean_random", "full"}
    assert sorted(table.loc[table.method == "random", "budget"]) == [0.1, 0.3]
    at.run()
    assert not at.exception, at.exception
    assert any(c.key == "value_curves" for c in at.get("plotly_chart") if hasattr(c, "key"))


def test_bad_curve_budgets_show_an_error_and_start_nothing(project):
    store, did = project
    at = open_page("select")
    at.text_input[0].set_value("ten percent")
    at.button[[b.label for b in at.button].index("Compute value curves")].click().run()
    assert not at.exception
    assert any("Budgets are fractions" in e.value for e in at.error)
    assert store.list_jobs(did) == []


def test_rerun_at_exactly_the_previewed_budget(project):
    store, did = project
    at = open_page("select")
    at.selectbox(key="method").set_value("random")
    at.slider(key="budget_pct").set_value(30).run()
    at.button(key="rerun_at_budget").click().run()
    assert not at.exception, at.exception
    wait_for_jobs(store)
    runs = store.list_runs(did)
    assert len(runs) == 2 and runs[0]["budget"] == 0.3


def test_cancel_stops_a_running_job(project):
    """The job panel's Cancel button reaches the worker, which stops at its next check."""
    import threading

    from app import services

    store, did = project
    started, release = threading.Event(), threading.Event()

    def slow(reporter):
        started.set()
        while not release.wait(0.05):
            reporter.check_cancelled()

    at = open_page("select")
    runner = services.get_runner()
    job_id = runner.submit("selection", slow, dataset_id=did)
    try:
        assert started.wait(10)
        at.run()
        cancel = [b for b in at.button if b.label == "Cancel"]
        assert cancel, [b.label for b in at.button]
        cancel[0].click().run()
        assert runner.wait(job_id, timeout=10).status == "cancelled"
    finally:
        release.set()


def test_a_run_that_found_a_shift_says_whom_the_subset_represents(project):
    store, did = project
    run = store.latest_run(did)
    assert not any("Target:" in i.value for i in open_page("select").info)  # the fixture's run: no shift
    note = "shift detected between pool and validation set (neighbour AUROC 0.800): the set represents ..."
    store.add_run(did, method=run.method, budget=run.budget, seed=run.seed, settings=run.settings,
                  selected=run.selected, value=run.value,
                  info={**run.info, "shift_detected": True, "target": note})
    at = open_page("select")
    assert any(i.value == f"**Target:** {note}." for i in at.info)


def test_a_hostcp_run_shows_which_read_out_the_validation_set_kept(project):
    store, did = project
    run = store.latest_run(did)
    info = {"k": int(run.selected.sum()), "readout": "k-center",
            "readout_val_accuracy": {"swap passes": 0.912, "greedy start": 0.905, "k-center": 0.931}}
    store.add_run(did, method="hostcp", budget=run.budget, seed=0, settings={"method": "hostcp"},
                  selected=run.selected, value=run.value, info=info)
    at = open_page("select")
    assert not at.exception, at.exception
    line = [c.value for c in at.caption if c.value.startswith("Read-out: k-center")]
    assert line and "swap passes 91.2%" in line[0] and "k-center 93.1%" in line[0]
