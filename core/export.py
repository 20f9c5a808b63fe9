"""Export of the curated dataset with its per-row and run manifests, written atomically.

What is exported (``what``):

- ``"subset"``: the examples chosen by a selection run (the newest, or ``run_id``),
  minus any excluded since.
- ``"kept"``: every example not excluded by a reviewer (train, validation and test).

How (``fmt``); every format but a CSV/Parquet of image data loads back with
``core.data.load_dataset`` (:func:`load_export`) as the same examples, current labels and,
for tables, the same feature column names:

- ``"zip"`` (image data): one folder per class of PNG files (the *current*
  label, after review) under a top folder named after the dataset, plus
  ``manifest.csv`` and ``run.json``. The loader skips the two.
- ``"csv"`` / ``"parquet"``: the manifest as a table; for tabular data the
  feature columns too, under their imported names, after the manifest columns (a
  feature named like a manifest column is written as ``feature_<name>``; the run
  manifest lists the columns as written). The loader drops the manifest columns.
- ``"npz"``: arrays ``X`` (features or images), ``y`` (current label indices into
  ``class_names``), ``ids``, ``class_names``, ``feature_names`` (tables), and the
  manifest's columns as ``manifest_<column>`` arrays, which the loader does not read.

The manifest has one row per exported example with :data:`MANIFEST_COLUMNS`:
``id``, ``original_label`` and ``label`` (class names, before and after review),
``selected`` (in the run's subset), ``value`` (the run's per-example value, empty
for non-candidates), ``mislabel_score``, ``flagged``, ``decision`` (the review
decision in force, empty if none), ``reviewer``, ``decided_at``; then ``split``,
``suggested_label`` and, in a ZIP, ``file`` (the PNG's path in the archive).

Every export also writes its run manifest (:mod:`core.run_manifest`) beside the file
as ``<file name>.run.json``: the source file and its SHA-256, the dataset, the run, the
mislabel result, the review state, the tool version and the time.

Files are written to a temporary (in a hidden ``.hostcp-tmp`` folder beside the
target, see :mod:`core.files`) and renamed into place (``os.replace``) only when
complete: a failure leaves nothing behind, and temporaries left by an export that
was killed are removed by the next one. A missing output folder is created (the
folders made are removed again if the export fails). The file gets the usual
permissions of a new file under the umask (``0644`` under umask 022).
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from core.data.dataset import Dataset
from core.errors import ExportError
from core.files import atomic_write
from core.run_manifest import build_run_manifest, run_manifest_json, run_manifest_path
from core.store import RunRecord, Store

__all__ = ["EXPORT_FORMATS", "EXPORT_WHATS", "MANIFEST_COLUMNS", "build_manifest",
           "export_dataset", "export_formats", "load_export", "run_manifest_path"]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("id", "original_label", "label", "selected", "value", "mislabel_score",
                    "flagged", "decision", "reviewer", "decided_at")
#: Columns after :data:`MANIFEST_COLUMNS` (``file`` only in a ZIP's manifest).
EXTRA_COLUMNS = ("split", "suggested_label", "file")
EXPORT_FORMATS = ("zip", "csv", "parquet", "npz")
EXPORT_WHATS = ("subset", "kept")
_EXTENSIONS = {".zip": "zip", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npz": "npz"}
#: Key of the run manifest in a Parquet export's schema metadata.
PARQUET_RUN_KEY = b"hostcp.run_manifest"
#: Column names a feature may not take in a CSV/Parquet export: the loader reads them as provenance.
_RESERVED = frozenset({*MANIFEST_COLUMNS, *EXTRA_COLUMNS})


def export_formats(kind: str) -> tuple[str, ...]:
    """The formats a dataset of ``kind`` (``"image"`` or ``"tabular"``) can be exported in."""
    return EXPORT_FORMATS if kind == "image" else tuple(f for f in EXPORT_FORMATS if f != "zip")


def build_manifest(store: Store, dataset_id: int, *, run_id: int | None = None) -> pd.DataFrame:
    """The provenance manifest of every example of a stored dataset, in dataset order.

    Args:
        store: The project store.
        dataset_id: The dataset.
        run_id: Selection run for ``selected``/``value``; ``None``: the newest run (columns
            are False/NaN when there is none).

    Returns:
        ``(N, ...)`` DataFrame: :data:`MANIFEST_COLUMNS`, then ``split``,
        ``suggested_label`` and ``excluded`` (bool, helper for exports).

    Raises:
        StoreError: no such dataset or run.
        ExportError: ``run_id`` belongs to another dataset.
    """
    dataset, split = store.get_dataset(dataset_id)
    run = _run_of(store, dataset_id, run_id)
    return _manifest(store, dataset_id, dataset, split.role_of(dataset.n), run,
                     store.latest_mislabels(dataset_id))


def _run_of(store: Store, dataset_id: int, run_id: int | None) -> RunRecord | None:
    """The run ``run_id`` (checked to be of this dataset), or the newest; ``None`` if there is none."""
    run = store.get_run(run_id) if run_id is not None else store.latest_run(dataset_id)
    if run is not None and run.dataset_id != dataset_id:
        raise ExportError(f"Run {run.id} belongs to dataset {run.dataset_id}, not {dataset_id}.")
    return run


def _manifest(store: Store, dataset_id: int, dataset: Dataset, roles: np.ndarray,
              run: RunRecord | None, mis: pd.DataFrame | None) -> pd.DataFrame:
    n = dataset.n
    names = np.asarray(dataset.class_names, dtype=object)
    labels, excluded = store.effective_labels(dataset_id)
    active = store.active_decisions(dataset_id)
    decisions = [active.get(i) for i in range(n)]
    score = mis["score"].to_numpy() if mis is not None else np.full(n, np.nan)
    flagged = mis["flagged"].to_numpy() if mis is not None else np.zeros(n, bool)
    suggested = (names[mis["suggested_label"].to_numpy()] if mis is not None
                 else np.full(n, "", dtype=object))
    return pd.DataFrame({
        "id": dataset.ids.astype(str),
        "original_label": names[dataset.labels],
        "label": names[labels],
        "selected": run.selected if run is not None else np.zeros(n, bool),
        "value": run.value if run is not None else np.full(n, np.nan),
        "mislabel_score": score,
        "flagged": flagged.astype(bool),
        "decision": [d.action if d else "" for d in decisions],
        "reviewer": [d.reviewer if d else "" for d in decisions],
        "decided_at": [d.decided_at if d else "" for d in decisions],
        "split": np.asarray(roles).astype(str),
        "suggested_label": suggested,
        "excluded": excluded,
    })


def _safe_name(text: str, fallback: str) -> str:
    """A file/folder name without separators or odd characters (never empty, '.' or '..')."""
    name = re.sub(r"[^A-Za-z0-9._ -]+", "_", str(text)).strip(" .")
    return name[:80] or fallback


def _class_folders(class_names: tuple[str, ...]) -> list[str]:
    """One distinct, safe folder name per class (sorted order preserved for re-import)."""
    folders: list[str] = []
    for i, c in enumerate(class_names):
        base = _safe_name(c, f"class_{i}")
        name, j = base, 1
        while name.lower() in (f.lower() for f in folders):
            j += 1
            name = f"{base}_{j}"
        folders.append(name)
    return folders


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    arr = image[..., 0] if image.shape[-1] == 1 else image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _resolve_format(out: Path, fmt: str | None) -> str:
    if fmt is None:
        fmt = _EXTENSIONS.get(out.suffix.lower())
        if fmt is None:
            raise ExportError(
                f"Cannot tell the export format from {out.name!r}; name the file .zip, .csv or "
                ".parquet or .npz, or choose the format (hostcp export --format)."
            )
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}.")
    return fmt


def export_dataset(
    store: Store,
    dataset_id: int,
    out: str | os.PathLike,
    *,
    what: str = "subset",
    fmt: str | None = None,
    run_id: int | None = None,
) -> Path:
    """Write the chosen subset or all kept examples, with the per-row manifest, to ``out``.

    The run manifest goes beside it, as :func:`run_manifest_path` names it.

    Args:
        store: The project store.
        dataset_id: The dataset.
        out: Output file; an existing file is replaced only once the new one is complete.
            Missing folders above it are created (and removed again if the export fails).
        what: ``"subset"`` (the run's chosen examples) or ``"kept"`` (all not excluded).
        fmt: One of :data:`EXPORT_FORMATS` (``"zip"`` for images only); ``None``: from
            ``out``'s extension.
        run_id: The run whose subset (and values) are exported; ``None``: the newest run.

    Returns:
        The written path.

    Raises:
        ExportError: bad ``what``/``fmt``, no run for a subset, nothing to export, ZIP of
            tabular data, or the file could not be written.
        StoreError: no such dataset or run.
    """
    out = Path(out)
    if what not in EXPORT_WHATS:
        raise ExportError(f"Unknown export choice {what!r}: export the chosen 'subset' or every "
                          "'kept' example (hostcp export --what subset|kept).")
    fmt = _resolve_format(out, fmt)
    dataset, split = store.get_dataset(dataset_id)
    if fmt not in export_formats(dataset.kind):
        raise ExportError(
            "A ZIP export holds class folders of images, and this dataset is tabular; "
            f"export it as {', '.join(export_formats(dataset.kind))} (hostcp export --format)."
        )
    run = _run_of(store, dataset_id, run_id)
    mis = store.latest_mislabels(dataset_id)
    manifest = _manifest(store, dataset_id, dataset, split.role_of(dataset.n), run, mis)
    if what == "subset":
        if run is None:
            raise ExportError(
                "There is no selection run yet, so there is no chosen subset: run a selection "
                "first (hostcp select), or export every kept example (--what kept)."
            )
        rows = np.flatnonzero(manifest["selected"].to_numpy() & ~manifest["excluded"].to_numpy())
    else:
        rows = np.flatnonzero(~manifest["excluded"].to_numpy())
    if len(rows) == 0:
        raise ExportError(f"Nothing to export: the {what} is empty.")
    table = manifest.iloc[rows].drop(columns="excluded").reset_index(drop=True)
    columns = None
    if dataset.features is not None:
        columns = list(dataset.feature_names) if fmt == "npz" else _feature_columns(dataset.feature_names)
    run_text = run_manifest_json(build_run_manifest(
        store, dataset_id, dataset, run, mis, what=what, fmt=fmt, file_name=out.name, n_rows=len(rows),
        feature_columns=columns,
    ))
    made: list[Path] = []
    try:
        made = _make_folders(out.parent)
        atomic_write(out, lambda fh: _WRITERS[fmt](fh, dataset, rows, table, columns, run_text))
        atomic_write(run_manifest_path(out), lambda fh: fh.write(run_text.encode()))
    except OSError as e:
        _remove_empty(made)
        raise ExportError(f"Could not write {out}: {e}. Nothing was written; check that the folder "
                          "can be written (missing folders are created) and that the disk is not "
                          "full.") from e
    except BaseException:
        _remove_empty(made)
        raise
    logger.info("export: %d examples (%s) to %s", len(rows), what, out)
    return out


def _feature_columns(names: tuple[str, ...]) -> list[str]:
    """The names feature columns get in a CSV/Parquet export: imported names, renamed off the manifest's.

    A feature called ``value`` or ``split`` would be read back as provenance and dropped,
    so it is written as ``feature_value`` (``feature_value_2``... if that is taken too).
    """
    taken = set(_RESERVED) | set(names)
    out = []
    for name in names:
        if name in _RESERVED:
            new, j = f"feature_{name}", 2
            while new in taken:
                new, j = f"feature_{name}_{j}", j + 1
            taken.add(new)
            name = new
        out.append(name)
    return out


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those created, deepest first."""
    missing = [f for f in (folder, *folder.parents) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders an export created, deepest first, if they are still empty."""
    for f in folders:
        try:
            f.rmdir()
        except OSError:  # not empty (someone else wrote there) or already gone
            return


def _with_features(dataset: Dataset, rows: np.ndarray, table: pd.DataFrame,
                   columns: list[str] | None) -> pd.DataFrame:
    """The manifest table, followed by the feature columns of tabular data."""
    if dataset.features is None:
        return table
    return pd.concat([table, pd.DataFrame(dataset.features[rows], columns=columns)], axis=1)


def _write_csv(fh: BinaryIO, dataset: Dataset, rows: np.ndarray, table: pd.DataFrame,
               columns: list[str] | None, run_text: str) -> None:
    _with_features(dataset, rows, table, columns).to_csv(fh, index=False)


def _write_parquet(fh: BinaryIO, dataset: Dataset, rows: np.ndarray, table: pd.DataFrame,
                   columns: list[str] | None, run_text: str) -> None:
    """The table, with the run manifest in the schema's metadata (the file carries it too)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = pa.Table.from_pandas(_with_features(dataset, rows, table, columns), preserve_index=False)
    meta = {**(arrow.schema.metadata or {}), PARQUET_RUN_KEY: run_text.encode()}
    pq.write_table(arrow.replace_schema_metadata(meta), fh)


def _write_npz(fh: BinaryIO, dataset: Dataset, rows: np.ndarray, table: pd.DataFrame,
               columns: list[str] | None, run_text: str) -> None:
    """``X``, ``y``, ``ids``, ``class_names`` (and ``feature_names``) as the NPZ loader reads them."""
    index = {c: i for i, c in enumerate(dataset.class_names)}
    arrays: dict[str, np.ndarray] = {
        "X": (dataset.features if dataset.features is not None else dataset.images)[rows],
        "y": np.array([index[c] for c in table["label"]], dtype=np.int64),
        "ids": table["id"].to_numpy().astype(str),
        "class_names": np.array(dataset.class_names, dtype=str),
        "run_manifest": np.array(run_text),
    }
    if columns is not None:
        arrays["feature_names"] = np.array(columns, dtype=str)
    for col in table.columns.drop("id"):
        values = table[col].to_numpy()
        arrays[f"manifest_{col}"] = values.astype(str) if values.dtype == object else values
    np.savez_compressed(fh, **arrays)


def _write_zip(fh: BinaryIO, dataset: Dataset, rows: np.ndarray, table: pd.DataFrame,
               columns: list[str] | None, run_text: str) -> None:
    """Class folders of PNGs (by the current label) under one top folder, manifest.csv and run.json."""
    top = _safe_name(dataset.name, "dataset")
    folders = _class_folders(dataset.class_names)
    index = {c: i for i, c in enumerate(dataset.class_names)}
    files = []
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for pos, (row, label) in enumerate(zip(rows, table["label"], strict=True)):
            stem = _safe_name(Path(str(dataset.ids[row])).stem, "example")
            member = f"{top}/{folders[index[label]]}/{pos:06d}_{stem}.png"
            zf.writestr(member, _png(dataset.images[row]))
            files.append(member)
        table = table.assign(file=files)
        zf.writestr(f"{top}/manifest.csv", table.to_csv(index=False))
        zf.writestr(f"{top}/run.json", run_text)


_WRITERS = {"zip": _write_zip, "csv": _write_csv, "parquet": _write_parquet, "npz": _write_npz}


def load_export(path: str | os.PathLike) -> Dataset:
    """Read an export back as a dataset through ``core.data.load_dataset``.

    A ZIP is loaded as it is (class folders; the manifests are skipped), an NPZ by its
    ``X``/``y`` arrays. A CSV/Parquet export of tabular data loses its manifest columns
    first, keeping ``id``, ``label`` and the features under their names.
    """
    from core.data import load_dataset

    path = Path(path)
    if path.suffix.lower() not in (".zip", ".npz"):
        columns = (pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq")
                   else pd.read_csv(path, nrows=1)).columns
        if set(columns) <= {*MANIFEST_COLUMNS, *EXTRA_COLUMNS}:
            raise ExportError(f"{path.name} is an export of image data: it holds the manifest only. "
                              "Export as zip or npz to get the images.")
    return load_dataset(path)  # the loader drops the manifest's provenance columns
