"""MNIST, FashionMNIST and CIFAR10 from files on disk (downloading only when asked explicitly)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from core.data.dataset import Dataset
from core.errors import ConfigError, DataError

__all__ = ["TORCHVISION_SETS", "load_torchvision"]

logger = logging.getLogger(__name__)

TORCHVISION_SETS: dict[str, str] = {
    "MNIST": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "FashionMNIST": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte",
    "CIFAR10": "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
}
"""Supported names -> the files expected under ``root``."""


def load_torchvision(
    name: str,
    root: str | os.PathLike,
    *,
    download: bool = False,
    train: bool = True,
    limit: int | None = None,
) -> Dataset:
    """Load a torchvision dataset whose files are already under ``root``.

    Args:
        name: ``"MNIST"``, ``"FashionMNIST"`` or ``"CIFAR10"`` (case-insensitive).
        root: Folder that holds (or will hold) the dataset files.
        download: Fetch missing files from the internet; never done unless ``True``.
        train: The training split (``True``) or the test split.
        limit: Keep only the first ``limit`` examples (``None`` keeps all).

    Returns:
        Images ``(N, 28, 28, 1)`` or ``(N, 32, 32, 3)`` uint8 with the dataset's class names.

    Raises:
        DataError: Unknown name, or the files are missing and ``download`` is False.
    """
    canonical = {k.lower(): k for k in TORCHVISION_SETS}.get(str(name).lower())
    if canonical is None:
        raise DataError(f"Unknown torchvision dataset {name!r}. Supported: {', '.join(TORCHVISION_SETS)}.")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 2):
        raise ConfigError(f"limit must be None or an int >= 2; got {limit!r}.")
    root = Path(root)
    import torchvision.datasets as tvd  # heavy import, only when asked for

    cls = getattr(tvd, canonical)
    if download:
        logger.info("Downloading %s into %s (download=True).", canonical, root)
    try:
        ds = cls(str(root), train=train, download=bool(download))
    except (RuntimeError, OSError) as e:
        if download:
            raise DataError(
                f"Downloading {canonical} into {root} failed ({e}). Check the internet "
                "connection, or copy the files there by hand."
            ) from e
        if isinstance(e, OSError):
            raise DataError(f"{canonical} files under {root} could not be read ({e}).") from e
        raise DataError(
            f"{canonical} files were not found under {root} (expected "
            f"{root / TORCHVISION_SETS[canonical]}). Nothing is downloaded unless asked: call "
            f"load_torchvision({canonical!r}, {str(root)!r}, download=True) on a machine with "
            "internet access, or copy the files there; or use a built-in demo such as 'digits'."
        ) from e
    except (AssertionError, ValueError, TypeError) as e:  # torchvision's idx reader asserts
        raise DataError(
            f"{canonical} files under {root} are corrupt ({type(e).__name__}: {e}). Delete "
            "them and fetch them again (download=True)."
        ) from e
    data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
    targets = np.asarray(ds.targets, dtype=np.int64)
    if limit is not None:
        data, targets = data[:limit], targets[:limit]
    images = np.ascontiguousarray(data if data.ndim == 4 else data[..., None], dtype=np.uint8)
    split = "train" if train else "test"
    ids = np.array([f"{canonical}/{split}/{i:05d}" for i in range(len(images))], dtype=str)
    limited = f", first {len(images)}" if limit is not None else ""
    return Dataset(
        name=f"{canonical}-{split}",
        ids=ids,
        labels=targets,
        class_names=tuple(str(c) for c in ds.classes),
        images=images,
        origin=f"torchvision:{canonical} ({split} split{limited}, from {root})",
    )
