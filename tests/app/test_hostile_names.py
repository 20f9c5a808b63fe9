"""Hostile dataset strings (ids, class, file, column and dataset names) stay text on every page.

The strings carry a breakout from a code span into an image and a link, raw HTML
and Streamlit's directives (see ``app_helpers.HOSTILE``). Each page is opened on a
dataset made of them, and every Markdown text and chart it draws is checked: the
attacks must be there (escaped), and none may be live markup.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from app_helpers import (
    HOSTILE,
    HOSTILE_NAME,
    assert_inert,
    hostile_class,
    live_markup,
    open_page,
    plotly_strings,
    store_of,
)

from app.markup import code, md


def _shown(texts: list[str], expected: str) -> bool:
    return any(expected in t for t in texts)


def test_data_page(hostile_project):
    at = open_page("data")
    texts = assert_inert(at)
    assert _shown(texts, md(HOSTILE_NAME))  # the subheader
    assert _shown(texts, md(hostile_class(0)))  # a thumbnail caption
    assert any("&lt;img" in s for s in plotly_strings(at))  # a class name as a tick label


def test_select_page(hostile_project):
    at = open_page("select")
    texts = assert_inert(at)
    assert _shown(texts, md(hostile_class(0)))  # the stored job's failure
    hover = plotly_strings(at)
    assert any(s.startswith("ex1&lt;img") for s in hover)  # an id on the map
    assert any(s.startswith("c1 &lt;img") for s in hover)  # a class name on the per-class chart


def test_review_page_and_its_decisions(hostile_project):
    store, did = hostile_project
    dataset, _ = store.get_dataset(did)
    at = open_page("review")
    at.text_input(key="reviewer").input(HOSTILE[1]).run()  # saved with decisions, never Markdown
    first = at.session_state["review_current"]
    texts = assert_inert(at)
    assert _shown(texts, code(dataset.ids[first]))  # "Example 1 of ..." keeps its code span
    assert _shown(texts, md(dataset.class_names[dataset.labels[first]]))  # the metric "Given label"
    at.button(key="accept").click().run()
    assert_inert(at)
    assert store.decisions(did)[-1].reviewer == HOSTILE[1]
    assert _shown([t.value for t in at.toast], md(dataset.ids[first]))
    at.button(key="prev").click().run()  # back to the decided example: its decision is shown
    assert_inert(at)
    assert at.info, "no 'Decision in force' note"
    at.toggle(key="review_grid").set_value(True).run()
    assert any(" → " in t and "attacker" in t for t in assert_inert(at))  # captions: given → suggested


def test_export_page_and_its_download(hostile_project):
    at = open_page("export")
    at.radio(key="export_what").set_value("kept")
    at.selectbox(key="export_format").set_value("csv")
    at.button(key="export_prepare").click().run()
    texts = assert_inert(at)
    label = at.get("download_button")[0].proto.label
    assert md(HOSTILE_NAME) in label and label in texts


def _hostile_csv(columns: list[str], *, label_column: str | None) -> bytes:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, len(columns))), columns=columns)
    frame.insert(0, "id", [f"row{i}{HOSTILE[i % 3]}" for i in range(40)])
    if label_column is not None:
        frame[label_column] = [hostile_class(i % 2) for i in range(40)]
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode()


def _upload(at, name: str, data: bytes) -> None:
    at.file_uploader(key="upload_file").upload(name, data, "text/csv")
    at.button[[b.label for b in at.button].index("Import file")].click().run()


def test_a_hostile_upload_is_imported_and_shown_as_text(app, home):
    name = "up` ![p](https:attacker.example) <img src=x onerror=alert(1)>"
    _upload(app, f"{name}.csv", _hostile_csv(["f1", "f2", "f3"], label_column="label"))
    assert not app.exception, app.exception
    assert store_of(home).list_datasets()[0].name == name
    texts = assert_inert(app)
    assert _shown([s.value for s in app.success], md(name)) and _shown(texts, md(name))


def test_an_upload_error_naming_hostile_columns_is_shown_as_text(app):
    columns = ["<img src=x onerror=alert(1)>", "[click](https://attacker.example/login)", ":red[x]"]
    name = "bad` [click](https://attacker.example/login)"
    _upload(app, f"{name}.csv", _hostile_csv(columns, label_column=None))
    errors = [e.value for e in app.error]
    assert any("label" in e and md(columns[1]) in e and md(name) in e for e in errors), errors
    assert not [live_markup(e) for e in errors if live_markup(e)]
    assert_inert(app)
