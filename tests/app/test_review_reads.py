"""A review decision re-reads only what it changed: the review log, not the scores, runs or labels.

Each decision used to rebuild the queue from the store twice (the queue and the progress
bar) and the neighbours once more: the newest mislabel scores (a row per example), the
newest run, the dataset file and the effective labels, three times per keypress. Now the
review fragment reads one stamp of the dataset per rerun and takes every piece that did
not change from a cache keyed by it. The caches must still see every write: a decision
from another tab, a re-score and a new run show at the next rerun.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import streamlit.testing.v1.app_test as app_test
from app_helpers import open_page
from test_review_fragment import _FragmentRunner

from core.store import Store

_COUNTED = ("latest_mislabels", "latest_run", "get_run", "list_runs", "effective_labels", "decisions",
            "get_dataset")


@pytest.fixture()
def reads(monkeypatch) -> collections.Counter:
    """Counts of the Store reads in ``_COUNTED`` made from now on (any thread)."""
    counts: collections.Counter = collections.Counter()
    for name in _COUNTED:
        original = getattr(Store, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Store, name, counted)
    return counts


def _progress(at) -> str:
    return next(p.proto.text for p in at.get("progress") if "reviewed" in p.proto.text)


def test_a_decision_reads_the_log_once_and_nothing_it_did_not_change(project, reads, monkeypatch):
    store, did = project
    at = open_page("review")
    fragments = list(at._fragment_storage._fragments)
    at.button(key="next").click().run()  # every cache warm, the next example's neighbours too
    monkeypatch.setattr(app_test, "LocalScriptRunner", _FragmentRunner)
    monkeypatch.setattr(_FragmentRunner, "queue", fragments)
    reads.clear()
    here = at.session_state["review_current"]
    at.button(key="keep").click().run()
    made = dict(reads)  # before this test reads the store itself
    assert not at.exception, at.exception
    assert store.active_decisions(did)[here].action == "keep"
    assert _progress(at).startswith("1 of ")  # the queue and the progress show the decision
    assert at.session_state["review_current"] != here
    for name in ("latest_mislabels", "latest_run", "get_run", "list_runs", "effective_labels"):
        assert made.get(name, 0) == 0, made
    assert made.get("decisions") == 1, made  # the new log, read once for queue, progress and labels
    assert made.get("get_dataset", 0) <= 1, made  # at most the next example's neighbours, made ahead


def test_the_cached_queue_sees_every_write(project):
    store, did = project
    at = open_page("review")
    n = int(_progress(at).split(" of ")[1].split()[0])
    here = at.session_state["review_current"]
    store.add_decision(did, here, "exclude", reviewer="another tab")
    at.button(key="next").click().run()
    assert _progress(at) == f"1 of {n} reviewed"
    mis = store.latest_mislabels(did)
    flagged = mis["flagged"].to_numpy().copy()
    flagged[np.flatnonzero(~flagged)[:5]] = True  # a re-score flags five more
    store.add_mislabel_result(
        did, score=mis["score"].to_numpy(), flagged=flagged,
        suggested_label=mis["suggested_label"].to_numpy(),
        suggested_confidence=mis["suggested_confidence"].to_numpy(), noise_rate=0.1, threshold=0.5,
    )
    at.run()
    assert _progress(at) == f"1 of {n + 5} reviewed"
    run = store.latest_run(did)
    store.add_run(did, method="random", budget=0.1, seed=1, settings={}, selected=np.ones_like(run.selected),
                  value=run.value, info={})
    at.toggle(key="review_grid").set_value(True).run()
    table = at.dataframe[0].value
    assert table["in the subset"].all()  # the newest run's subset
