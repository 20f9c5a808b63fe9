"""Review page: go through the examples flagged as likely mislabelled and decide about each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import services
from app.components.jobs import job_panel
from app.components.thumbs import display_image, example_view, thumbnail_grid
from app.markup import code, md
from core import review

st.title("Review")
st.caption(
    "Examples flagged as likely mislabelled, most suspicious first. Every decision is saved "
    "at once and can be undone. Keys: A accept, K keep, X exclude, L relabel, U undo, "
    "← → previous / next."
)

store = services.get_store()
did = services.require_dataset()

reviewer_value, save_reviewer = services.remembered("reviewer", "reviewer")
top = st.columns([2, 1, 1, 1], vertical_alignment="bottom")
reviewer = top[0].text_input(
    "Reviewer name",
    key="reviewer",
    value=reviewer_value,
    on_change=save_reviewer,
    help="Saved with every decision in the provenance manifest.",
)
reviewer = reviewer.strip() or "reviewer"

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
            "detect", lambda reporter: {"result_id": detect(store, did, reporter=reporter)}, dataset_id=did
        )
        st.rerun()
    st.stop()

with services.engine_errors("Loading the review queue"):
    queue = review.review_queue(store, did)
    progress = review.review_progress(store, did)
    dataset, _ = services.get_dataset(did)

    if top[1].button(
        "Re-score",
        disabled=rescore_running,
        key="rescore",
        help="Recompute mislabel scores with your decisions and refresh the subset (no HOST-CP rerun).",
    ):
        services.submit(
            "rescore", lambda reporter: review.rescore(store, did, reporter=reporter), dataset_id=did
        )
        st.rerun()
    if top[2].button(
        "Undo last", key="undo", shortcut="U",
        help="Cancel your newest decision on this dataset; other reviewers' decisions are never undone.",
    ):
        undone = review.undo_last(store, did, reviewer=reviewer)
        st.session_state["_review_flash"] = (
            f"Undid your last decision (example {undone.example_index})." if undone is not None
            else "You have no decision to undo on this dataset."
        )
        st.rerun()
    if st.session_state.pop("_close_grid", False):
        st.session_state["review_grid"] = False
    grid_mode = top[3].toggle("Grid view", key="review_grid")

    flash = st.session_state.pop("_review_flash", None)
    if flash:
        st.toast(flash)

    n_flagged, n_reviewed = progress.n_flagged, progress.n_reviewed
    p = st.columns([3, 1])
    p[0].progress(n_reviewed / n_flagged if n_flagged else 1.0, text=f"{n_reviewed} of {n_flagged} reviewed")
    p[1].metric(
        "Reviewer precision",
        "-" if progress.precision is None else f"{progress.precision:.0%}",
        help="Share of reviewed flags confirmed as real label errors (relabel, accept or exclude).",
    )

    if queue.empty:
        st.success("Nothing is flagged on this dataset.")
        st.stop()

    order = queue["example_index"].to_numpy()
    names = list(dataset.class_names)

    def _go_to(example_index: int) -> None:
        st.session_state["review_current"] = int(example_index)

    current = st.session_state.get("review_current")
    if current not in order:  # start at the first example not reviewed yet
        pending = queue.loc[~queue["reviewed"], "example_index"]
        current = int(pending.iloc[0] if len(pending) else order[0])
        st.session_state["review_current"] = current
    pos = int(np.flatnonzero(order == current)[0])
    row = queue.iloc[pos]

    def _next_after(example_index: int) -> int:
        """The next example still to review after this one (wrapping), else the following one."""
        fresh = review.review_queue(store, did)
        idx = fresh["example_index"].to_numpy()
        here = int(np.flatnonzero(idx == example_index)[0]) if example_index in idx else -1
        rest = np.concatenate([np.arange(here + 1, len(idx)), np.arange(0, here + 1)])
        for i in rest:
            if not fresh["reviewed"].iloc[i]:
                return int(idx[i])
        return int(idx[min(here + 1, len(idx) - 1)])

    def _decide(action: str, new_label: int | None = None) -> None:
        decision = review.decide(store, did, current, action, new_label=new_label, reviewer=reviewer)
        verb = {
            "relabel": f"relabelled as {md(names[decision.new_label])}",
            "accept": f"relabelled as {md(names[decision.new_label])} (suggestion)",
            "keep": "kept with its label",
            "exclude": "excluded",
        }[action]
        st.session_state["_review_flash"] = f"{md(row['id'])}: {verb}."
        st.session_state["review_current"] = _next_after(current)
        st.rerun()

    if grid_mode:
        st.markdown("**Flagged examples** (given → suggested); open one to decide.")
        if dataset.images is not None:
            per_page = 40
            thumbnail_grid(
                [dataset.images[i] for i in order[:per_page]],
                [
                    f"{r.label_name} → {r.suggested_name}" + (" ✓" if bool(r.reviewed) else "")
                    for r in queue.iloc[:per_page].itertuples()
                ],
                columns=10,
                side=56,
            )
        opened = st.selectbox(
            "Open", order, format_func=lambda i: str(dataset.ids[i]), index=pos, key="grid_open"
        )
        if st.button("Open this example", key="grid_open_btn"):
            _go_to(opened)
            st.session_state["_close_grid"] = True
            st.rerun()
        st.dataframe(queue, hide_index=True, height=300)
        st.stop()

    st.markdown(
        f"**Example {pos + 1} of {len(order)}** · {code(row['id'])}"
        + (" · in the chosen subset" if row["in_subset"] else "")
    )
    left, right = st.columns([1, 2])
    with left:
        example_view(dataset, current, side=220)
    with right:
        k = st.columns(3)
        k[0].metric("Given label", md(row["label_name"]))
        k[1].metric(f"Suggested ({row['suggested_confidence']:.0%} confident)", md(row["suggested_name"]))
        k[2].metric("Mislabel score", f"{row['score']:.2f}")
        if isinstance(row["decision"], str) and row["decision"]:
            st.info(f"Decision in force: **{md(row['decision'])}** (a new decision replaces it).")
        b = st.columns(3)
        suggested = int(row["suggested_label"])
        if b[0].button(
            f"Accept suggestion: {md(row['suggested_name'])}",
            type="primary",
            key="accept",
            shortcut="A",
            use_container_width=True,
            disabled=suggested == int(row["label"]),
        ):
            _decide("accept")
        if b[1].button("Keep label", key="keep", shortcut="K", use_container_width=True):
            _decide("keep")
        if b[2].button(
            "Exclude",
            key="exclude",
            shortcut="X",
            use_container_width=True,
            help="Leave this example out of selection and of the kept export.",
        ):
            _decide("exclude")
        r = st.columns([2, 1], vertical_alignment="bottom")
        new_label = r[0].selectbox(
            "Relabel as",
            range(len(names)),
            format_func=lambda i: names[i],
            index=suggested,
            key=f"relabel_choice_{current}",
        )
        if r[1].button("Relabel", key="relabel", shortcut="L", use_container_width=True):
            _decide("relabel", int(new_label))
        n = st.columns(2)
        if n[0].button(
            "← Previous", key="prev", shortcut="Left", use_container_width=True, disabled=pos == 0
        ):
            _go_to(order[pos - 1])
            st.rerun()
        if n[1].button(
            "Next →", key="next", shortcut="Right", use_container_width=True, disabled=pos == len(order) - 1
        ):
            _go_to(order[pos + 1])
            st.rerun()

    st.markdown("**Nearest neighbours** (in the embedding)")
    nb = review.neighbours(store, did, current, k=6)
    if dataset.images is not None:
        cols = st.columns(len(nb) or 1)
        for col, item in zip(cols, nb.itertuples(), strict=False):
            col.image(
                display_image(dataset.images[item.example_index], side=80),
                caption=f"{md(item.label_name)} · d={item.distance:.2f}",
            )
    else:
        feats = pd.DataFrame(
            dataset.features[nb["example_index"].to_numpy()],
            columns=[f"x{j}" for j in range(dataset.features.shape[1])],
        )
        st.dataframe(pd.concat([nb.reset_index(drop=True), feats], axis=1), hide_index=True)
