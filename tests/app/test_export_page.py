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
