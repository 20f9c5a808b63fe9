"""Frozen embeddings r(x) of a dataset (standardised features, pixels, a small CNN, ResNet-18), cached.

Every backbone maps a :class:`~core.data.dataset.Dataset` to an ``(N, D)``
float32 matrix, rows in dataset order, that selection and mislabel detection
work on:

- ``"standardize"`` (tabular): each column minus its mean over its standard
  deviation; constant columns become 0.
- ``"pixels"`` (images): pixels flattened (``H * W * C``) and standardised like
  ``"standardize"``. Images larger than ``EmbedConfig.pixels_max_side`` (32) on a
  side are first average-pooled to fit, so ``D <= 32 * 32 * 3``.
- ``"small_cnn"`` (images): a small CNN trained for ``cnn_epochs`` (10) on the
  ``train_rows`` examples (all by default; the pipeline passes the training
  split, so validation and test labels never leak in) with their *given*
  labels, then its 128-d penultimate layer of every example. It may learn a
  little of the label noise (few epochs, label smoothing and weight decay keep
  that small). Offline; repeatable for a ``seed`` on the CPU.
- ``"resnet18"`` (images): torchvision's ResNet-18 with ImageNet weights, the
  512-d pooled penultimate layer, eval mode. Images are scaled to [0, 1], resized
  whole (no crop) to ``EmbedConfig.resnet_image_size`` squared (224, what the
  weights were trained at; a smaller size is faster on a CPU but less faithful),
  grey replicated to 3 channels and ImageNet-normalised.

``backbone="auto"`` (:func:`resolve_backbone`): tabular -> ``standardize``.
Images -> ``resnet18`` when ``weights_path`` is given; else ``pixels`` when
``H * W <= 16 * 16`` (8x8 digits: raw pixels already work well there and
ImageNet features do not); else ``resnet18`` when the ImageNet weights are in
the torch hub cache (or ``allow_download`` is set; a failed download then falls
back with a warning); else ``small_cnn``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from core.data.dataset import Dataset
from core.device import resolve_device
from core.embeddings.batches import pixels, standardize
from core.embeddings.cache import cache_key, cache_path, load_cached
from core.embeddings.cnn import small_cnn
from core.embeddings.config import BACKBONES, IMAGE_BACKBONES, TINY_PIXELS, EmbedConfig
from core.embeddings.resnet import locate_weights, resnet18, resnet18_weights_file
from core.errors import ConfigError, DataError
from core.files import atomic_write
from core.progress import NullReporter, Reporter

__all__ = [
    "BACKBONES",
    "EmbedConfig",
    "available_backbones",
    "embed",
    "resnet18_weights_file",
    "resolve_backbone",
]

logger = logging.getLogger(__name__)


def available_backbones() -> dict[str, str]:
    """Backbone names, ``"auto"`` first, mapped to a one-line description (for the UI and CLI)."""
    return {"auto": "Chosen from the data (see core.embeddings.resolve_backbone).", **BACKBONES}


def resolve_backbone(
    dataset: Dataset,
    *,
    backbone: str = "auto",
    weights_path: str | Path | None = None,
    allow_download: bool = False,
) -> str:
    """The backbone :func:`embed` uses for ``dataset``: resolves ``"auto"`` and checks the data kind.

    ``"auto"``: tabular -> ``standardize``. Images -> ``resnet18`` if
    ``weights_path`` is given; else ``pixels`` if ``H * W <= 16 * 16``; else
    ``resnet18`` if the ImageNet weights are in the torch hub cache or
    ``allow_download`` is set; else ``small_cnn``.

    Raises:
        TypeError: ``dataset`` is not a Dataset or ``backbone`` not a string.
        ConfigError: unknown backbone, or one that does not fit the data kind.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"Expected a core.data.Dataset, got {type(dataset).__name__}.")
    if not isinstance(backbone, str):
        raise TypeError(f"backbone must be a str, got {type(backbone).__name__}.")
    if backbone != "auto" and backbone not in BACKBONES:
        raise ConfigError(f"Unknown backbone {backbone!r}; expected one of {list(available_backbones())}.")
    if dataset.kind == "tabular":
        if backbone not in ("auto", "standardize"):
            raise ConfigError(
                f"Backbone {backbone!r} needs images, but {dataset.name!r} is tabular; "
                "use 'standardize' or 'auto'."
            )
        return "standardize"
    if backbone == "standardize":
        raise ConfigError(
            f"Backbone 'standardize' is for tabular features, but {dataset.name!r} holds images; "
            f"use one of {list(IMAGE_BACKBONES)} or 'auto'."
        )
    if backbone != "auto":
        return backbone
    h, w, _ = dataset.shape
    if weights_path is not None:
        return "resnet18"
    if h * w <= TINY_PIXELS:
        return "pixels"
    if allow_download or resnet18_weights_file().is_file():
        return "resnet18"
    return "small_cnn"


