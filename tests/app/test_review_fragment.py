"""A decision on the Review page reruns only the review fragment, not the page around it.

``AppTest`` always reruns the whole script; the browser instead sends a click inside an
``st.fragment`` as a rerun of that fragment alone. This test sends the click the way the
browser does (a rerun request naming the fragment), then counts what ran: the page's job
panels and the router sit outside the fragment and must not run; the decision must be
saved and the next example drawn. It prints both times (measured, not asserted).
"""

from __future__ import annotations

import time
from urllib import parse

import streamlit.testing.v1.app_test as app_test
from app_helpers import open_page
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData, ScriptRequests
from streamlit.testing.v1.element_tree import parse_tree_from_messages
from streamlit.testing.v1.local_script_runner import LocalScriptRunner, require_widgets_deltas


class _FragmentRunner(LocalScriptRunner):
    """A script runner whose next run reruns only the fragments in ``queue`` (as the browser asks)."""

    queue: list[str] = []

    def run(self, widget_state=None, query_params=None, timeout=3, page_hash="", context_info=None):
        if not self.queue:
            return super().run(widget_state, query_params, timeout, page_hash, context_info)
        self._requests = ScriptRequests()  # drop the whole-app run the constructor queued
        self.request_rerun(RerunData(
            widget_states=widget_state, query_string=parse.urlencode(query_params or {}, doseq=True),
            page_script_hash=page_hash, context_info=context_info, fragment_id_queue=list(self.queue),
        ))
        try:
            if not self._script_thread:
                self.start()
            require_widgets_deltas(self, timeout)
        finally:
            self.join()
        return parse_tree_from_messages(self.forward_msgs())


def test_a_decision_reruns_only_the_review_fragment(project, monkeypatch):
    store, did = project
    at = open_page("review")
    import app.components.jobs as jobs  # importable once the router put the repository on sys.path

    first = at.session_state["review_current"]
    fragments = list(at._fragment_storage._fragments)
    assert len(fragments) == 1, fragments  # no job is running: the review is the only fragment

    panels: list[str] = []
    original = jobs.job_panel
    monkeypatch.setattr(jobs, "job_panel", lambda *a, **k: panels.append(k["title"]) or original(*a, **k))
    t0 = time.perf_counter()
    at.button(key="next").click().run()  # a whole-page rerun, for comparison
    full_s = time.perf_counter() - t0
    assert len(panels) == 2  # both job panels ran

    monkeypatch.setattr(app_test, "LocalScriptRunner", _FragmentRunner)
    monkeypatch.setattr(_FragmentRunner, "queue", fragments)
    panels.clear()
    here = at.session_state["review_current"]
    t0 = time.perf_counter()
    at.button(key="keep").click().run()
    fragment_s = time.perf_counter() - t0
    assert not at.exception, at.exception
    assert panels == []  # nothing outside the fragment ran
    assert store.active_decisions(did)[here].action == "keep"  # the decision was saved
    assert at.session_state["review_current"] not in (here, first)  # and the next example drawn
    assert any(m.value.startswith("**Example ") for m in at.markdown)
    print(f"review rerun: whole page {full_s * 1000:.0f} ms, fragment only {fragment_s * 1000:.0f} ms")
