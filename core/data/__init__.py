"""Dataset import: one loader for ZIP/CSV/Parquet/NPZ, built-in demos, torchvision sets, summaries.

Every loader returns the one :class:`Dataset` type; bad input raises
:class:`~core.errors.DataError` (or :class:`~core.errors.ArchiveError`) with a
message that says what was wrong, where, and how to fix it.
"""

from __future__ import annotations

from core.data.archive import IMAGE_EXTENSIONS, LoadLimits
from core.data.dataset import Dataset, Split, make_split
from core.data.demos import DEMOS, flip_labels, load_demo
from core.data.loaders import SUPPORTED_EXTENSIONS, Source, load_dataset
from core.data.summary import DatasetSummary, summarize
from core.data.torchvision_sets import TORCHVISION_SETS, load_torchvision

__all__ = [
    "DEMOS",
    "IMAGE_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "TORCHVISION_SETS",
    "Dataset",
    "DatasetSummary",
    "LoadLimits",
    "Source",
    "Split",
    "load_dataset",
    "load_demo",
    "flip_labels",
    "load_torchvision",
    "make_split",
    "summarize",
]
