"""What a load may read (:class:`LoadLimits`) and the one-line way errors list what broke them.

The limits live apart from the readers so that the archive checks, the image
decoder and the table readers share them without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from core.errors import ConfigError, one_line

__all__ = ["LoadLimits", "RowRef", "column_list", "listing", "one_line", "quoted", "row_ref", "row_sources"]

_SHOW = 10  # how many offending items an error message names
RowRef = Callable[[np.ndarray], str]  # describes 0-based row indices for messages


@dataclass(frozen=True)
class LoadLimits:
    """Upper bounds on what a load may read; each exists to stop a hostile or mistaken input.

    Every image limit is checked from the image headers, before any image is
    decoded; images are then decoded one at a time straight into the stored
    stack, so the memory a load takes is about the stack plus one decoded image.

    Attributes:
        max_upload_bytes: Largest input file (CSV, Parquet, NPZ or ZIP) accepted.
        max_uncompressed_bytes: Largest total of a ZIP's declared member sizes.
        max_ratio: Largest compression ratio (uncompressed / compressed) of a ZIP
            or of any member over 1 MiB; zip bombs have ratios in the thousands.
        max_image_pixels: Largest width x height of one image (the most one decode holds).
        max_decoded_pixels: Largest total width x height of all the images of one
            load (bounds the decoding time; memory is bounded by the other limits).
        max_total_pixels: Largest stored image stack, in pixel values (N x H x W x C).
        max_image_side: Longest side of the stored images: a most common size above
            it is scaled down to fit, keeping the aspect ratio (an explicit
            ``image_size`` overrides it).
        max_feature_values: Largest feature table (rows x columns of a CSV or Parquet
            file, or of an NPZ's 2-D ``X``, checked from its header).
        max_files: Largest number of members in a ZIP.
        min_classes: Fewest classes a file must hold: 2 for a dataset to curate (selection and
            mislabel detection compare classes), 1 for a clean validation set, whose classes are
            the pool's (:func:`core.data.validation.load_validation`).
    """

    max_upload_bytes: int = 2 << 30  # 2 GiB: far above Streamlit's 200 MB default upload cap
    max_uncompressed_bytes: int = 8 << 30  # 8 GiB of declared content
    max_ratio: float = 200.0  # PNG/JPEG barely compress; plain BMPs rarely pass 50
    max_image_pixels: int = 50_000_000  # ~7000 x 7000 (a 48 MP photo); below PIL's own 89 M warning
    max_decoded_pixels: int = 5_000_000_000  # ~5000 photos of 1 MP: a minute or two of decoding
    max_total_pixels: int = 1_500_000_000  # 1.5 GB of uint8: CIFAR-10 (50k x 32x32x3) is 154 M
    max_image_side: int = 256  # stored side; every backbone looks at 224 px or less
    max_feature_values: int = 100_000_000  # 400 MB as float32: 1 M rows x 100 features
    max_files: int = 500_000  # members (files and folders) in one ZIP
    min_classes: int = 2

    def __post_init__(self) -> None:
        for field_name in (
            "max_upload_bytes",
            "max_uncompressed_bytes",
            "max_image_pixels",
            "max_decoded_pixels",
            "max_total_pixels",
            "max_image_side",
            "max_feature_values",
            "max_files",
        ):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"LoadLimits.{field_name} must be a positive int; got {value!r}.")
        if isinstance(self.min_classes, bool) or self.min_classes not in (1, 2):
            raise ConfigError(f"LoadLimits.min_classes must be 1 or 2; got {self.min_classes!r}.")
        if not self.max_ratio > 1:
            raise ConfigError(f"LoadLimits.max_ratio must be > 1; got {self.max_ratio!r}.")


def listing(items: Sequence[str], *, quote: bool = True, sep: str = ", ", show: int = _SHOW) -> str:
    """The first few items of a list and how many more there are, on one line.

    Error messages name what is wrong, but a list of 5,000 bad members must not
    become a 5,000-line message.
    """
    shown = sep.join(quoted(i) if quote else one_line(str(i)) for i in items[:show])
    more = len(items) - show
    return shown + (f" and {more} more" if more > 0 else "")


def quoted(value: object, *, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a 200 KB cell or name must not fill the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def column_list(columns: Sequence[object]) -> str:
    """The first 20 column names, quoted (a table may have thousands)."""
    return listing(list(columns), show=20)


def row_sources(filename: str, n: int) -> np.ndarray:
    """``(n,)`` sources ``name.csv:row 1``... (file name without its folder)."""
    base = PurePath(filename).name
    return np.array([f"{base}:row {i + 1}" for i in range(n)], dtype=str)


def row_ref(line_offset: int | None) -> RowRef:
    """Describe rows for messages: 1-based data rows, plus file lines when ``line_offset`` is set."""
    return lambda idx: _rows(idx, line_offset)


def _rows(idx: np.ndarray, line_offset: int | None) -> str:
    """Describe 0-based row indices as 1-based data rows (and file lines for CSV)."""
    idx = np.asarray(idx).ravel()
    parts = []
    for i in idx[:_SHOW]:
        line = f" (line {int(i) + line_offset})" if line_offset else ""
        parts.append(f"{int(i) + 1}{line}")
    more = f" and {len(idx) - _SHOW} more" if len(idx) > _SHOW else ""
    return f"row{'s' if len(idx) > 1 else ''} {', '.join(parts)}{more}"
