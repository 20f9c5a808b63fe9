"""The one dataset loader: ZIP of class folders, CSV, Parquet or NPZ, from a path or an upload.

Every format comes back as the one :class:`~core.data.dataset.Dataset` type,
and every bad input raises a :class:`~core.errors.DataError` (or its
:class:`~core.errors.ArchiveError` subclass) that says what was wrong, where
(file, row, column or member path) and how to fix it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path, PurePath

from core.data.archive import load_image_folder_zip
from core.data.dataset import Dataset
from core.data.limits import LoadLimits
from core.data.npz import from_npz
from core.data.sources import Source, check_path, describe, read_bytes
from core.data.tables import EXPORT_ONLY_COLUMNS, from_frame, read_table
from core.errors import ConfigError, DataError

__all__ = ["SUPPORTED_EXTENSIONS", "EXPORT_ONLY_COLUMNS", "LoadLimits", "Source", "load_dataset"]


SUPPORTED_EXTENSIONS = (".zip", ".csv", ".parquet", ".pq", ".npz")
_TABULAR = (".csv", ".parquet", ".pq")


def load_dataset(
    source: Source,
    *,
    label_column: str = "label",
    image_column: str | None = None,
    images_zip: Source | None = None,
    name: str | None = None,
    limits: LoadLimits = LoadLimits(),
    image_size: int | tuple[int, int] | None = None,
) -> Dataset:
    """Load a labelled dataset; the format is chosen by the file extension.

    Formats:
        ``.zip``: class folders of PNG/JPEG/BMP/WebP images (``cat/001.png``),
        optionally all under one top folder. ``.csv`` / ``.parquet``: numeric
        feature columns plus a label column, an optional ``id`` column, or an
        ``image_column`` of paths into ``images_zip``. ``.npz``: arrays ``X``
        (``(N, D)`` features, ``(N, H, W)`` or ``(N, H, W, C)`` uint8 images)
        and ``y`` (``(N,)`` labels), optionally ``ids`` and ``class_names``.

    Args:
        source: A path, or an upload as ``(filename, bytes)``.
        label_column: Column of class labels (CSV/Parquet); strings or integers.
        image_column: Column of image paths inside ``images_zip`` (CSV/Parquet).
        images_zip: The ZIP the ``image_column`` paths point into (path or upload).
        name: Dataset name; defaults to the file name without extension.
        limits: Size, ratio and pixel limits applied before anything is decoded.
        image_size: Resize images to this ``(height, width)`` (or square side);
            ``None`` resizes to the most common size.

    Returns:
        The dataset; class names are the sorted unique labels as strings. It records the
        file's name and SHA-256 (``source_file``, ``source_sha256``) for the provenance of
        exports, and a table's feature column names (``feature_names``).

    Raises:
        TypeError: ``source`` is neither a path nor ``(filename, bytes)``.
        DataError: The input is unusable; the message says where and how to fix it.
        ArchiveError: A ZIP is corrupt, too large, or hostile.
    """
    filename, ext = describe(source)
    if not isinstance(source, tuple | list):
        check_path(Path(source))
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"{filename}: unsupported file type {ext or '(no extension)'!r}. Supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)} (a ZIP of class folders, a CSV/Parquet table, "
            "or an NPZ with arrays X and y)."
        )
    if (image_column is None) != (images_zip is None):
        raise ConfigError(
            "image_column and images_zip go together: image_column names the column of image "
            "paths and images_zip is the ZIP they point into; pass both or neither."
        )
    if image_column is not None and ext not in _TABULAR:
        raise ConfigError(f"image_column applies to CSV/Parquet tables, not to {ext} files.")
    data = read_bytes(source, filename, limits)
    name = name or PurePath(filename).stem
    dataset = _parse(data, filename=filename, ext=ext, name=name, label_column=label_column,
                     image_column=image_column, images_zip=images_zip, limits=limits, image_size=image_size)
    return dataclasses.replace(dataset, source_file=PurePath(filename).name,
                               source_sha256=hashlib.sha256(data).hexdigest())


def _parse(
    data: bytes,
    *,
    filename: str,
    ext: str,
    name: str,
    label_column: str,
    image_column: str | None,
    images_zip: Source | None,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None,
) -> Dataset:
    """The dataset in ``data`` by its file type (arguments as :func:`load_dataset`'s)."""
    if ext == ".zip":
        return load_image_folder_zip(
            data, archive_name=filename, name=name, limits=limits, image_size=image_size
        )
    if ext == ".npz":
        return from_npz(data, filename=filename, name=name, limits=limits)
    frame = read_table(data, filename=filename, ext=ext, limits=limits)
    return from_frame(
        frame,
        filename=filename,
        name=name,
        label_column=label_column,
        image_column=image_column,
        images_zip=images_zip,
        limits=limits,
        image_size=image_size,
        line_offset=2 if ext == ".csv" else None,
    )
