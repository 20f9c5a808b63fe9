"""NPZ arrays into datasets: ``X`` (features or images) and ``y``, sized from the headers first.

An NPZ is a ZIP of ``.npy`` files. The ZIP directory is checked like any upload
(:func:`~core.data.archive.open_archive`), then the ``.npy`` header of ``X`` (shape
and dtype) is checked against the limits before any array is loaded, so a
10 GB array is refused without reading it. Only the arrays a dataset uses are loaded.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
import pandas as pd

from core.data.archive import open_archive
from core.data.dataset import Dataset
from core.data.images import fit_stack
from core.data.limits import LoadLimits, column_list, one_line, row_ref, row_sources
from core.data.tables import check_class_count, encode_labels, ids_from_column, numeric_features
from core.errors import ArchiveError, DataError

__all__ = ["from_npz"]

#: The arrays a dataset uses; any others (an export's manifest_* columns) are not loaded.
_KEYS = ("X", "y", "ids", "class_names", "feature_names")
_READ_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def from_npz(data: bytes, *, filename: str, name: str, limits: LoadLimits) -> Dataset:
    """Build a dataset from an NPZ holding ``X`` and ``y`` (optionally ``ids``, ``class_names``,
    and ``feature_names`` for 2-D features).

    Raises:
        DataError: Missing or mismatched arrays, wrong dtypes or shapes, NaN features.
        ArchiveError: A corrupt or hostile file, or ``X`` over the limits.
    """
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DataError(
            f"{filename} is not a valid NPZ file (an NPZ is a ZIP of .npy arrays). "
            "Save it with np.savez(path, X=X, y=y)."
        )
    open_archive(data, where=filename, limits=limits)  # size, ratio, paths: before np.load
    try:
        npz = np.load(io.BytesIO(data), allow_pickle=False)
        present = list(npz.files)
    except _READ_ERRORS as e:
        raise _unreadable(filename, e) from e
    missing = [k for k in ("X", "y") if k not in present]
    if missing:
        raise DataError(
            f"{filename} lacks array(s) {', '.join(map(repr, missing))}; arrays present: "
            f"{column_list(present)}. Save with np.savez(path, X=features_or_images, y=labels)."
        )
    x_header, y_header = _header(npz, "X"), _header(npz, "y")
    if x_header is not None:
        _check_x(*x_header, filename=filename, limits=limits)
        (x_shape, _), y_shape = x_header, y_header[0] if y_header is not None else None
        if y_shape is not None and len(y_shape) == 1 and x_shape and x_shape[0] != y_shape[0]:
            raise _length_mismatch(filename, x_shape[0], y_shape[0])
    try:
        arrays = {k: npz[k] for k in _KEYS if k in present}
    except _READ_ERRORS as e:
        raise _unreadable(filename, e) from e
    x, y = arrays["X"], arrays["y"]
    if y.ndim != 1:
        raise DataError(
            f"{filename}: y must be 1-D (one label per example); got shape {y.shape}. "
            "For one-hot labels save y.argmax(axis=1)."
        )
    if x.ndim == 0 or len(x) != len(y):
        raise _length_mismatch(filename, len(x) if x.ndim else 0, len(y))
    if len(y) == 0:
        raise DataError(f"{filename}: X and y are empty; save at least two classes of examples.")
    _check_x(x.shape, x.dtype, filename=filename, limits=limits)
    rows = row_ref(None)
    if "class_names" in arrays and np.issubdtype(y.dtype, np.integer):
        names = [str(c) for c in arrays["class_names"].ravel()]
        if y.min() < 0 or y.max() >= len(names):
            raise DataError(
                f"{filename}: y holds class indices {int(y.min())}..{int(y.max())} but class_names "
                f"has {len(names)} entries. Make y index into class_names."
            )
        labels, class_names = y.astype(np.int64), tuple(names)
        check_class_count(labels, class_names, where=filename, minimum=limits.min_classes)
    else:
        labels, class_names = encode_labels(pd.Series(y), where=filename, rows=rows,
                                            min_classes=limits.min_classes)
    if "ids" in arrays:
        ids = ids_from_column(pd.Series(arrays["ids"].ravel()), where=f"{filename} ids", rows=rows)
        if len(ids) != len(y):
            raise DataError(f"{filename}: ids has {len(ids)} entries but y has {len(y)}.")
    else:
        ids = np.array([f"row {i + 1}" for i in range(len(y))], dtype=str)
    sources = row_sources(filename, len(y))
    common = dict(name=name, ids=ids, labels=labels, class_names=class_names, sources=sources)
    if x.ndim == 2:
        frame = pd.DataFrame(x, columns=[f"X[:, {j}]" for j in range(x.shape[1])], copy=False)
        features = numeric_features(frame, where=filename, rows=rows)
        names = _feature_names(arrays.get("feature_names"), x.shape[1], filename=filename)
        return Dataset(**common, features=features, feature_names=names,
                       origin=f"npz:{filename} (features {x.shape})")
    images, note = _images(x, limits=limits)
    return Dataset(**common, images=images, origin=f"npz:{filename} (images {note})")


def _feature_names(names: np.ndarray | None, d: int, *, filename: str) -> tuple[str, ...] | None:
    """The optional ``feature_names`` array as a tuple, one unique name per column of ``X``."""
    if names is None:
        return None
    out = tuple(str(c) for c in names.ravel())
    if len(out) != d or len(set(out)) != d:
        raise DataError(
            f"{filename}: feature_names has {len(out)} entries ({len(set(out))} distinct) but X has {d} "
            "columns. Give one unique name per column, or leave feature_names out."
        )
    return out


def _header(npz: np.lib.npyio.NpzFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """Shape and dtype from the ``.npy`` header of one array, without loading it.

    ``None`` when the header cannot be read this way (format 3.0, object arrays, or
    corrupt: loading the array then reports it).
    """
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with npz.zip.open(f"{key}.npy") as fh:
            reader = readers.get(np.lib.format.read_magic(fh))
            if reader is None:
                return None
            shape, _, dtype = reader(fh)
    except (*_READ_ERRORS, KeyError):
        return None
    dtype = np.dtype(dtype)
    return None if dtype.hasobject else (tuple(int(s) for s in shape), dtype)


def _check_x(shape: tuple[int, ...], dtype: np.dtype, *, filename: str, limits: LoadLimits) -> None:
    """Raise if ``X`` of this shape and dtype cannot be a dataset or is over the limits."""
    size = math.prod(shape)
    if len(shape) == 2:
        if size > limits.max_feature_values:
            raise ArchiveError(
                f"{filename}: X holds {size:,} feature values ({shape[0]:,} x {shape[1]:,}), over "
                f"LoadLimits.max_feature_values ({limits.max_feature_values:,}); nothing was loaded. "
                "Save fewer rows or columns, or raise the limit."
            )
        return
    if len(shape) not in (3, 4):
        raise DataError(
            f"{filename}: X has shape {shape}. Expected (N, D) features, (N, H, W) grey images "
            "or (N, H, W, C) images with C = 1 or 3."
        )
    first = len(shape) == 4 and shape[-1] not in (1, 3) and shape[1] in (1, 3)  # (N, C, H, W)
    channels = 1 if len(shape) == 3 else shape[1] if first else shape[-1]
    h, w = shape[2:4] if first else shape[1:3]
    if channels not in (1, 3):
        raise DataError(
            f"{filename}: images have {channels} channels (shape {shape}); expected 1 (grey) "
            "or 3 (RGB). Drop an alpha channel with X[..., :3]."
        )
    if dtype != np.uint8:
        hint = "(X * 255).round().astype(np.uint8)" if dtype.kind == "f" else "X.astype(np.uint8)"
        raise DataError(
            f"{filename}: image arrays must be uint8 (0..255); X is {dtype} with shape {shape}. "
            f"Convert before saving, for example {hint} for values in [0, 1]."
        )
    if h * w > limits.max_image_pixels:
        raise ArchiveError(
            f"{filename}: images of {h}x{w} = {h * w:,} pixels exceed LoadLimits.max_image_pixels "
            f"({limits.max_image_pixels:,}); nothing was loaded. Save smaller images."
        )
    if size > limits.max_total_pixels:
        raise ArchiveError(
            f"{filename}: {size:,} pixel values exceed LoadLimits.max_total_pixels "
            f"({limits.max_total_pixels:,}); save fewer or smaller images."
        )


def _images(x: np.ndarray, *, limits: LoadLimits) -> tuple[np.ndarray, str]:
    """A checked image array as the stored ``(N, H, W, C)`` uint8 stack, and a provenance note."""
    note = ""
    if x.ndim == 3:
        x = x[..., None]
    elif x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x, note = np.moveaxis(x, 1, -1), ", channels moved last"
    stack, fitted = fit_stack(x, max_side=limits.max_image_side)
    n, h, w, c = stack.shape
    return np.ascontiguousarray(stack), f"{h}x{w}x{c}{note}{fitted}"


def _unreadable(filename: str, error: Exception) -> DataError:
    return DataError(
        f"{filename} could not be read as NPZ ({one_line(error)}). Save plain numeric or string arrays "
        "with np.savez(path, X=X, y=y) (object arrays are refused)."
    )


def _length_mismatch(filename: str, n_x: int, n_y: int) -> DataError:
    return DataError(
        f"{filename}: X has {n_x} rows but y has {n_y} labels. "
        "Every example needs exactly one label: save X and y with the same first dimension."
    )