def embed(
    dataset: Dataset,
    *,
    backbone: str = "auto",
    cache_dir: str | Path | None = None,
    device: str = "auto",
    weights_path: str | Path | None = None,
    allow_download: bool = False,
    reporter: Reporter | None = None,
    seed: int = 0,
    config: EmbedConfig | None = None,
    train_rows: np.ndarray | None = None,
) -> np.ndarray:
    """Embed every example of ``dataset`` into an ``(N, D)`` float32 matrix.

    Args:
        dataset: Tabular or image data.
        backbone: ``"auto"`` or a name in :data:`BACKBONES` (see the module docstring).
        cache_dir: Folder of cached ``.npy`` embeddings keyed by the data's content
            hash, the backbone and its settings (for ``small_cnn`` also the labels
            and ``seed``; for ``resnet18`` the weights file's content). ``None``: no cache.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, for the neural backbones.
        weights_path: A ResNet-18 ``state_dict`` file (any ``fc.*`` head is ignored).
            Default: ``resnet18_weights_file()`` in the torch hub cache.
        allow_download: Download the ImageNet weights into the torch hub cache if missing.
        reporter: Receives ``report("embedding", fraction, message)``; checked for
            cancellation between batches.
        seed: Seed of the ``small_cnn`` initialisation and shuffles.
        config: Backbone settings; default ``EmbedConfig()``.
        train_rows: Indices of the examples whose labels ``small_cnn`` may learn from
            (the training split, so that validation and test labels never leak into
            the embedding); ``None``: all examples. Ignored by the other backbones.

    Returns:
        ``(N, D)`` float32 embeddings, rows in dataset order. A cache hit of 1 MiB or more
        is a read-only memory-mapped view (:func:`~core.embeddings.cache.load_cached`):
        index rows out of it (a copy) rather than writing into it.

    Raises:
        ConfigError: bad backbone, device or config; ResNet-18 weights missing
            (with downloads off), unreadable or not a ResNet-18's.
        DataError: non-finite tabular features.
        JobCancelled: the reporter asked to stop.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"Expected a core.data.Dataset, got {type(dataset).__name__}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}.")
    cfg = config if config is not None else EmbedConfig()
    if not isinstance(cfg, EmbedConfig):
        raise TypeError(f"config must be an EmbedConfig, got {type(cfg).__name__}.")
    if train_rows is not None:
        train_rows = np.unique(np.asarray(train_rows, dtype=np.int64))
        if len(train_rows) < 2 or train_rows[0] < 0 or train_rows[-1] >= dataset.n:
            raise ConfigError(
                f"train_rows must hold at least 2 indices in 0..{dataset.n - 1}; got {len(train_rows)}."
            )
    rep = reporter if reporter is not None else NullReporter()
    torch_device = resolve_device(device)
    name = resolve_backbone(
        dataset, backbone=backbone, weights_path=weights_path, allow_download=allow_download
    )
    weights = None
    if name == "resnet18":
        try:
            weights = locate_weights(weights_path, allow_download)
        except ConfigError as e:
            if backbone != "auto" or weights_path is not None:
                raise
            logger.warning("%s 'auto' falls back to small_cnn.", e)
            name = "small_cnn"
    path = cache_path(
        cache_dir,
        name,
        dataset,
        cache_key(dataset, name, cfg, seed=int(seed), weights=weights, train_rows=train_rows),
    )
    if path is not None and (hit := load_cached(path, dataset.n)) is not None:
        rep.report("embedding", 1.0, f"{name}: loaded from cache")
        return hit
    rep.report("embedding", 0.0, f"{name}: embedding {dataset.n} examples")
    out = _compute_embedding(dataset, name, torch_device, rep, int(seed), cfg, weights, train_rows)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if out.ndim != 2 or out.shape[0] != dataset.n or not np.isfinite(out).all():
        raise DataError(f"Backbone {name!r} produced invalid embeddings of shape {out.shape}.")
    if path is not None:
        try:
            atomic_write(path, lambda f: np.save(f, out, allow_pickle=False))
        except OSError as e:  # a cache that cannot be written must not lose the result
            logger.warning("Could not write the embedding cache %s: %s", path, e)
    rep.report("embedding", 1.0, f"{name}: {out.shape[1]}-d embeddings ready")
    return out


def _compute_embedding(
    dataset: Dataset,
    name: str,
    device: torch.device,
    reporter: Reporter,
    seed: int,
    cfg: EmbedConfig,
    weights: Path | None,
    train_rows: np.ndarray | None,
) -> np.ndarray:
    """Run the resolved backbone ``name`` on the whole dataset (no cache)."""
    if name == "standardize":
        return standardize(dataset.features)
    if name == "pixels":
        return pixels(dataset.images, cfg.pixels_max_side)
    if name == "small_cnn":
        return small_cnn(dataset, device, reporter, seed, cfg, train_rows=train_rows)
    return resnet18(dataset.images, weights, device, reporter, cfg)
