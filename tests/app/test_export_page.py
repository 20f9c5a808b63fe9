"""AppTest of the Export page: the manifest, and the downloaded file's content."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
from app_helpers import open_page
from streamlit.testing.v1 import AppTest

from app.markup import md


@pytest.fixture()
def downloads(monkeypatch) -> dict[str, bytes]:
    """File name -> bytes of every file the app hands to Streamlit's media store for download."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    seen: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if filename is not None and isinstance(path_or_data, bytes):
            seen[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    return seen


def _downloaded(at: AppTest, downloads: dict[str, bytes]) -> bytes:
    """The bytes behind the page's download button."""
    button = at.get("download_button")
    assert button, "no download button"
    label = button[0].proto.label
    name = next(n for n in downloads if md(n) in label)  # the label shows the name escaped
    return downloads[name]


def test_manifest_is_shown(project):
    store, did = project
    at = open_page("export")
    manifest = at.dataframe[0].value
    assert len(manifest) == store.dataset_info(did).n
    assert {"id", "label", "selected"} <= set(manifest.columns)
    assert [m.value for m in at.metric if m.label == "Decisions"] == ["0"]


def test_zip_export_of_the_chosen_subset(project, downloads):
    store, did = project
    at = open_page("export")
    at.radio(key="export_what").set_value("subset")
    at.selectbox(key="export_format").set_value("zip")
    at.button(key="export_prepare").click().run()
    assert not at.exception, at.exception
    assert at.get("download_button"), [e.value for e in at.error]
    data = _downloaded(at, downloads)
    run = store.latest_run(did)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
    assert any(n.endswith("manifest.csv") for n in names)
    assert sum(n.endswith(".png") for n in names) == int(run.selected.sum())


def test_csv_export_of_kept_examples(project, downloads):
    store, did = project
    at = open_page("export")
    at.radio(key="export_what").set_value("kept")
    at.selectbox(key="export_format").set_value("csv")
    at.button(key="export_prepare").click().run()
    table = pd.read_csv(io.BytesIO(_downloaded(at, downloads)))
    assert len(table) == store.dataset_info(did).n


def test_the_export_uses_and_names_the_run_shown_on_select(project, downloads):
    """Not the newest run (one made only for comparison): the run the user looked at on Select."""
    import json

    store, did = project
    shown = store.latest_run(did)
    newer = store.add_run(did, method="kcenter", budget=0.3, seed=0, settings={}, selected=shown.selected,
                          value=shown.value, info={})
    at = open_page("select")
    at.selectbox(key="run_choice").set_value(shown.id).run()
    at.switch_page("app_pages/export.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="export_run").value == shown.id != newer
    assert any(f"run #{shown.id}" in i.value and "shown on Select" in i.value for i in at.info)
    at.radio(key="export_what").set_value("subset")
    at.selectbox(key="export_format").set_value("csv")
    at.button(key="export_prepare").click().run()
    buttons = {b.proto.label: b for b in at.get("download_button")}
    assert any("run manifest" in label for label in buttons), list(buttons)
    manifest = json.loads(next(data for name, data in downloads.items() if name.endswith(".csv.run.json")))
    assert manifest["run"]["id"] == shown.id and manifest["dataset"]["id"] == did
    table = pd.read_csv(io.BytesIO(_downloaded(at, downloads)))
    assert len(table) == int(shown.selected.sum())


def test_a_table_can_be_exported_in_every_format_that_loads_back(home):
    from app_helpers import store_of

    from core.data import load_demo
    from core.pipeline import import_dataset

    import_dataset(store_of(home), load_demo("mixture"), seed=0)
    at = open_page("export")
    assert at.selectbox(key="export_format").options == ["csv", "parquet", "npz"]
