"""Tables into datasets: CSV/Parquet feature tables (or image-path columns), and their checks.

The ZIP-of-class-folders path lives in :mod:`core.data.archive`, NPZ arrays in
:mod:`core.data.npz` (which shares the label, id and feature checks here), and
:mod:`core.data.loaders` dispatches by file type. Every bad input raises a
:class:`~core.errors.DataError` naming the file, the rows or columns, and the fix.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections import Counter
from pathlib import PurePath

import numpy as np
import pandas as pd

from core.data.archive import normalize_member, open_archive
from core.data.dataset import Dataset
from core.data.images import decode_images
from core.data.limits import LoadLimits, RowRef, column_list, listing, one_line, quoted, row_ref, row_sources
from core.data.sources import Source, describe, read_bytes
from core.errors import ArchiveError, DataError

__all__ = [
    "EXPORT_ONLY_COLUMNS",
    "LabelColumnError",
    "check_class_count",
    "encode_labels",
    "format_name",
    "from_frame",
    "ids_from_column",
    "numeric_features",
    "read_table",
]

_LABEL_GUESSES = ("label", "labels", "class", "classes", "target", "y", "category")


class LabelColumnError(DataError):
    """The label column is missing, or a column that is not a feature may be the label.

    The message says which column to choose, in words for every reader (the app's
    Label column box, the Python API's ``label_column``); the command line adds its
    flag, ``--label-column``.

    The loaders write the box's name as :data:`ROLE`, a placeholder, so that a file with a
    box of its own (the validation set's label column) is named by :meth:`for_role`
    without rewriting the words around it.

    Attributes:
        guess: The column that most likely holds the labels, or ``None``.
    """

    ROLE = "\x00role\x00"  # where the message names the box to set (no file or column holds a NUL)

    def __init__(self, message: str, *, guess: str | None = None, role: str = "label column") -> None:
        super().__init__(message.replace(self.ROLE, role))
        self.template, self.guess = message, guess

    def for_role(self, role: str) -> LabelColumnError:
        """The same error naming ``role`` (e.g. "validation set's label column") as the box to set."""
        return LabelColumnError(self.template, guess=self.guess, role=role)


#: Columns an export (core.export) writes besides ``id``, ``label`` and the features. A table
#: that carries ``original_label`` and ``decision`` is one of our exports, and these columns are
#: provenance, not features, when it is loaded again.
EXPORT_ONLY_COLUMNS = (
    "original_label",
    "selected",
    "value",
    "mislabel_score",
    "flagged",
    "decision",
    "reviewer",
    "decided_at",
    "split",
    "suggested_label",
    "file",
)


def read_table(data: bytes, *, filename: str, ext: str, limits: LoadLimits = LoadLimits()) -> pd.DataFrame:
    """Parse CSV or Parquet bytes into a frame with unique string column names and at least one row.

    Duplicate column names are refused, read from the raw header: pandas would rename
    a second ``label`` to ``label.1`` and make it a feature that leaks the label.
    """
    if ext == ".csv":
        if not data.strip():
            raise DataError(f"{filename} is empty. Expected a header row and one row per example.")
        try:
            frame = pd.read_csv(io.BytesIO(data), encoding="utf-8-sig")
        except pd.errors.EmptyDataError as e:
            raise DataError(f"{filename} is empty: no header row was found.") from e
        except UnicodeDecodeError as e:
            raise DataError(f"{filename} is not UTF-8 text ({one_line(e)}). Save it as UTF-8 CSV.") from e
        except (pd.errors.ParserError, ValueError) as e:
            raise DataError(
                f"{filename} could not be parsed as CSV ({one_line(e)}). Check the delimiter is a comma "
                "and every row has as many fields as the header."
            ) from e
        _check_unique_columns(_csv_header(data), filename=filename)
    else:
        _check_unique_columns(_parquet_columns(data), filename=filename)
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as e:  # pyarrow raises many types (ArrowInvalid, OSError, ...)
            raise DataError(
                f"{filename} is not a readable Parquet file ({type(e).__name__}: {one_line(e)}). "
                "Write it again with pandas.DataFrame.to_parquet."
            ) from e
    frame.columns = [str(c) for c in frame.columns]
    _check_unique_columns(list(frame.columns), filename=filename)
    if len(frame) == 0:
        raise DataError(
            f"{filename} has columns {column_list(frame.columns)} but no data rows. Add one row per example."
        )
    if frame.size > limits.max_feature_values:
        raise ArchiveError(
            f"{filename} holds {frame.size:,} values ({len(frame):,} rows x {frame.shape[1]:,} columns), "
            f"over LoadLimits.max_feature_values ({limits.max_feature_values:,}). Load fewer rows or "
            "columns, or raise the limit."
        )
    return frame


def _csv_header(data: bytes) -> list[str]:
    """The column names of a CSV's first non-blank record, as written (``[]`` if unreadable)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    try:
        return next((row for row in csv.reader(text) if row), [])
    except (UnicodeDecodeError, csv.Error):
        return []  # pandas read it, so it is a header the csv module cannot; pandas' names stand


def _parquet_columns(data: bytes) -> list[str]:
    """The column names in a Parquet file's schema (``[]`` if it has none we can read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return [str(n) for n in pq.read_schema(io.BytesIO(data)).names]
    except (pa.ArrowException, OSError, ValueError):
        return []  # read_parquet below reports the file as unreadable


def _check_unique_columns(names: list[str], *, filename: str) -> None:
    """Raise a DataError naming every column name that appears more than once."""
    counts = Counter(names)
    dups = [f"{quoted(n)} ({k} times)" for n, k in counts.items() if k > 1]
    if dups:
        raise DataError(
            f"{filename} has duplicate column names: {listing(dups, quote=False)}. Every column needs a "
            "unique name (a second copy would be loaded as a feature, and a copied label leaks into the "
            "features); rename or drop the copies."
        )


def from_frame(
    frame: pd.DataFrame,
    *,
    filename: str,
    name: str,
    label_column: str,
    image_column: str | None,
    images_zip: Source | None,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None,
    line_offset: int | None,
) -> Dataset:
    """Build a dataset from a table of features (or image paths) and labels."""

    rows = row_ref(line_offset)
    columns = list(frame.columns)
    if label_column not in columns:
        guess = _guess_label(label_column, columns)
        role = LabelColumnError.ROLE
        hint = (f"Did you mean {guess!r}? Choose {guess!r} as the {role}." if guess is not None
                else f"Choose the column that holds the classes as the {role}.")
        raise LabelColumnError(
            f"{filename} has no label column {label_column!r}. Columns present: {column_list(columns)}. "
            f"{hint}", guess=guess,
        )
    labels, class_names = encode_labels(frame[label_column], where=filename, rows=rows,
                                        min_classes=limits.min_classes)
    has_id = "id" in columns and label_column != "id"
    if has_id:
        ids = ids_from_column(frame["id"], where=filename, rows=rows)
    if image_column is not None:
        if image_column not in columns:
            raise DataError(
                f"{filename} has no image column {image_column!r}. Columns present: "
                f"{column_list(columns)}. Pass the column that holds the image paths."
            )
        images, paths, note = _images_from_column(
            frame[image_column],
            images_zip,
            where=filename,
            rows=rows,
            limits=limits,
            image_size=image_size,
        )
        if not has_id:
            ids = ids_from_column(pd.Series(paths), where=f"{filename} column {image_column!r}", rows=rows)
        return Dataset(
            name=name,
            ids=ids,
            labels=labels,
            class_names=class_names,
            images=images,
            sources=np.array(paths, dtype=str),
            origin=f"{format_name(filename)}:{filename} (label_column={label_column!r}, images from {note})",
        )
    feature_cols = [c for c in columns if c != label_column and not (has_id and c == "id")]
    if {"original_label", "decision"} <= set(columns):  # an export of ours: keep the features only
        feature_cols = [c for c in feature_cols if c not in EXPORT_ONLY_COLUMNS]
    if not feature_cols:
        raise DataError(
            f"{filename} has no feature columns besides the label{' and id' if has_id else ''} "
            f"(columns: {column_list(columns)}). Add numeric feature columns, or pass image_column "
            "and images_zip if the table lists image files."
        )
    features = numeric_features(frame[feature_cols], where=filename, rows=rows)
    if not has_id:
        ids = np.array([f"row {i + 1}" for i in range(len(frame))], dtype=str)
    return Dataset(
        name=name,
        ids=ids,
        labels=labels,
        class_names=class_names,
        features=features,
        feature_names=tuple(feature_cols),
        sources=row_sources(filename, len(frame)),
        origin=(
            f"{format_name(filename)}:{filename} (label_column={label_column!r}, "
            f"{len(feature_cols)} feature columns)"
        ),
    )


def _images_from_column(
    column: pd.Series,
    images_zip: Source,
    *,
    where: str,
    rows: RowRef,
    limits: LoadLimits,
    image_size: int | tuple[int, int] | None,
) -> tuple[np.ndarray, list[str], str]:
    """Decode the images a column of paths points to inside ``images_zip``."""
    zip_name, ext = describe(images_zip)
    if ext != ".zip":
        raise DataError(f"images_zip must be a .zip file; got {zip_name!r}.")
    archive = open_archive(read_bytes(images_zip, zip_name, limits), where=zip_name, limits=limits)
    empty = np.flatnonzero(column.isna().to_numpy())
    if len(empty):
        raise DataError(f"{where}: column {column.name!r} has no image path at {rows(empty)}.")
    tops = {p.split("/", 1)[0] for p in archive.files}
    prefix = f"{tops.pop()}/" if len(tops) == 1 else ""
    paths, missing, escaping = [], [], []
    for i, raw in enumerate(column.astype(str)):
        path = normalize_member(raw.strip())
        if path is None:
            escaping.append(f"row {i + 1}: {quoted(raw)}")
        elif path in archive.files or prefix + path in archive.files:
            paths.append(path if path in archive.files else prefix + path)
        else:
            missing.append(f"row {i + 1}: {quoted(raw)}")
    if escaping:
        raise ArchiveError(
            f"{where}: image paths escape the archive ({_head(escaping)}). Use paths relative "
            f"to the root of {zip_name}."
        )
    if missing:
        sample = ", ".join(repr(p) for p in sorted(archive.files)[:3])
        raise ArchiveError(
            f"{where}: {len(missing)} image paths are not in {zip_name}: {_head(missing)}. "
            f"Paths are relative to the archive root (it holds e.g. {sample})."
        )
    images, note = decode_images(archive, paths, limits=limits, image_size=image_size)
    return images, paths, f"{zip_name}, {note}"


def encode_labels(
    column: pd.Series, *, where: str, rows: RowRef, min_classes: int = 2
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map labels (strings or integers) to indices into their sorted unique values."""
    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        raise DataError(
            f"{where}: label column {column.name!r} is empty at {rows(missing)}. "
            "Give every example a label or drop those rows."
        )
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        frac = np.flatnonzero(~np.isfinite(values) | (values != np.round(values)))
        if len(frac):
            raise DataError(
                f"{where}: label column {column.name!r} holds non-integer numbers at {rows(frac)} "
                f"(e.g. {values[frac[0]]!r}). Labels must be class names or integer class ids; "
                "is this a regression target or the wrong column?"
            )
        uniq, labels = np.unique(values.astype(np.int64), return_inverse=True)
        names = tuple(str(int(u)) for u in uniq)
    else:
        uniq, labels = np.unique(column.astype(str).to_numpy(), return_inverse=True)
        names = tuple(str(u) for u in uniq)
    labels = labels.astype(np.int64).ravel()
    check_class_count(labels, names, where=where, minimum=min_classes)
    return labels, names


def check_class_count(labels: np.ndarray, names: tuple[str, ...], *, where: str, minimum: int = 2) -> None:
    """Raise a DataError naming the file when fewer than ``minimum`` classes are present (1: never).

    A clean validation set may hold one class (``LoadLimits.min_classes``); a dataset to curate may not.
    """
    present = np.unique(labels)
    if len(present) < minimum:
        raise DataError(
            f"{where}: every example has the same label ({quoted(names[int(present[0])])}). "
            "Selection and mislabel detection need at least two classes; check the label column."
        )


def ids_from_column(column: pd.Series, *, where: str, rows: RowRef) -> np.ndarray:
    """Use a column as example ids: present, and unique."""
    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        raise DataError(f"{where}: the id column is empty at {rows(missing)}. Give every row an id.")
    ids = column.astype(str).to_numpy().astype(str)
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = [
            f"{quoted(str(uniq[j]))} at {rows(np.flatnonzero(inverse == j))}"
            for j in np.flatnonzero(counts > 1)[:5]
        ]
        raise DataError(
            f"{where}: duplicate ids: {'; '.join(dup)}. Every example needs a unique id; "
            "remove the duplicate rows or give them distinct ids."
        )
    return ids


def numeric_features(frame: pd.DataFrame, *, where: str, rows: RowRef) -> np.ndarray:
    """Return ``(N, D)`` float32 features, naming non-numeric or non-finite columns and rows."""
    bad = []
    for col in frame.columns:
        s = frame[col]
        if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            continue
        parsed = pd.to_numeric(s, errors="coerce")
        first = np.flatnonzero((parsed.isna() & s.notna()).to_numpy())
        example = f" ({rows(first[:1])}: {quoted(s.iloc[first[0]])})" if len(first) else ""
        bad.append(f"{quoted(col)}{example}")
    if bad:
        raise LabelColumnError(
            f"{where}: feature columns must be numeric; not numeric: {_head(bad)}. Drop or encode "
            f"these columns, or choose one of them as the {LabelColumnError.ROLE} if it holds the classes."
        )
    values = frame.to_numpy(dtype=np.float64)
    with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
        features = values.astype(np.float32)
    finite = np.isfinite(features)
    if not finite.all():
        problems = []
        for j in np.flatnonzero(~finite.all(axis=0)):
            nan = np.isnan(values[:, j])
            found = [
                f"{kind} at {rows(np.flatnonzero(mask))}"
                for kind, mask in (("NaN/empty", nan), ("infinite or too large", ~finite[:, j] & ~nan))
                if mask.any()
            ]
            problems.append(f"{quoted(frame.columns[j])} ({'; '.join(found)})")
        raise DataError(
            f"{where}: missing or infinite values in {len(problems)} feature column(s): "
            f"{_head(problems)}. Fill or drop those rows or columns (e.g. DataFrame.dropna()) "
            "and load again."
        )
    return features


def _guess_label(label_column: str, columns: list[str]) -> str | None:
    """The column most likely meant as the label column, or ``None``."""
    lowered = {c.strip().lower(): c for c in columns}
    guess = lowered.get(label_column.strip().lower())
    if guess is None:
        guess = next((lowered[g] for g in _LABEL_GUESSES if g in lowered), None)
    if guess is None:
        close = difflib.get_close_matches(label_column, columns, n=1, cutoff=0.6)
        guess = close[0] if close else None
    return guess


def format_name(filename: str) -> str:
    """Format tag of a file for provenance: ``csv``, ``parquet``..."""
    return PurePath(filename).suffix.lstrip(".").lower()


def _head(items: list[str]) -> str:
    """The first few items joined by ``; `` and how many more (items are built, not quoted)."""
    return listing(items, quote=False, sep="; ")
