"""Export page: download the chosen subset or all kept examples with their provenance manifest."""

from __future__ import annotations

import streamlit as st

from app import services
from app.markup import md
from core import export
from core.valuation import available_methods

st.title("Export")
st.caption(
    "Download the curated data; every file carries a manifest saying, per example, whether it "
    "was chosen, its value, its mislabel score and any review decision."
)

store = services.get_store()
did = services.require_dataset()

info = store.dataset_info(did)
runs = store.list_runs(did)
what_labels = {"subset": "The chosen subset", "kept": "All kept examples (everything not excluded)"}
c = st.columns([2, 2, 1], vertical_alignment="bottom")
what = c[0].radio("What", list(what_labels), format_func=what_labels.get, key="export_what", horizontal=False)
formats = ["zip", "csv", "parquet"] if info.kind == "image" else ["csv", "parquet"]
fmt_help = (
    "zip: class folders of PNGs plus manifest.csv; csv/parquet: the manifest only."
    if info.kind == "image"
    else "The features, the label and the manifest columns."
)
fmt = c[1].selectbox("Format", formats, key="export_format", help=fmt_help)

method_names = available_methods()
run_id = None
if runs:
    run_labels = {
        r["id"]: f"run #{r['id']} · {method_names.get(r['method'], r['method'])}"
        f" at {r['budget']:.0%}" + (" (re-scored)" if r["info"].get("rescored_from") else "")
        for r in runs
    }
    run_id = st.selectbox(
        "Subset from",
        list(run_labels),
        format_func=run_labels.get,
        key="export_run",
        help="The newest run is the default.",
    )
elif what == "subset":
    st.warning(
        "No selection run yet, so there is no chosen subset: run one on the Select page, "
        "or export all kept examples."
    )

with services.engine_errors("Exporting"):
    if c[2].button(
        "Prepare file", type="primary", key="export_prepare", disabled=what == "subset" and run_id is None
    ):
        with st.spinner("Writing the export..."):
            services.export_bytes(did, run_id=run_id, what=what, fmt=fmt)
        st.session_state["_export_ready"] = (did, run_id, what, fmt, store.labels_revision(did))
    if st.session_state.get("_export_ready") == (did, run_id, what, fmt, store.labels_revision(did)):
        data, name = services.export_bytes(did, run_id=run_id, what=what, fmt=fmt)
        mime = {"zip": "application/zip", "csv": "text/csv", "parquet": "application/octet-stream"}[fmt]
        st.download_button(
            f"Download {md(name)} ({len(data) / 1024:,.0f} KiB)",  # named after the dataset
            data,
            file_name=name,
            mime=mime,
            key="export_download",
            on_click="ignore",
            type="primary",
            icon=":material/download:",
        )

    st.subheader("Provenance manifest")
    manifest = export.build_manifest(store, did, run_id=run_id)
    m = st.columns(4)
    m[0].metric("Examples", f"{len(manifest):,}")
    if "selected" in manifest:
        m[1].metric("Chosen", int(manifest["selected"].astype(bool).sum()))
    if "flagged" in manifest:
        m[2].metric("Flagged", int(manifest["flagged"].astype(bool).sum()))
    if "decision" in manifest:
        decided = manifest["decision"].fillna("").astype(str).str.strip().isin(["", "None", "nan"])
        m[3].metric("Decisions", int((~decided).sum()), help="Examples with a review decision in force.")
    st.dataframe(manifest, hide_index=True, height=420)
