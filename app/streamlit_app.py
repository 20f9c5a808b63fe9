"""hostcp studio: the router. Run with ``streamlit run app/streamlit_app.py``.

Sets up the page, the logo and the sidebar (current dataset, project path),
then hands over to one of the four pages of the journey with ``st.navigation``.
The page is in the URL's path; the dataset and the run shown on Select are in its
query (``?dataset=2&run=7``, see :mod:`app.components.url_state`), so a reload or a
bookmark opens the same dataset, run and page.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # make `app` and `core` importable however streamlit was started
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import services  # noqa: E402
from app.components import url_state  # noqa: E402
from app.markup import md  # noqa: E402

HERE = Path(__file__).resolve().parent
LOGO = ROOT / "assets" / "logo.svg"
ICON = ROOT / "assets" / "icon.svg"


def _page(file: str, title: str, icon: str, *, default: bool = False) -> st.Page:
    return st.Page(str(HERE / "app_pages" / file), title=title, icon=icon,
                   url_path=title.lower(), default=default)


def _remember_run(store, dataset_id: int) -> None:
    """Keep the run shown on Select (its ``run_choice`` box) in the URL and across pages.

    Streamlit drops a widget's state when a page without it runs, so the choice is
    shadowed per dataset in ``_run_shown`` and put back before Select draws its box;
    a run in the URL is adopted the same way (Select then does not jump to the newest run).
    """
    runs = [r["id"] for r in store.list_runs(dataset_id)]
    shown = st.session_state.setdefault("_run_shown", {})
    from_url = url_state.adopt("run", runs)
    if from_url is not None:
        st.session_state["run_choice"] = shown[dataset_id] = from_url
        st.session_state["_newest_run_seen"] = (dataset_id, runs[0])
    elif st.session_state.get("run_choice") in runs:
        shown[dataset_id] = st.session_state["run_choice"]
    elif shown.get(dataset_id) in runs:
        st.session_state["run_choice"] = shown[dataset_id]
    url_state.publish("run", shown.get(dataset_id) if shown.get(dataset_id) in runs else None)


def main() -> None:
    """One run of the app: page setup, sidebar, then the chosen page."""
    st.set_page_config(page_title="hostcp studio", page_icon=str(ICON), layout="wide")
    st.logo(str(LOGO), size="large", icon_image=str(ICON))

    pages = [
        _page("data.py", "Data", ":material/dataset:", default=True),
        _page("select.py", "Select", ":material/tune:"),
        _page("review.py", "Review", ":material/fact_check:"),
        _page("export.py", "Export", ":material/download:"),
    ]
    page = st.navigation(pages)

    with st.sidebar:
        with services.engine_errors("Opening the project"):
            store = services.get_store()
            datasets = store.list_datasets()
            if not datasets:  # first launch: import the default demo so every page shows something
                services.current_dataset_id(auto_demo=True)
                datasets = store.list_datasets()
            if datasets:
                pending = st.session_state.pop("_pending_dataset_select", None)
                ids = [d.id for d in datasets]
                names = {d.id: f"#{d.id} {d.name} ({d.n} examples)" for d in datasets}
                from_url = url_state.adopt("dataset", ids)  # a reload, a bookmark, Back
                if pending in ids:
                    st.session_state["dataset_select"] = pending
                elif from_url is not None:
                    st.session_state["dataset_select"] = from_url
                elif st.session_state.get("dataset_select") not in ids:
                    st.session_state["dataset_select"] = services.current_dataset_id()
                chosen = st.selectbox(
                    "Current dataset",
                    ids,
                    format_func=names.get,
                    key="dataset_select",
                    help="Every page works on this dataset; import more on the Data page.",
                )
                st.session_state["dataset_id"] = chosen
                st.caption(md(names[chosen]))  # the box cuts long names; this line wraps them
                url_state.publish("dataset", chosen)
                _remember_run(store, chosen)
            st.caption(f"Project: `{store.path}`")

    page.run()


# Streamlit runs this file as ``__main__``. A multiprocessing spawn child of the server imports
# it as ``__mp_main__``: it must not run the app (that imported the demo into $HOSTCP_HOME).
if __name__ == "__main__":
    main()
