"""Export page: download the chosen subset or all kept examples with their per-row and run manifests.

The page names the run it exports from. By default that is the run shown on the Select
page (not the newest run, which may be one made only for comparison).
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from app import services
from app.markup import md
from core import export
from core.valuation import available_methods


def _manifest_facts(m: dict) -> pd.DataFrame:
    """The run manifest's main entries as a two-column table (the full JSON is the download)."""
    run, mis, review = m.get("run") or {}, m.get("mislabels") or {}, m["review"]
    facts = [
        ("Source file", m["source"]["file"] or m["source"]["origin"]),
        ("Source SHA-256", m["source"]["sha256"] or "-"),
        ("Dataset", f"#{m['dataset']['id']} {m['dataset']['name']}"),
        ("Run", f"#{run['id']} {run['method']} at {run['budget']:.0%}, seed {run['seed']}" if run else "-"),
        ("Mislabel result", f"#{mis['result_id']} ({mis['flagged']} flagged)" if mis else "-"),
        ("Decisions in force", str(review["decisions_in_force"])),
        ("Last decision", review["last_decided_at"] or "-"),
        ("Tool", f"{m['tool']['name']} {m['tool']['version']}"),
        ("Written at", m["created_at"]),
    ]
    return pd.DataFrame(facts, columns=["entry", "value"])


st.title("Export")
st.caption(
    "Download the curated data. Every file comes with a per-row manifest (was each example "
    "chosen, its value, its mislabel score, any review decision) and a run manifest (the source "
    "file and its checksum, the run and its settings, the mislabel result, the review state)."
)

store = services.get_store()
did = services.require_dataset()

info = store.dataset_info(did)
runs = store.list_runs(did)
method_names = available_methods()
what_labels = {"subset": "The chosen subset", "kept": "All kept examples (everything not excluded)"}

run_id = None
if runs:
    ids = [r["id"] for r in runs]
    shown = services.run_shown_on_select(did)
    default = shown if shown in ids else ids[0]
    by_id = {r["id"]: r for r in runs}

    def _run_label(rid: int) -> str:
        r = by_id[rid]
        notes = [n for n, yes in (("shown on Select", rid == shown), ("newest", rid == ids[0]),
                                  ("re-scored", bool(r["info"].get("rescored_from")))) if yes]
        return (f"run #{rid} · {method_names.get(r['method'], r['method'])} at {r['budget']:.0%}"
                + (f" ({', '.join(notes)})" if notes else ""))

    run_id = st.selectbox(
        "Run",
        ids,
        index=ids.index(default),
        format_func=_run_label,
        key="export_run",
        help="The run whose subset (and per-example values) is exported; by default the one shown "
        "on the Select page.",
    )
    r = by_id[run_id]
    st.info(
        f"Exporting from **run #{run_id}**: {md(method_names.get(r['method'], r['method']))} at "
        f"{r['budget']:.0%} (seed {r['seed']}, made {md(r['created_at'][:19].replace('T', ' '))} UTC)"
        + (", the run shown on Select." if run_id == shown else ".")
    )

c = st.columns([2, 2, 1], vertical_alignment="bottom")
what = c[0].radio("What", list(what_labels), format_func=what_labels.get, key="export_what", horizontal=False)
formats = list(export.export_formats(info.kind))
fmt_help = (
    "zip: class folders of PNGs plus manifest.csv; npz: the images as arrays; csv/parquet: the "
    "manifest only."
    if info.kind == "image"
    else "csv, parquet or npz: the features under their column names, the label and the manifest."
)
fmt = c[1].selectbox("Format", formats, key="export_format", help=fmt_help)
if not runs and what == "subset":
    st.warning(
        "No selection run yet, so there is no chosen subset: run one on the Select page, "
        "or export all kept examples."
    )

with services.engine_errors("Exporting"):
    if c[2].button(
        "Prepare file", type="primary", key="export_prepare", disabled=what == "subset" and run_id is None
    ):
        with st.spinner("Writing the export..."):
            services.export_files(did, run_id=run_id, what=what, fmt=fmt)
        st.session_state["_export_ready"] = (did, run_id, what, fmt, store.labels_revision(did))
    if st.session_state.get("_export_ready") == (did, run_id, what, fmt, store.labels_revision(did)):
        data, name, run_manifest = services.export_files(did, run_id=run_id, what=what, fmt=fmt)
        mime = {"zip": "application/zip", "csv": "text/csv"}.get(fmt, "application/octet-stream")
        d = st.columns(2)
        d[0].download_button(
            f"Download {md(name)} ({len(data) / 1024:,.0f} KiB)",  # named after the dataset
            data,
            file_name=name,
            mime=mime,
            key="export_download",
            on_click="ignore",
            type="primary",
            icon=":material/download:",
        )
        d[1].download_button(
            "Download the run manifest (JSON)",
            run_manifest,
            file_name=export.run_manifest_path(name).name,
            mime="application/json",
            key="export_download_manifest",
            on_click="ignore",
            icon=":material/receipt_long:",
            help="What this file was made from; a ZIP also holds it as run.json.",
        )
        with st.expander("Run manifest (what this export was made from)"):
            st.dataframe(_manifest_facts(json.loads(run_manifest)), hide_index=True)  # plain cells

    st.subheader("Per-row manifest")
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
    st.dataframe(manifest.drop(columns="excluded"), hide_index=True, height=420)
