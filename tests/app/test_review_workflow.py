"""AppTest of the Review page's workflow: place kept in the URL, stale decisions, filters, bulk accept.

Each test drives the real router; a "reload" is a fresh ``AppTest`` (a new session) given
the query string the previous one left in the URL.
"""

from __future__ import annotations

import numpy as np
from app_helpers import APP, open_page
from streamlit.testing.v1 import AppTest

from core.store import Store, utcnow


def _second_dataset(store: Store) -> int:
    """A newer dataset with mislabel scores (it becomes the default, being the newest)."""
    from core.data import load_demo
    from core.pipeline import import_dataset

    demo = load_demo("digits-noisy")
    did = import_dataset(store, demo, seed=1)
    wrong = demo.labels != demo.true_labels
    store.add_mislabel_result(
        did, score=np.where(wrong, 0.9, 0.1), flagged=wrong, suggested_label=demo.true_labels,
        suggested_confidence=np.full(demo.n, 0.8), noise_rate=float(wrong.mean()), threshold=0.5,
    )
    return did


def _reload(query: dict, page: str = "review") -> AppTest:
    """A new browser session opened on ``query`` (what a reload or a bookmark does)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params = dict(query)
    at.run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _shown(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Example "))


def test_a_reload_lands_on_the_same_dataset_and_example(project):
    store, did = project
    newer = _second_dataset(store)
    at = open_page("review")
    assert at.session_state["dataset_id"] == newer  # the newest by default
    assert at.query_params["dataset"] == str(newer)
    at = _reload({"dataset": str(did)})  # a bookmark of the older dataset
    assert at.session_state["dataset_id"] == did
    assert at.selectbox(key="dataset_select").value == did
    at.button(key="next").click().run()
    at.button(key="next").click().run()
    here = at.session_state["review_current"]
    assert at.query_params == {"dataset": str(did), "example": str(here)}
    shown = _shown(at)
    again = _reload(at.query_params)  # F5
    assert again.session_state["dataset_id"] == did
    assert again.session_state["review_current"] == here
    assert _shown(again) == shown
    again.selectbox(key="dataset_select").set_value(newer).run()  # choosing another one wins over the URL
    assert again.session_state["dataset_id"] == newer and again.query_params["dataset"] == str(newer)


def test_a_reload_keeps_the_reviewers_name_and_their_undo(project):
    """The name was kept in the session only: after F5 decisions were saved as 'reviewer' and
    Undo (per reviewer) could no longer reach the user's own earlier decisions."""
    store, did = project
    at = open_page("review")
    at.text_input(key="reviewer").set_value("alice").run()
    assert at.query_params["reviewer"] == "alice"
    at.button(key="keep").click().run()
    again = _reload(at.query_params)  # F5
    assert again.text_input(key="reviewer").value == "alice"
    again.button(key="undo").click().run()
    log = store.decisions(did)
    assert [(d.action, d.reviewer) for d in log] == [("keep", "alice"), ("undo", "alice")]


def test_the_run_shown_on_select_is_in_the_url(project):
    store, did = project
    run = store.latest_run(did)
    newer = store.add_run(did, method="random", budget=0.2, seed=1, settings={}, selected=run.selected,
                          value=run.value, info={})
    at = _reload({"dataset": str(did), "run": str(run.id)}, page="select")
    assert at.selectbox(key="run_choice").value == run.id  # not the newest run
    at.switch_page("app_pages/review.py").run()
    at.switch_page("app_pages/select.py").run()
    assert at.selectbox(key="run_choice").value == run.id and at.query_params["run"] == str(run.id)
    at.selectbox(key="run_choice").set_value(newer).run()
    assert at.query_params["run"] == str(newer)


def test_undo_acts_on_the_dataset_on_screen_only(project):
    store, did = project
    newer = _second_dataset(store)
    mine = store.add_decision(did, 5, "keep", reviewer="reviewer")
    theirs = store.add_decision(newer, 7, "exclude", reviewer="reviewer")  # newer, elsewhere
    at = _reload({"dataset": str(did)})
    at.button(key="undo").click().run()
    assert store.active_decisions(did) == {}
    assert store.active_decisions(newer) == {7: theirs}
    assert [d.undoes for d in store.decisions(did) if d.action == "undo"] == [mine.id]


def test_a_decision_on_a_stale_view_is_refused_then_confirmed(project):
    store, did = project
    at = open_page("review")
    here = at.session_state["review_current"]
    theirs = store.add_decision(did, here, "exclude", reviewer="bob")  # another tab, meanwhile
    at.button(key="keep").click().run()
    assert store.active_decisions(did)[here] == theirs  # not overwritten
    warning = next(w.value for w in at.warning if "Not saved" in w.value)
    assert "bob" in warning and "exclude" in warning
    assert at.session_state["review_current"] == here  # still on it
    at.button(key="conflict_overwrite").click().run()
    now = store.active_decisions(did)[here]
    assert (now.action, now.reviewer) == ("keep", "reviewer")
    assert not any("Not saved" in w.value for w in at.warning)


