"""AppTest of the Data page: first launch, loading a demo, the project surviving a new session."""

from __future__ import annotations

from app_helpers import APP, metric, store_of
from streamlit.testing.v1 import AppTest


def test_first_launch_imports_the_default_demo(app, home):
    assert metric(app, "Examples") == "1,797"
    assert metric(app, "Classes") == "10"
    assert metric(app, "Known noise") == "10.0%"
    assert metric(app, "Shape") == "8×8×1"
    sizes = [int(metric(app, k).replace(",", "")) for k in ("Train", "Validation", "Test")]
    assert sum(sizes) == 1797 and min(sizes) > 0
    assert [d.name for d in store_of(home).list_datasets()] == ["digits-noisy"]
    assert not app.error


def test_loading_a_demo_makes_it_current(app, home):
    app.selectbox(key="demo_name").set_value("mixture")
    app.button(key="load_demo").click().run()
    assert not app.exception, app.exception
    assert any("mixture" in s.value for s in app.subheader)
    assert metric(app, "Examples") == "1,500"
    assert len(app.dataframe) >= 1  # tabular: the first rows
    newest = store_of(home).list_datasets()[0]
    assert app.selectbox(key="dataset_select").value == newest.id


def test_a_new_session_shows_the_same_project(app, home):
    app.selectbox(key="demo_name").set_value("digits")
    app.button(key="load_demo").click().run()
    again = AppTest.from_file(APP, default_timeout=60).run()  # a refresh or a second tab
    assert not again.exception
    assert any(s.value.endswith(" digits") for s in again.subheader)
    assert len(store_of(home).list_datasets()) == 2


def test_switching_the_current_dataset(app, home):
    app.selectbox(key="demo_name").set_value("mixture")
    app.button(key="load_demo").click().run()
    first = store_of(home).list_datasets()[-1].id
    app.selectbox(key="dataset_select").set_value(first).run()
    assert metric(app, "Examples") == "1,797"
