"""AppTest of the Review page: the flagged queue, decisions written to the store at once, undo."""

from __future__ import annotations

from app_helpers import APP, metric, open_page, store_of
from streamlit.testing.v1 import AppTest


def _progress_text(at: AppTest) -> str:
    texts = [p.proto.text for p in at.get("progress")]
    return next(t for t in texts if "reviewed" in t)


def test_the_queue_starts_with_the_most_suspicious_example(project):
    store, did = project
    at = open_page("review")
    mis = store.latest_mislabels(did)
    n_flagged = int(mis["flagged"].sum())
    assert _progress_text(at) == f"0 of {n_flagged} reviewed"
    assert metric(at, "Agreement with the flags") == "-"
    top = int(mis[mis["flagged"]]["score"].idxmax())
    dataset, _ = store.get_dataset(did)
    assert any(str(dataset.ids[top]) in md.value for md in at.markdown)


def test_accept_is_saved_at_once_and_undo_reverts_it(project):
    store, did = project
    at = open_page("review")
    at.text_input(key="reviewer").input("alice").run()
    first = at.session_state["review_current"]
    at.button(key="accept").click().run()
    assert not at.exception, at.exception
    decisions = store.decisions(did)
    assert [(d.example_index, d.action, d.reviewer) for d in decisions] == [(first, "accept", "alice")]
    mis = store.latest_mislabels(did)
    assert decisions[0].new_label == int(mis.loc[first, "suggested_label"])
    assert _progress_text(at).startswith("1 of ")
    assert at.session_state["review_current"] != first  # moved on to the next one
    assert metric(at, "Agreement with the flags") == "100%"
    at.button(key="undo").click().run()
    assert store.active_decisions(did) == {}
    assert _progress_text(at).startswith("0 of ")


def test_relabel_keep_and_exclude(project):
    store, did = project
    at = open_page("review")
    first = at.session_state["review_current"]
    at.selectbox(key=f"relabel_choice_{first}").set_value(3)
    at.button(key="relabel").click().run()
    second = at.session_state["review_current"]
    at.button(key="keep").click().run()
    third = at.session_state["review_current"]
    at.button(key="exclude").click().run()
    active = store.active_decisions(did)
    assert {i: (d.action, d.new_label) for i, d in active.items()} == {
        first: ("relabel", 3), second: ("keep", active[second].old_label),
        third: ("exclude", active[third].old_label),
    }
    labels, excluded = store.effective_labels(did)
    assert labels[first] == 3 and excluded[third]
    again = AppTest.from_file(APP, default_timeout=60).run()  # a refresh keeps them
    again.switch_page("app_pages/review.py").run()
    assert _progress_text(again).startswith("3 of ")


def test_grid_view_opens_an_example(project):
    at = open_page("review")
    at.toggle(key="review_grid").set_value(True).run()
    assert not at.exception, at.exception
    assert len(at.dataframe) == 1  # the queue as a table under the thumbnails
    target = at.selectbox(key="grid_open").options[2]
    at.selectbox(key="grid_open").select(target).run()
    at.button(key="grid_open_btn").click().run()
    assert not at.exception, at.exception
    assert at.toggle(key="review_grid").value is False
    assert any(target in md.value for md in at.markdown)


def test_clicking_a_grid_thumbnail_opens_that_example(project):
    store, did = project
    at = open_page("review")
    at.toggle(key="review_grid").set_value(True).run()
    third = int(review_queue_order(store, did)[2])
    at.button(key=f"thumb_open_{third}").click().run()
    assert at.session_state["review_current"] == third
    assert at.toggle(key="review_grid").value is False
    dataset, _ = store.get_dataset(did)
    assert any(str(dataset.ids[third]) in m.value for m in at.markdown if m.value.startswith("**Example 3 "))


def review_queue_order(store, did):
    from core.review import review_queue

    return review_queue(store, did)["example_index"].to_numpy()


def test_detect_is_offered_when_there_are_no_scores(home):
    from app_helpers import store_of

    from core.data import load_demo
    from core.pipeline import import_dataset

    import_dataset(store_of(home), load_demo("mixture"), seed=0)
    at = open_page("review")
    assert at.button(key="detect").label == "Detect mislabelled examples"


def test_a_tables_own_column_names_are_shown_on_review(home):
    """The example and its neighbours show the CSV's header (issue 12, item 3), never x0, x1...;
    a feature named like a neighbour-table column is prefixed, not duplicated."""
    import numpy as np
    from conftest import _fill

    from core.data import Dataset

    rng = np.random.default_rng(0)
    y_true = np.arange(120) % 2
    labels = np.where(np.arange(120) % 10 == 0, 1 - y_true, y_true)
    dataset = Dataset(
        name="cancer", ids=np.array([f"r{i}" for i in range(120)], dtype=object), labels=labels,
        class_names=("benign", "malignant"), true_labels=y_true,
        features=(rng.normal(size=(120, 3)) + y_true[:, None] * 2).astype(np.float32),
        feature_names=("mean radius", "worst area", "distance"),
    )
    _fill(store_of(home), dataset)
    at = open_page("review")
    columns = [c for d in at.dataframe for c in d.value.columns]
    assert "mean radius" in columns and "worst area" in columns
    assert "feature_distance" in columns  # the neighbours table has its own "distance"
    assert not any(str(c).startswith("x0") for c in columns)
