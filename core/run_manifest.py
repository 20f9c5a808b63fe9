"""The run manifest of an export: which file, run, mislabel result and review state it was made from.

The per-row manifest (:mod:`core.export`) says what happened to each example; the run
manifest says what the whole export was made from, so a file found on a disk months
later can be traced back: the source file's name and SHA-256, the dataset, the selection
run (method, budget, seed and its full settings), the mislabel result whose flags it
shows, how many review decisions were in force and when the last was made, the tool's
version and when the export was written. It is JSON, written beside the exported file
as ``<file name>.run.json`` (:func:`run_manifest_path`) and, where the format has room,
inside it too (``run.json`` in a ZIP, the Parquet schema's metadata, an NPZ array).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import core
from core.data.dataset import Dataset
from core.store import RunRecord, Store, utcnow

__all__ = ["RUN_MANIFEST_FORMAT", "RUN_MANIFEST_SUFFIX", "build_run_manifest", "read_run_manifest",
           "run_manifest_json", "run_manifest_path"]

#: Names the layout of the JSON; a reader checks it before trusting the keys.
RUN_MANIFEST_FORMAT = "hostcp-run-manifest/1"
#: Appended to the exported file's full name (``subset.csv`` -> ``subset.csv.run.json``), so two
#: exports of one subset in two formats never share a manifest.
RUN_MANIFEST_SUFFIX = ".run.json"


def run_manifest_path(export_path: str | os.PathLike) -> Path:
    """Where the run manifest of the export at ``export_path`` is written (beside it)."""
    path = Path(export_path)
    return path.with_name(path.name + RUN_MANIFEST_SUFFIX)


def build_run_manifest(
    store: Store,
    dataset_id: int,
    dataset: Dataset,
    run: RunRecord | None,
    mislabels: pd.DataFrame | None,
    *,
    what: str,
    fmt: str,
    file_name: str,
    n_rows: int,
    feature_columns: list[str] | None = None,
) -> dict[str, Any]:
    """The run manifest of one export, as a JSON-able dict.

    Args:
        store: The project store.
        dataset_id: The exported dataset.
        dataset: Its stored copy (for the source file and feature names).
        run: The selection run the ``selected`` and ``value`` columns come from, or ``None``.
        mislabels: The mislabel result the ``mislabel_score`` and ``flagged`` columns come from.
        what: ``"subset"`` or ``"kept"``.
        fmt: The export format.
        file_name: The exported file's name.
        n_rows: Examples exported.
        feature_columns: The feature columns as written (``None`` for image data).
    """
    info = store.dataset_info(dataset_id)
    log_ = store.decisions(dataset_id)
    active = store.active_decisions(dataset_id)
    return {
        "format": RUN_MANIFEST_FORMAT,
        "created_at": utcnow(),
        "tool": {"name": "hostcp-studio", "version": core.__version__},
        "export": {"file": file_name, "format": fmt, "what": what, "rows": int(n_rows),
                   "feature_columns": feature_columns},
        "source": {"file": dataset.source_file or None, "sha256": dataset.source_sha256 or None,
                   "origin": info.origin},
        "dataset": {"id": int(dataset_id), "name": info.name, "kind": info.kind, "examples": info.n,
                    "classes": list(info.class_names), "content_hash": info.content_hash,
                    "imported_at": info.created_at},
        "run": None if run is None else _run(run),
        "mislabels": None if mislabels is None else _mislabels(mislabels),
        "review": {
            "decisions_in_force": len(active),
            "log_entries": len(log_),
            "last_decided_at": max((d.decided_at for d in log_), default=None),
            "labels_revision": store.labels_revision(dataset_id),
        },
    }


def _run(run: RunRecord) -> dict[str, Any]:
    return {"id": run.id, "method": run.method, "budget": run.budget, "seed": run.seed,
            "created_at": run.created_at, "labels_revision": run.labels_revision,
            "selected": int(np.count_nonzero(run.selected)), "settings": run.settings, "info": run.info}


def _mislabels(mislabels: pd.DataFrame) -> dict[str, Any]:
    attrs = mislabels.attrs
    return {"result_id": attrs.get("result_id"), "noise_rate": attrs.get("noise_rate"),
            "threshold": attrs.get("threshold"), "labels_revision": attrs.get("labels_revision"),
            "flagged": int(mislabels["flagged"].sum()), "settings": attrs.get("settings")}


def run_manifest_json(manifest: dict[str, Any]) -> str:
    """The manifest as indented JSON text (what every export writes)."""
    return json.dumps(manifest, indent=2, default=str) + "\n"


def read_run_manifest(export_path: str | os.PathLike) -> dict[str, Any]:
    """The run manifest written beside an export (see :func:`run_manifest_path`).

    Raises:
        FileNotFoundError: there is none (the export was made before manifests were written).
    """
    return json.loads(run_manifest_path(export_path).read_text(encoding="utf-8"))