def test_relabelling_to_the_label_it_has_records_nothing(project):
    store, did = project
    at = open_page("review")
    here = at.session_state["review_current"]
    label = int(store.effective_labels(did)[0][here])
    at.selectbox(key=f"relabel_choice_{here}").set_value(label)
    at.button(key="relabel").click().run()
    assert store.decisions(did) == []
    assert any("already has the label" in w.value for w in at.warning)


def test_a_rescore_says_how_the_flagged_set_changed(project):
    store, did = project
    job = store.create_job("rescore", dataset_id=did)
    result = {"result_id": 2, "run_id": None, "n_flagged": 78, "n_flagged_before": 105, "flags_added": 3,
              "flags_removed": 30, "dropped": 4, "added": 5}
    store.update_job(job, status="done", result=result, finished_at=utcnow())
    at = open_page("review")
    text = next(i.value for i in at.info if "re-score" in i.value)
    assert "105 → 78 flagged" in text and "3 newly flagged" in text and "30 no longer flagged" in text


def test_filters_narrow_the_queue(project):
    store, did = project
    at = open_page("review")
    mis = store.latest_mislabels(did)
    labels = store.effective_labels(did)[0]
    flagged = np.flatnonzero(mis["flagged"].to_numpy())
    cls = int(labels[flagged[0]])
    at.multiselect(key="queue_given").set_value([cls]).run()
    assert _shown(at).startswith(f"**Example 1 of {int((labels[flagged] == cls).sum())}**")
    assert labels[at.session_state["review_current"]] == cls
    at.multiselect(key="queue_given").set_value([]).run()
    at.button(key="keep").click().run()
    at.selectbox(key="queue_status").set_value("decided").run()
    assert _shown(at).startswith("**Example 1 of 1**")
    at.selectbox(key="queue_sort").set_value("example")
    at.selectbox(key="queue_status").set_value("all").run()
    at.toggle(key="review_grid").set_value(True).run()
    table = at.dataframe[0].value
    assert "example_index" not in table.columns and "given label" in table.columns
    assert table["id"].tolist() == [str(store.get_dataset(did)[0].ids[i]) for i in sorted(flagged)]


def test_bulk_accept_says_how_many_and_one_undo_reverts_it(project):
    store, did = project
    at = open_page("review")
    n_flagged = int(store.latest_mislabels(did)["flagged"].sum())
    at.button(key="keep").click().run()  # one decided: left alone by the bulk action
    at.slider(key="bulk_confidence").set_value(0.9).run()
    assert at.button(key="bulk_accept").label == "Accept 0 suggestions"  # the fixture's are 80 % sure
    at.slider(key="bulk_confidence").set_value(0.75).run()
    assert at.button(key="bulk_accept").label == f"Accept {n_flagged - 1} suggestions"
    assert store.decisions(did)[-1].action == "keep"  # counting changed nothing
    at.button(key="bulk_accept").click().run()
    accepted = [d for d in store.decisions(did) if d.action == "accept"]
    assert len(accepted) == n_flagged - 1 and len({d.batch for d in accepted}) == 1
    assert at.button(key="bulk_accept").label == "Accept 0 suggestions"
    at.button(key="undo").click().run()  # one undo reverts the whole batch
    assert [d.action for d in store.active_decisions(did).values()] == ["keep"]


def test_new_review_messages_show_hostile_names_as_text(hostile_project):
    from app_helpers import HOSTILE, assert_inert

    store, did = hostile_project
    at = open_page("review")
    here = at.session_state["review_current"]
    store.add_decision(did, here, "relabel", new_label=2, reviewer=HOSTILE[0])  # another tab
    at.button(key="keep").click().run()
    texts = assert_inert(at)  # the conflict names their reviewer and the class
    assert any("Not saved" in t and "attacker" in t for t in texts)
    at.button(key="conflict_dismiss").click().run()
    at.selectbox(key=f"relabel_choice_{here}").set_value(2)
    at.button(key="relabel").click().run()  # already has that label: a warning naming the id and class
    assert any("already has the label" in t and "attacker" in t for t in assert_inert(at))
    at.slider(key="bulk_confidence").set_value(0.5).run()
    plan = at.button(key="bulk_accept")
    last = int(store.latest_mislabels(did)["flagged"].to_numpy().nonzero()[0][0])  # lowest score
    store.add_decision(did, last, "keep", reviewer=HOSTILE[2])
    plan.click().run()  # stale: refused with a message naming that reviewer
    assert any("Nothing was accepted" in t and "bold" in t for t in assert_inert(at))
