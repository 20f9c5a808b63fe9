"""One example of the review queue: what is known about it, the decision buttons and its neighbours.

The buttons act through callbacks whose arguments are bound when the card is drawn:
the dataset, the example and the *revision* of its decision the user was looking at.
So a decision always lands on the dataset and example on screen, and one made on a
stale view (another tab or reviewer decided in between) is refused by the store; the
card then shows the newer decision and offers to replace it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import streamlit as st

from app import services
from app.components.queue_tools import flash
from app.components.thumbs import display_image, example_view, feature_frame
from app.markup import code, md
from core import review
from core.errors import HostcpError
from core.store import StaleDecisionError

__all__ = ["decision_card", "neighbours_view", "next_after", "undo_last"]

_CONFLICT = "_review_conflict"


def next_after(example_index: int, order: Sequence[int], pending: Sequence[int]) -> int:
    """The next example still to review after this one in ``order`` (wrapping), else the following one."""
    order = [int(i) for i in order]
    here = order.index(int(example_index)) if example_index in order else -1
    todo = {int(i) for i in pending} - {int(example_index)}
    for i in order[here + 1:] + order[: here + 1]:
        if i in todo:
            return i
    return order[min(here + 1, len(order) - 1)]


def _verb(action: str, label_name: str) -> str:
    return {
        "relabel": f"relabelled as {md(label_name)}",
        "accept": f"relabelled as {md(label_name)} (suggestion)",
        "keep": "kept with its label",
        "exclude": "excluded",
    }[action]


def _decide(dataset_id: int, example: dict, action: str, new_label: int | None, revision: int,
            reviewer: str, following: int, label_key: str | None = None,
            names: Sequence[str] | None = None) -> None:
    """Callback of a decision button; ``example`` is the card's row as it was drawn.

    ``label_key``: the "Relabel as" box, read now (it may have changed with the click).
    ``names``: the class names, when the card knows them (saves a read of the store).
    An accept comes with the suggestion the card showed as ``new_label``: the store then
    only reads what the write needs, and the revision check refuses it if anything changed.
    """
    st.session_state.pop(_CONFLICT, None)
    if label_key is not None and label_key in st.session_state:
        new_label = int(st.session_state[label_key])
    if action == "relabel" and new_label == int(example["label"]):
        flash("warning", f"{md(example['id'])} already has the label {md(example['label_name'])}: nothing "
                         "was recorded (**Keep label** confirms a label).")
        return
    store = services.get_store()
    try:
        d = review.decide(store, dataset_id, int(example["example_index"]), action, new_label=new_label,
                          reviewer=reviewer, expected_revision=revision)
    except StaleDecisionError as e:
        st.session_state[_CONFLICT] = {
            "dataset": dataset_id, "example": int(example["example_index"]), "action": action,
            "new_label": new_label, "revision": e.revision, "current": e.current,
        }
        return
    except HostcpError as e:
        flash("warning", md(e))
        return
    names = names or store.dataset_info(dataset_id).class_names
    flash("success", f"{md(example['id'])}: {_verb(action, names[d.new_label])}.")
    st.session_state["review_current"] = following


def undo_last(dataset_id: int, reviewer: str) -> None:
    """Callback of "Undo last": withdraw this reviewer's newest action on the dataset it was drawn for."""
    st.session_state.pop(_CONFLICT, None)
    entries = review.undo_last_action(services.get_store(), dataset_id, reviewer=reviewer)
    if not entries:
        flash("info", "You have no decision to undo on this dataset.")
    elif len(entries) == 1:
        flash("success", f"Undid your last decision (example {entries[0].example_index}).")
        st.session_state["review_current"] = entries[0].example_index
    else:
        flash("success", f"Undid your last bulk action ({len(entries)} decisions).")


def _go(example_index: int) -> None:
    st.session_state.pop(_CONFLICT, None)
    st.session_state["review_current"] = int(example_index)


