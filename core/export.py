"""Export of the curated dataset with its provenance manifest, written atomically.

What is exported (``what``):

- ``"subset"``: the examples chosen by a selection run (the newest, or ``run_id``),
  minus any excluded since.
- ``"kept"``: every example not excluded by a reviewer (train, validation and test).

How (``fmt``):

- ``"zip"`` (image data): one folder per class of PNG files (the *current*
  label, after review) under a top folder named after the dataset, plus
  ``manifest.csv``. ``core.data.load_dataset`` reads it back as the same
  images with the same labels (it skips the manifest).
- ``"csv"`` / ``"parquet"``: the manifest as a table; for tabular data the
  feature columns too (``f0``, ``f1``... after the manifest columns). Read it
  back with :func:`load_export`, which drops the manifest columns and hands the
  rest to ``core.data.load_dataset``.

The manifest has one row per exported example with :data:`MANIFEST_COLUMNS`:
``id``, ``original_label`` and ``label`` (class names, before and after review),
``selected`` (in the run's subset), ``value`` (the run's per-example value, empty
for non-candidates), ``mislabel_score``, ``flagged``, ``decision`` (the review
decision in force, empty if none), ``reviewer``, ``decided_at``; then ``split``,
``suggested_label`` and, in a ZIP, ``file`` (the PNG's path in the archive).

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
from core.store import Store

__all__ = ["EXPORT_FORMATS", "EXPORT_WHATS", "MANIFEST_COLUMNS", "build_manifest",
           "export_dataset", "load_export"]

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("id", "original_label", "label", "selected", "value", "mislabel_score",
                    "flagged", "decision", "reviewer", "decided_at")
#: Columns after :data:`MANIFEST_COLUMNS` (``file`` only in a ZIP's manifest).
EXTRA_COLUMNS = ("split", "suggested_label", "file")
EXPORT_FORMATS = ("zip", "csv", "parquet")
EXPORT_WHATS = ("subset", "kept")
_EXTENSIONS = {".zip": "zip", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


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
    return _manifest(store, dataset_id, dataset, split.role_of(dataset.n), run_id)


def _manifest(store: Store, dataset_id: int, dataset: Dataset, roles: np.ndarray,
              run_id: int | None) -> pd.DataFrame:
    n = dataset.n
    names = np.asarray(dataset.class_names, dtype=object)
    labels, excluded = store.effective_labels(dataset_id)
    run = store.get_run(run_id) if run_id is not None else store.latest_run(dataset_id)
    if run is not None and run.dataset_id != dataset_id:
        raise ExportError(f"Run {run.id} belongs to dataset {run.dataset_id}, not {dataset_id}.")
    mis = store.latest_mislabels(dataset_id)
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
                ".parquet, or pass fmt."
            )
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}.")
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
    """Write the chosen subset or all kept examples, with the manifest, to ``out``.

    Args:
        store: The project store.
        dataset_id: The dataset.
        out: Output file; an existing file is replaced only once the new one is complete.
            Missing folders above it are created (and removed again if the export fails).
        what: ``"subset"`` (the run's chosen examples) or ``"kept"`` (all not excluded).
        fmt: ``"zip"`` (images only), ``"csv"`` or ``"parquet"``; ``None``: from ``out``'s
            extension.
        run_id: The run whose subset is exported; ``None``: the newest run.

    Returns:
        The written path.

    Raises:
        ExportError: bad ``what``/``fmt``, no run for a subset, nothing to export, ZIP of
            tabular data, or the file could not be written.
        StoreError: no such dataset or run.
    """
    out = Path(out)
    if what not in EXPORT_WHATS:
        raise ExportError(f"what must be one of {EXPORT_WHATS}; got {what!r}.")
    fmt = _resolve_format(out, fmt)
    dataset, split = store.get_dataset(dataset_id)
    if fmt == "zip" and dataset.images is None:
        raise ExportError(
            "A ZIP export holds class folders of images, and this dataset is tabular; "
            "export it as csv or parquet."
        )
    manifest = _manifest(store, dataset_id, dataset, split.role_of(dataset.n), run_id)
    if what == "subset":
        if run_id is None and store.latest_run(dataset_id) is None:
            raise ExportError(
                "There is no selection run yet, so there is no chosen subset: run a selection "
                "first, or export what='kept'."
            )
        rows = np.flatnonzero(manifest["selected"].to_numpy() & ~manifest["excluded"].to_numpy())
    else:
        rows = np.flatnonzero(~manifest["excluded"].to_numpy())
    if len(rows) == 0:
        raise ExportError(f"Nothing to export: the {what} is empty.")
    table = manifest.iloc[rows].drop(columns="excluded").reset_index(drop=True)
    made: list[Path] = []
    try:
        made = _make_folders(out.parent)
        if fmt == "zip":
            atomic_write(out, lambda fh: _write_zip(fh, dataset, rows, table))
        else:
            if dataset.features is not None:
                feats = pd.DataFrame(dataset.features[rows],
                                     columns=[f"f{j}" for j in range(dataset.features.shape[1])])
                table = pd.concat([table, feats], axis=1)
            if fmt == "csv":
                atomic_write(out, lambda fh: table.to_csv(fh, index=False))
            else:
                atomic_write(out, lambda fh: table.to_parquet(fh, index=False))
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


def _write_zip(fh: BinaryIO, dataset: Dataset, rows: np.ndarray, table: pd.DataFrame) -> None:
    """Class folders of PNGs (by the current label) under one top folder, plus manifest.csv."""
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


def load_export(path: str | os.PathLike) -> Dataset:
    """Read an export back as a dataset through ``core.data.load_dataset``.

    A ZIP is loaded as it is (class folders; the manifest is skipped). A CSV/Parquet
    export of tabular data loses its manifest columns first, keeping ``id``, ``label``
    and the features.
    """
    from core.data import load_dataset

    path = Path(path)
    if path.suffix.lower() != ".zip":
        columns = (pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq")
                   else pd.read_csv(path, nrows=1)).columns
        if set(columns) <= {*MANIFEST_COLUMNS, *EXTRA_COLUMNS}:
            raise ExportError(f"{path.name} is an export of image data: it holds the manifest only. "
                              "Export as zip to get the images.")
    return load_dataset(path)  # the loader drops the manifest's provenance columns
