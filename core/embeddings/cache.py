"""On-disk cache of embeddings: one ``.npy`` per (data, backbone, settings), written atomically, mapped."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from core.data.dataset import Dataset
from core.embeddings.config import EmbedConfig

__all__ = ["cache_key", "cache_path", "file_digest", "load_cached"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when a backbone's output changes, so old cache files are not reused
MMAP_MIN_BYTES = 1 << 20  # cache files this large are memory-mapped on load; smaller ones read whole
FINITE_CHECK_ROWS = 1 << 16  # rows per block of the finiteness check of a loaded cache


def file_digest(path: Path) -> str:
    """Content hash of a file (memoised on path, size and mtime, so an edited file is re-hashed)."""
    st = path.stat()
    return _digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def cache_key(
    dataset: Dataset,
    backbone: str,
    cfg: EmbedConfig,
    *,
    seed: int,
    weights: Path | None,
    train_rows: np.ndarray | None = None,
) -> str:
    """Hash of what the embedding depends on besides the examples (hashed in :func:`cache_path`).

    ``small_cnn`` adds the labels, class count, seed and its settings (it trains
    on them); ``resnet18`` the weights file's content and the image size.
    """
    parts: dict[str, Any] = {"v": CACHE_VERSION, "backbone": backbone}
    if backbone == "pixels":
        parts["max_side"] = cfg.pixels_max_side
    elif backbone == "small_cnn":
        parts["cfg"] = {k: v for k, v in asdict(cfg).items() if k.startswith("cnn_")}
        parts["batch"] = cfg.batch_size
        parts["seed"] = seed
        parts["n_classes"] = dataset.n_classes
        parts["labels"] = hashlib.sha256(dataset.labels.astype(np.int64).tobytes()).hexdigest()
        if train_rows is not None:
            parts["train_rows"] = hashlib.sha256(train_rows.astype(np.int64).tobytes()).hexdigest()
    elif backbone == "resnet18" and weights is not None:
        parts["weights"] = file_digest(weights)
        parts["size"] = cfg.resnet_image_size
    return hashlib.sha256(repr(sorted(parts.items())).encode()).hexdigest()[:16]


def cache_path(cache_dir: str | Path | None, backbone: str, dataset: Dataset, key: str) -> Path | None:
    """``<cache_dir>/<backbone>-<content hash>-<key>.npy``, or ``None`` when caching is off."""
    if cache_dir is None:
        return None
    return Path(cache_dir) / f"{backbone}-{dataset.content_hash()}-{key}.npy"


def load_cached(path: Path, n: int) -> np.ndarray | None:
    """The cached ``(n, D)`` float32 matrix, or ``None`` if missing or damaged (then recompute).

    A file of at least :data:`MMAP_MIN_BYTES` comes back memory-mapped: a read-only
    ``ndarray`` view of the map, paged in as it is read, so embeddings larger than
    memory can be selected from (callers index rows out of it, which copies; writing
    into it raises ``ValueError``). The finiteness check streams through it in blocks
    of rows, so it never holds more than a block in memory. Smaller files are read whole.
    """
    if not path.is_file():
        return None
    try:
        mapped = path.stat().st_size >= MMAP_MIN_BYTES
        arr = np.asarray(np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False))
    except (OSError, ValueError, EOFError) as e:
        logger.warning("Ignoring unreadable embedding cache %s: %s", path, e)
        return None
    if arr.dtype != np.float32 or arr.ndim != 2 or arr.shape[0] != n or not _all_finite(arr):
        logger.warning("Ignoring embedding cache %s (dtype %s, shape %s)", path, arr.dtype, arr.shape)
        return None
    return arr


def _all_finite(arr: np.ndarray) -> bool:
    """``np.isfinite(arr).all()`` for ``(N, D)``, :data:`FINITE_CHECK_ROWS` rows at a time."""
    step = FINITE_CHECK_ROWS
    return all(bool(np.isfinite(arr[i:i + step]).all()) for i in range(0, len(arr), step))