def _conflict(dataset_id: int, row: pd.Series, reviewer: str, names: Sequence[str]) -> None:
    """The refused decision on this example, if any: the newer one, and a button to replace it."""
    c = st.session_state.get(_CONFLICT)
    if not c or c["dataset"] != dataset_id or c["example"] != int(row["example_index"]):
        return
    now = c["current"]
    newer = (f"{md(now.reviewer)} decided **{now.action}** (label {md(names[now.new_label])}) "
             f"at {now.decided_at}" if now is not None else "its decision was undone")
    mine = c["action"] + (f" as {md(names[c['new_label']])}" if c["new_label"] is not None else "")
    st.warning(f"Not saved: this example changed after you opened it. {newer}. Your decision was "
               f"**{mine}**.")
    b = st.columns(2)
    b[0].button(f"Replace it with my {c['action']}", key="conflict_overwrite", type="primary",
                on_click=_decide, args=(dataset_id, row.to_dict(), c["action"], c["new_label"],
                                        c["revision"], reviewer, int(row["example_index"])))
    b[1].button("Keep the newer decision", key="conflict_dismiss", on_click=_go,
                args=(int(row["example_index"]),))


def decision_card(dataset_id: int, dataset, view: pd.DataFrame, pos: int, reviewer: str) -> None:
    """The example at ``pos`` of the queue shown: image or row, labels, score, decision buttons."""
    row = view.iloc[pos]
    order = view["example_index"].tolist()
    pending = view.loc[~view["reviewed"], "example_index"].tolist()
    current = int(row["example_index"])
    following = next_after(current, order, pending)
    names = list(dataset.class_names)
    st.markdown(f"**Example {pos + 1} of {len(order)}** · {code(row['id'])}"
                + (" · in the chosen subset" if row["in_subset"] else ""))
    _conflict(dataset_id, row, reviewer, names)
    left, right = st.columns([1, 2])
    with left:
        example_view(dataset, current, side=220)
    with right:
        k = st.columns(3)
        k[0].metric("Given label", md(row["label_name"]))
        k[1].metric(f"Suggested ({row['suggested_confidence']:.0%} confident)", md(row["suggested_name"]))
        k[2].metric("Mislabel score", f"{row['score']:.2f}")
        if isinstance(row["decision"], str) and row["decision"]:
            st.info(f"Decision in force: **{md(row['decision'])}** by {md(row['reviewer'])} "
                    "(a new decision replaces it).")
        example = row.to_dict()
        rev = int(row["revision"])
        suggested = int(row["suggested_label"])

        def button(where, label: str, action: str, key: str, shortcut: str, label_key=None, **kw) -> None:
            where.button(label, key=key, shortcut=shortcut, use_container_width=True, on_click=_decide,
                         args=(dataset_id, example, action, suggested if action == "accept" else None, rev,
                               reviewer, following, label_key, tuple(names)), **kw)

        b = st.columns(3)
        button(b[0], f"Accept suggestion: {md(row['suggested_name'])}", "accept", "accept", "A",
               type="primary", disabled=suggested == int(row["label"]))
        button(b[1], "Keep label", "keep", "keep", "K")
        button(b[2], "Exclude", "exclude", "exclude", "X",
               help="Leave this example out of selection and of the kept export.")
        r = st.columns([2, 1], vertical_alignment="bottom")
        choice_key = f"relabel_choice_{current}"
        r[0].selectbox("Relabel as", range(len(names)), format_func=names.__getitem__, index=suggested,
                       key=choice_key)
        button(r[1], "Relabel", "relabel", "relabel", "L", label_key=choice_key)
        n = st.columns(2)
        n[0].button("← Previous", key="prev", shortcut="Left", use_container_width=True, disabled=pos == 0,
                    on_click=_go, args=(order[pos - 1],))
        n[1].button("Next →", key="next", shortcut="Right", use_container_width=True,
                    disabled=pos == len(order) - 1, on_click=_go, args=(order[min(pos + 1, len(order) - 1)],))


def neighbours_view(reads: services.ReviewReads, example_index: int) -> None:
    """The example's nearest neighbours in the embedding, as thumbnails or rows."""
    st.markdown("**Nearest neighbours** (in the embedding)")
    dataset = reads.dataset
    nb = reads.neighbours(example_index, k=6)
    if dataset.images is not None:
        cols = st.columns(len(nb) or 1)
        for col, item in zip(cols, nb.itertuples(), strict=False):
            col.image(display_image(dataset.images[item.example_index], side=80),
                      caption=f"{md(item.label_name)} · d={item.distance:.2f}")
    else:
        feats = feature_frame(dataset, nb["example_index"].to_numpy(), taken=tuple(nb.columns))
        st.dataframe(pd.concat([nb.reset_index(drop=True), feats], axis=1), hide_index=True)
