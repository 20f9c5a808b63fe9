"""Review page: go through the examples flagged as likely mislabelled and decide about each.

The queue, its filters and the example card run as one ``st.fragment``: a decision,
a filter or Next reruns only that fragment, not the page (the sidebar, the job
panels and the re-score controls stay as they are). Each rerun reads one stamp of the
dataset (:func:`app.services.review_reads`) and takes what did not change from caches:
after a decision only the review log is read again. The example on screen is in the
URL (``?example=444``) beside the dataset, so a reload or Back lands on it.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import services
from app.components import url_state
from app.components.jobs import job_panel
from app.components.map_pick import MAP_SELECTION
from app.components.queue_tools import QUEUE_COLUMNS_SHOWN, bulk_accept, queue_filters
from app.components.review_card import decision_card, neighbours_view, next_after, undo_last
from app.components.thumbs import thumbnail_grid
from core import review

st.title("Review")
st.caption(
    "Examples flagged as likely mislabelled, most suspicious first. Every decision is saved "
    "at once and can be undone. Keys: A accept, K keep, X exclude, L relabel, U undo, "
    "← → previous / next."
)

store = services.get_store()
did = services.require_dataset()

named = url_state.adopt_text("reviewer")  # a reload keeps who is reviewing (their Undo, their name)
if named is not None:
    st.session_state["_keep_reviewer"] = named  # services.remembered's shadow entry
    st.session_state.pop("reviewer", None)
reviewer_value, save_reviewer = services.remembered("reviewer", "reviewer")
top = st.columns([2, 1], vertical_alignment="bottom")
reviewer = top[0].text_input(
    "Reviewer name",
    key="reviewer",
    value=reviewer_value,
    on_change=save_reviewer,
    help="Saved with every decision in the provenance manifest.",
)
reviewer = reviewer.strip() or "reviewer"
url_state.publish("reviewer", None if reviewer == "reviewer" else reviewer)

detect_running = job_panel(did, "detect", title="Mislabel detection")
rescore_running = job_panel(did, "rescore", title="Re-scoring")
if store.latest_mislabels(did) is None:
    st.info(
        "This dataset has not been checked for mislabelled examples yet. Running a selection "
        "on the Select page does it, or start it here."
    )
    if st.button("Detect mislabelled examples", type="primary", disabled=detect_running, key="detect"):
        from core.pipeline import detect

        services.submit(
            "detect",
            services.on_cluster(lambda reporter, ex: {"result_id": detect(store, did, reporter=reporter,
                                                                           executor=ex)}),
            dataset_id=did,
        )
        st.rerun()
    st.stop()

if top[1].button(
    "Re-score",
    disabled=rescore_running,
    key="rescore",
    help="Recompute mislabel scores with your decisions and refresh the subset (no HOST-CP rerun).",
):
    services.submit("rescore", lambda reporter: review.rescore(store, did, reporter=reporter), dataset_id=did)
    st.rerun()

last = services.latest_job(did, "rescore")
if last is not None and last.status == "done" and last.result and "flags_added" in last.result:
    res = last.result
    st.info(
        f"Last re-score: {res['n_flagged_before']} → {res['n_flagged']} flagged "
        f"({res['flags_added']} newly flagged, {res['flags_removed']} no longer flagged); "
        f"subset: {res['dropped']} dropped, {res['added']} added."
    )


def _scope(dataset_id: int) -> list[int] | None:
    """The examples selected on the map for this dataset, or ``None`` for the whole queue."""
    sel = st.session_state.get(MAP_SELECTION)
    return list(sel["examples"]) if sel and sel.get("dataset") == dataset_id else None


def _show_flash() -> None:
    kind, text = st.session_state.pop("_review_flash", (None, None))
    if kind == "success":
        st.toast(text)
    elif kind == "warning":
        st.warning(text)
    elif kind == "info":
        st.info(text)


@st.fragment
def review_fragment(dataset_id: int, reviewer: str) -> None:
    """Progress, filters, bulk accept, undo and the example card: rerun alone on each decision."""
    with services.engine_errors("Loading the review queue"):
        reads = services.review_reads(dataset_id)  # one small read; a decision re-reads the log only
        dataset = reads.dataset
        scope = _scope(dataset_id)
        whole = reads.queue()
        queue = whole if scope is None else reads.queue(examples=scope)
        progress = review.queue_progress(whole)
        bar = st.columns([3, 1, 1], vertical_alignment="bottom")
        n_flagged, n_reviewed = progress.n_flagged, progress.n_reviewed
        bar[0].progress(n_reviewed / n_flagged if n_flagged else 1.0,
                        text=f"{n_reviewed} of {n_flagged} reviewed")
        bar[1].metric(
            "Agreement with the flags",
            "-" if progress.precision is None else f"{progress.precision:.0%}",
            help="Share of your reviewed flags you confirmed as real label errors (relabel, accept or "
                 "exclude); a kept label disagrees with its flag.",
        )
        bar[2].button("Undo last", key="undo", shortcut="U", on_click=undo_last, args=(dataset_id, reviewer),
                      help="Cancel your newest decision (or bulk action) on this dataset; other reviewers' "
                           "decisions are never undone.")
        _show_flash()
        if scope is not None:
            s = st.columns([3, 1], vertical_alignment="center")
            s[0].info(f"Reviewing the **{len(queue)}** examples selected on the map (flagged or not).")
            s[1].button("Back to the whole queue", key="scope_clear", on_click=st.session_state.pop,
                        args=(MAP_SELECTION, None))
        if queue.empty:
            st.success("Nothing is flagged on this dataset.")
            return
        view = review.filter_queue(queue, **queue_filters(dataset.class_names))
        bulk_accept(dataset_id, view, reviewer)
        if view.empty:
            st.info("No example of the queue matches these filters.")
            return
        order = view["example_index"].to_numpy()
        if st.session_state.get("_review_dataset") != dataset_id:  # another dataset: start afresh
            st.session_state.pop("review_current", None)
            st.session_state["_review_dataset"] = dataset_id
        from_url = url_state.adopt("example", set(queue["example_index"].tolist()))
        if from_url is not None:
            st.session_state["review_current"] = from_url
        current = st.session_state.get("review_current")
        if current not in order:  # start at the first example not reviewed yet
            pending = view.loc[~view["reviewed"], "example_index"]
            current = int(pending.iloc[0] if len(pending) else order[0])
            st.session_state["review_current"] = current
        url_state.publish("example", current)
        pos = int(np.flatnonzero(order == current)[0])
        if st.toggle("Grid view", key="review_grid"):
            _grid(dataset, view, order, pos)
            return
        decision_card(dataset_id, dataset, view, pos, reviewer)
        neighbours_view(reads, int(current))
        pending = view.loc[~view["reviewed"], "example_index"].tolist()
        reads.neighbours(next_after(int(current), order.tolist(), pending))  # ready for the next decision


def _open(example_index: int | None) -> None:
    if example_index is not None:
        st.session_state["review_current"] = int(example_index)
    st.session_state["review_grid"] = False


def _grid(dataset, view, order: np.ndarray, pos: int) -> None:
    """The queue shown as thumbnails and a table; open one to decide."""
    st.markdown("**Flagged examples** (given → suggested); open one to decide.")
    if dataset.images is not None:
        per_page = 40
        thumbnail_grid(
            [dataset.images[i] for i in order[:per_page]],
            [f"{r.label_name} → {r.suggested_name}" + (" ✓" if bool(r.reviewed) else "")
             for r in view.iloc[:per_page].itertuples()],
            columns=10,
            side=56,
            on_open=_open,
            keys=[int(i) for i in order[:per_page]],
        )
    st.selectbox("Open", order, format_func=lambda i: str(dataset.ids[i]), index=pos, key="grid_open")
    st.button("Open this example", key="grid_open_btn",
              on_click=lambda: _open(st.session_state.get("grid_open")))
    table = view[list(QUEUE_COLUMNS_SHOWN)].rename(columns=QUEUE_COLUMNS_SHOWN)
    st.dataframe(table, hide_index=True, height=300)


review_fragment(did, reviewer)
