"""A reload (a new session on the same URL) of the Select page shows the run's budget, method and settings.

They used to go back to the defaults (10 %, HOST-CP, seed 0, no settings) on F5 while the
dataset and run were kept in the URL. A "reload" here is a fresh ``AppTest`` given the
query string the previous session left in the URL.
"""

from __future__ import annotations

import json

from app_helpers import APP, wait_for_jobs
from streamlit.testing.v1 import AppTest


def _reload(query: dict) -> AppTest:
    """A new browser session opened on ``query`` at the Select page."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params = dict(query)
    at.run()
    at.switch_page("app_pages/select.py").run()
    assert not at.exception, at.exception
    return at


def _controls(at: AppTest) -> tuple:
    return (at.slider(key="budget_pct").value, at.selectbox(key="method").value,
            at.number_input(key="seed").value, at.text_area(key="method_config").value)


def test_a_reload_after_a_run_shows_its_budget_method_and_settings(project):
    store, did = project
    at = _reload({"dataset": str(did)})
    at.selectbox(key="method").set_value("knn_shapley")
    at.slider(key="budget_pct").set_value(20)
    at.number_input(key="seed").set_value(3)
    at.text_area(key="method_config").input('{"n_neighbors": 3}')
    at.button(key="run_selection").click().run()
    assert not at.exception, at.exception
    wait_for_jobs(store)
    job = store.list_jobs(did)[0]
    assert (job.kind, job.status) == ("selection", "done"), job.error
    at.run()  # the finished run is shown
    newest = store.list_runs(did)[0]
    assert (newest["method"], newest["budget"], newest["seed"]) == ("knn_shapley", 0.2, 3)
    assert at.selectbox(key="run_choice").value == newest["id"]
    assert at.query_params["run"] == str(newest["id"])  # in the URL now, not only after one more click

    again = _reload(at.query_params)  # F5
    assert again.selectbox(key="run_choice").value == newest["id"]
    assert _controls(again) == _controls(at)
    budget, method, seed, config = _controls(again)
    assert (budget, method, seed, json.loads(config)) == (20, "knn_shapley", 3, {"n_neighbors": 3})


def test_a_bookmark_of_an_older_run_shows_that_runs_settings(project):
    """Each run shown brings its own settings: a bookmark of it, or picking it in "Showing"."""
    store, did = project
    older = store.latest_run(did)  # random at 10 %, seed 0, no method settings
    newer = store.add_run(did, method="clean_random", budget=0.35, seed=7,
                          settings={"method": "clean_random", "config": {}},
                          selected=older.selected, value=older.value, info={"k": 1})
    at = _reload({"dataset": str(did), "run": str(older.id)})
    assert _controls(at) == (10, "random", 0, "")
    at.selectbox(key="run_choice").set_value(newer).run()
    assert _controls(at) == (35, "clean_random", 7, "")
    at.slider(key="budget_pct").set_value(50).run()  # a preview: the slider is the user's now
    assert _controls(at)[0] == 50
    at.switch_page("app_pages/data.py").run()
    at.switch_page("app_pages/select.py").run()
    assert at.selectbox(key="run_choice").value == newer  # and the pick (it used to fall back)
    assert _controls(at) == (50, "clean_random", 7, "")  # a page switch keeps the preview


def test_controls_drop_the_settings_an_old_run_had_that_hostcp_no_longer_has():
    from app.components.run_settings import run_controls

    old = {"budget": 0.2, "method": "hostcp", "seed": 1,
           "settings": {"config": {"start": "online", "learn_sample": 500, "epochs": 1}}}
    controls = run_controls(old)
    assert json.loads(controls["method_config"]) == {"scale": {"learn_sample": 500}, "epochs": 1}
