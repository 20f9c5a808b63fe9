"""Data page: import a dataset (upload or built-in demo) and see what it holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import services
from app.components.thumbs import thumbnail_grid
from app.markup import chart_text, md

st.title("Data")
st.caption("Bring a labelled dataset into the project, or start from a built-in demo.")

store = services.get_store()

upload_tab, demo_tab = st.tabs(["Upload a file", "Built-in demo"])

with upload_tab:
    st.markdown(
        "A **ZIP** of class folders (`cat/001.png`, `dog/002.jpg`...), a **CSV** or **Parquet** table "
        "(numeric feature columns plus a label column), or an **NPZ** with arrays `X` and `y`. "
        f"Files up to **{services.MAX_UPLOAD_MB} MB** are accepted here (the `server.maxUploadSize` "
        "setting in `.streamlit/config.toml`); for larger data use the `hostcp` command line."
    )
    with st.form("upload_form", clear_on_submit=False, border=False):
        uploaded = st.file_uploader(
            "Dataset file", type=["zip", "csv", "parquet", "pq", "npz"], key="upload_file"
        )
        validation = st.file_uploader(
            "Clean validation set (optional)", type=["zip", "csv", "parquet", "pq", "npz"],
            key="upload_validation",
            help="A small, clean set of the data you care about, in the dataset's format. Half of it "
                 "guides the selection, half measures the value curves; every row of the dataset "
                 "becomes a candidate. HOST-CP checks whether the dataset looks like it and, if not, "
                 "selects for it. It may hold a single class of the dataset's (the one you care "
                 "about). Without it, a share of the dataset is held out instead.",
        )
        label_column = st.text_input(
            "Label column (CSV/Parquet)", value="label", key="label_column",
            help="The column that holds the classes; every other column but `id` is a feature.",
        )
        val_label_column = st.text_input(
            "Validation set's label column", value="", key="val_label_column", placeholder="the dataset's",
            help="Only where the validation file names its label column differently; its feature "
                 "columns must be the dataset's.",
        )
        do_upload = st.form_submit_button("Import file", type="primary")
    if do_upload:
        if uploaded is None:
            st.warning("Choose a file first.")
        else:
            with services.engine_errors(f"Importing {uploaded.name}"):
                from core.data import load_dataset
                from core.pipeline import import_dataset

                column = label_column.strip() or "label"
                with st.spinner(f"Reading {md(uploaded.name)}..."):
                    dataset = load_dataset((uploaded.name, uploaded.getvalue()), label_column=column)
                    if validation is None:
                        did = import_dataset(store, dataset, seed=0)
                    else:
                        from core.data.validation import load_validation
                        from core.pipeline import import_with_validation

                        val_column = val_label_column.strip() or column
                        val = load_validation((validation.name, validation.getvalue()),
                                              label_column=val_column)
                        did = import_with_validation(store, dataset, val, seed=0)
                services.set_current_dataset(did)
                extra = "" if validation is None else f" and {val.n} of your validation set"
                st.session_state["_flash"] = f"Imported {md(dataset.name)}: {dataset.n} examples{extra}."
                st.rerun()

with demo_tab:
    with services.engine_errors("Listing the demos"):
        from core.data import DEMOS

        names = list(DEMOS)
        demo = st.selectbox(
            "Demo",
            names,
            index=names.index(services.DEFAULT_DEMO) if services.DEFAULT_DEMO in names else 0,
            key="demo_name",
        )
        st.caption(DEMOS[demo])
        if st.button("Load demo", key="load_demo"):
            with services.engine_errors(f"Loading demo {demo}"):
                from core.data import load_demo
                from core.pipeline import import_dataset

                did = import_dataset(store, load_demo(demo), seed=0)
                services.set_current_dataset(did)
                st.session_state["_flash"] = f"Imported demo {demo}."
                st.rerun()

flash = st.session_state.pop("_flash", None)
if flash:
    st.success(flash)

did = services.current_dataset_id()
if did is None:
    st.info("No dataset yet: upload one or load a demo above.")
    st.stop()

with services.engine_errors("Reading the dataset"):
    from core.data import summarize

    info = store.dataset_info(did)
    dataset, split = services.get_dataset(did)
    summary = summarize(dataset)

    st.subheader(f"#{did} {md(info.name)}")
    st.caption(f"Origin: {md(info.origin)}")
    # two rows of four: seven metrics in one row cut the Shape value off on a laptop screen
    c = [*st.columns(4), *st.columns(4)]
    c[0].metric("Examples", f"{summary.n_examples:,}")
    c[1].metric("Classes", summary.n_classes)
    c[2].metric(
        "Shape",
        "×".join(map(str, summary.shape)) if dataset.images is not None else f"{summary.shape[0]} features",
        help="Height × width × channels of an image, or the number of features.",
    )
    c[4].metric("Train", f"{len(split.train):,}", help="Candidates for selection.")
    c[5].metric("Validation", f"{len(split.val):,}", help="Guides the selection; never selected.")
    c[6].metric("Test", f"{len(split.test):,}", help="Measures the value curves; never selected.")
    c[3].metric(
        "Known noise",
        "-" if summary.known_noise_rate is None else f"{summary.known_noise_rate:.1%}",
        help="Share of labels known to be wrong (demos keep the true labels).",
    )
    for problem in summary.problems:
        st.warning(md(problem))  # names classes and ids

    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Class balance**")
        counts = pd.Series(summary.class_counts)
        fig = go.Figure(
            go.Bar(x=[chart_text(k) for k in counts.index], y=counts.to_numpy(), marker_color="#9ecae1")
        )
        fig.update_layout(
            height=300,
            margin={"l": 10, "r": 10, "t": 10, "b": 10},
            xaxis_title="class",
            yaxis_title="examples",
            xaxis_type="category",
        )
        st.plotly_chart(fig, key="class_balance")
        roles = split.role_of(dataset.n)
        per_split = pd.crosstab(np.asarray(dataset.class_names, dtype=object)[dataset.labels], roles,
                                rownames=["class"], colnames=["split"])
        st.markdown("**Split sizes per class**")
        st.dataframe(
            per_split.reindex(columns=[c for c in ("train", "val", "test") if c in per_split.columns])
        )
    with right:
        if dataset.images is not None:
            st.markdown("**Examples** (three per class)")
            rng = np.random.default_rng(0)
            picks = []
            for c_idx in range(dataset.n_classes):
                members = np.flatnonzero(dataset.labels == c_idx)
                if len(members):
                    picks.extend(rng.choice(members, size=min(3, len(members)), replace=False))
            picks = picks[:48]
            thumbnail_grid(
                [dataset.images[i] for i in picks],
                [dataset.class_names[dataset.labels[i]] for i in picks],
                columns=8,
                side=64,
            )
        else:
            st.markdown("**First rows**")
            head = pd.DataFrame(dataset.features[:20], columns=list(dataset.feature_names))  # as imported
            taken = set(head.columns)  # a feature may be called "label" when the classes are elsewhere
            head.insert(0, "label" if "label" not in taken else "(label)",
                        np.asarray(dataset.class_names, dtype=object)[dataset.labels[:20]])
            head.insert(0, "id" if "id" not in taken else "(id)", np.asarray(dataset.ids[:20]).astype(str))
            st.dataframe(head, hide_index=True)

st.page_link(
    "app_pages/select.py", label="Next: select the subset of highest value", icon=":material/arrow_forward:"
)
