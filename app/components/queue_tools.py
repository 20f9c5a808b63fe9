"""The review queue's filters and its bulk action ("accept every suggestion at confidence >= x").

Both draw inside the review fragment, so changing a filter or accepting in bulk reruns
only the review, not the page. The bulk button says how many labels it will change
before it is pressed, and acts on exactly the rows it counted (their revisions are
checked in the same transaction as the write, see :func:`core.review.accept_suggestions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from app import services
from app.markup import md
from core import review
from core.store import StaleDecisionError

__all__ = ["QUEUE_COLUMNS_SHOWN", "bulk_accept", "flash", "queue_filters"]

_STATUS = {"all": None, "undecided": False, "decided": True}
_SUBSET = {"all": None, "in the chosen subset": True, "not in the subset": False}
_SORT_NAMES = {"score": "mislabel score, highest first", "confidence": "suggestion confidence, highest first",
               "example": "row order"}
#: Columns of the queue shown in the grid view's table, with their headers (no internal ids).
QUEUE_COLUMNS_SHOWN = {
    "id": "id", "label_name": "given label", "suggested_name": "suggested label",
    "suggested_confidence": "confidence", "score": "mislabel score", "in_subset": "in the subset",
    "decision": "decision", "reviewer": "reviewer",
}


def flash(kind: str, text: str) -> None:
    """Leave a message for the next run of the review to show (callbacks cannot draw)."""
    st.session_state["_review_flash"] = (kind, text)


def queue_filters(class_names: Sequence[str]) -> dict[str, Any]:
    """Draw the filter and sort controls; returns :func:`core.review.filter_queue`'s keyword arguments."""
    names = list(class_names)
    with st.expander("Filter and sort the queue"):
        c = st.columns(3)
        given = c[0].multiselect("Given label", range(len(names)), format_func=names.__getitem__,
                                 key="queue_given", placeholder="any")
        suggested = c[1].multiselect("Suggested label", range(len(names)), format_func=names.__getitem__,
                                     key="queue_suggested", placeholder="any")
        min_score = c[2].number_input("Mislabel score at least", min_value=0.0, value=0.0, step=0.05,
                                      key="queue_min_score")
        d = st.columns(3)
        status = d[0].selectbox("Decision", list(_STATUS), key="queue_status")
        subset = d[1].selectbox("Chosen by the run", list(_SUBSET), key="queue_subset")
        sort = d[2].selectbox("Order", list(_SORT_NAMES), format_func=_SORT_NAMES.get, key="queue_sort")
    return {
        "given": list(given) or None,
        "suggested": list(suggested) or None,
        "min_score": float(min_score) if min_score > 0 else None,
        "reviewed": _STATUS[status],
        "in_subset": _SUBSET[subset],
        "sort": sort,
    }


def _accept_all(dataset_id: int, rows: list[dict], reviewer: str) -> None:
    """Callback of the bulk button: accept the rows it counted, as one batch."""
    try:
        done = review.accept_suggestions(services.get_store(), dataset_id, pd.DataFrame(rows),
                                         reviewer=reviewer)
    except StaleDecisionError as e:
        flash("warning", f"Nothing was accepted: {md(e)} The count below is up to date now.")
        return
    flash("success", f"Accepted {len(done)} suggestions; **Undo last** reverts all of them at once.")


def bulk_accept(dataset_id: int, view: pd.DataFrame, reviewer: str) -> None:
    """The "accept every suggestion with confidence at least x" control over the queue shown."""
    c = st.columns([3, 2], vertical_alignment="bottom")
    conf = c[0].slider("Accept every suggestion with confidence at least", min_value=0.0, max_value=1.0,
                       value=0.9, step=0.01, key="bulk_confidence",
                       help="Only undecided examples of the queue shown (filters apply) whose suggestion "
                            "differs from their label.")
    plan = review.suggestions_to_accept(view, min_confidence=conf)
    rows = plan[["example_index", "suggested_label", "revision"]].to_dict("records")
    c[1].button(
        f"Accept {len(plan)} suggestions", key="bulk_accept", disabled=not len(plan),
        use_container_width=True, on_click=_accept_all, args=(dataset_id, rows, reviewer),
        help="Relabels these examples to their suggestion in one step; Undo last reverts the whole step.",
    )
    st.caption(f"This changes the label of **{len(plan)}** of the {len(view)} examples shown.")
