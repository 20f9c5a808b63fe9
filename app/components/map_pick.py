"""From the map to the review: the points selected with box or lasso open in the review queue.

The map's points carry their hover row as ``customdata`` (id first, see
:func:`core.charts.map_figure`), and Streamlit's selection event reports it per point,
so the selection maps back to examples by id, whichever trace (chosen, discarded,
held out, flagged ring) a point belongs to.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

__all__ = ["MAP_SELECTION", "open_in_review", "picked_examples"]

#: ``st.session_state`` entry read by the Review page: ``{"dataset": id, "examples": [...]}``.
MAP_SELECTION = "review_examples"


def picked_examples(event: Mapping[str, Any] | None, hover: pd.DataFrame) -> list[int]:
    """Example indices of the points selected on the map, sorted, each once.

    Args:
        event: What ``st.plotly_chart(..., on_select="rerun")`` returned (or ``None``).
        hover: The hover table the figure was built from (its ``id`` column as shown).
    """
    points = ((event or {}).get("selection") or {}).get("points") or []
    index = {str(v): i for i, v in enumerate(hover["id"])}
    found = {index.get(str(p["customdata"][0])) for p in points if p.get("customdata")}
    return sorted(i for i in found if i is not None)


def open_in_review(dataset_id: int, event: Mapping[str, Any] | None, hover: pd.DataFrame) -> None:
    """Under the map: "Review these N examples" when points are selected; it opens the Review page."""
    picked = picked_examples(event, hover)
    if not picked:
        st.caption("Select points with the box or lasso tool to review exactly those examples.")
        return
    if st.button(f"Review these {len(picked)} examples", key="map_review", type="primary"):
        st.session_state[MAP_SELECTION] = {"dataset": int(dataset_id), "examples": picked}
        st.switch_page("app_pages/review.py")
