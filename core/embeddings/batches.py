"""Plain-array backbones (standardised features and pixels) and batched image inference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.data.images import fit_side
from core.errors import DataError
from core.progress import Reporter

__all__ = ["batched_inference", "channel_stats", "pixels", "rows_per_chunk", "standardize", "to_tensor"]

_CHUNK_VALUES = 32 << 20  # pixel values converted to float at once (128 MB as float32, 256 MB as float64)


def standardize(x: np.ndarray) -> np.ndarray:
    """Columns to zero mean and unit variance; constant columns to 0. ``(N, D)`` -> ``(N, D)``.

    Raises:
        DataError: NaN or infinite values.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise DataError(f"{bad} rows hold NaN or infinite features; drop or impute them before embedding.")
    centred = x - x.mean(axis=0)
    std = centred.std(axis=0)
    std[std <= 1e-12 * (1.0 + np.abs(x).max(axis=0))] = np.inf  # constant column -> 0
    return (centred / std).astype(np.float32)


def pixels(images: np.ndarray, max_side: int) -> np.ndarray:
    """Flattened ``(N, H*W*C)``, standardised pixels; images larger than ``max_side`` pooled first."""
    n, h, w, c = images.shape
    if max(h, w) > max_side:
        size = fit_side(h, w, max_side)
        pooled = []
        step = rows_per_chunk(images.shape, 1024)  # a float copy of 1024 large images took GBs
        for start in range(0, n, step):
            x = torch.from_numpy(images[start : start + step]).permute(0, 3, 1, 2).float()
            pooled.append(F.adaptive_avg_pool2d(x, size).permute(0, 2, 3, 1).reshape(len(x), -1))
        return standardize(torch.cat(pooled).numpy())
    return standardize(images.reshape(n, h * w * c))


def rows_per_chunk(shape: tuple[int, ...], most: int) -> int:
    """How many images of ``shape`` = ``(N, H, W, C)`` to convert to float at once: at most ``most``.

    Bounds the float copy of a batch by pixel values rather than by images, so that
    large images take smaller batches.
    """
    per_image = max(1, int(np.prod(shape[1:])))
    return int(max(1, min(most, _CHUNK_VALUES // per_image)))


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of ``(N, H, W, C)`` uint8 images, as ``(C,)`` float64.

    The deviations are summed a chunk of images at a time: ``std`` of the whole
    stack made a float64 copy eight times its size (9.8 GB for a 1.2 GB stack).
    """
    c = images.shape[-1]
    mean = images.reshape(-1, c).mean(axis=0, dtype=np.float64)  # buffered: no float copy
    squares = np.zeros(c)
    step = max(1, rows_per_chunk(images.shape, len(images)) // 4)  # float64: a quarter of the values
    for start in range(0, len(images), step):
        dev = images[start : start + step].reshape(-1, c).astype(np.float64)
        dev -= mean
        squares += np.einsum("ij,ij->j", dev, dev)
    count = max(1, images.size // c)
    return mean, np.sqrt(squares / count)


def to_tensor(batch: np.ndarray, device: torch.device, side: int) -> torch.Tensor:
    """``(B, H, W, C)`` uint8 -> ``(B, C, side, side)`` float in [0, 1] on ``device``.

    Bilinear resize of the whole image (no crop; antialiased when shrinking).
    """
    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
    x = x.permute(0, 3, 1, 2).float() / 255.0
    if tuple(x.shape[-2:]) != (side, side):
        down = max(x.shape[-2:]) > side
        x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=down)
    return x


def batched_inference(
    forward: Callable[[np.ndarray], torch.Tensor],
    images: np.ndarray,
    model: nn.Module,
    reporter: Reporter,
    *,
    batch_size: int,
    start: float = 0.0,
) -> np.ndarray:
    """``forward`` on batches of ``images`` with ``model`` in eval mode, without gradients.

    Reports progress from ``start`` to 1 and checks for cancellation between batches.

    Returns:
        ``(N, D)`` float32.
    """
    model.eval()
    n = len(images)
    out = []
    batch_size = rows_per_chunk(images.shape, batch_size)
    with torch.no_grad():
        for s in range(0, n, batch_size):
            reporter.check_cancelled()
            out.append(forward(images[s : s + batch_size]).float().cpu().numpy())
            done = min(s + batch_size, n)
            reporter.report("embedding", start + (1 - start) * done / n, f"embedded {done}/{n}")
    return np.concatenate(out).astype(np.float32)
