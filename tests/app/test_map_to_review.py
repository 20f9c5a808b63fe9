"""From the map to the review: a box or lasso selection on Select opens exactly those examples on Review.

``AppTest`` cannot drag a lasso, so the test sends what the browser sends after one: the
chart's widget state, a JSON selection event whose points carry the figure's own
``customdata`` (taken from the chart spec the page drew).
"""

from __future__ import annotations

import json

import pandas as pd
from app_helpers import open_page
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.testing.v1 import AppTest


def _map(at: AppTest):
    return next(c for c in at.get("plotly_chart") if "selection_map" in c.proto.id)


def _lasso(at: AppTest, picks: list[tuple[int, int]]) -> tuple[WidgetStates, list[str]]:
    """The widget states of the page with a lasso over ``(trace, point)`` pairs; and the picked ids."""
    chart = _map(at)
    traces = json.loads(chart.proto.spec)["data"]
    points = [{"curve_number": c, "point_index": i, "point_number": i, "x": 0.0, "y": 0.0,
               "customdata": traces[c]["customdata"][i]} for c, i in picks]
    event = {"selection": {"points": points, "point_indices": [p["point_index"] for p in points],
                           "box": [], "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}}
    states = at._tree.get_widget_states()
    w = states.widgets.add()
    w.id, w.string_value = chart.proto.id, json.dumps(event)
    return states, [p["customdata"][0] for p in points]


def test_the_map_offers_box_and_lasso_and_hover_tells_label_value_and_score(project):
    at = open_page("select")
    chart = _map(at)
    assert set(chart.proto.selection_mode) == {1, 2}  # BOX, LASSO (PlotlyChart.SelectionMode)
    template = json.loads(chart.proto.spec)["data"][0]["hovertemplate"]
    assert all(f"{name}:" in template for name in ("label", "value", "mislabel score"))
    assert any("box or lasso" in c.value for c in at.caption)


def test_a_lasso_opens_exactly_those_examples_in_review(project):
    store, did = project
    dataset, _ = store.get_dataset(did)
    at = open_page("select")
    states, ids = _lasso(at, [(2, 0), (2, 1), (1, 4), (3, 0), (3, 0)])  # a flagged ring may repeat a point
    at._run(states)
    expected = sorted({int(pd.Index(dataset.ids.astype(str)).get_loc(i)) for i in ids})
    button = at.button(key="map_review")
    assert button.label == f"Review these {len(expected)} examples"
    button.click()
    states, _ = _lasso(at, [(2, 0), (2, 1), (1, 4), (3, 0), (3, 0)])  # the browser resends the selection
    at._run(states)
    assert not at.exception, at.exception
    assert at.session_state["review_examples"] == {"dataset": did, "examples": expected}
    assert any(f"**{len(expected)}** examples selected on the map" in i.value for i in at.info)
    shown = next(m.value for m in at.markdown if m.value.startswith("**Example "))
    assert shown.startswith(f"**Example 1 of {len(expected)}**")
    at.switch_page("app_pages/review.py")  # AppTest would rerun the page it was last sent to (Select)
    at.toggle(key="review_grid").set_value(True).run()
    assert sorted(at.dataframe[0].value["id"]) == sorted(str(dataset.ids[i]) for i in expected)
    at.toggle(key="review_grid").set_value(False).run()
    at.button(key="scope_clear").click().run()
    assert "review_examples" not in at.session_state
    n_flagged = int(store.latest_mislabels(did)["flagged"].sum())
    shown = next(m.value for m in at.markdown if m.value.startswith("**Example "))
    assert f" of {n_flagged}**" in shown  # the whole queue again, still on the same example
