"""Plain-array backbones (standardised features and pixels) and batched image inference."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import DataError
from core.progress import Reporter

__all__ = ["batched_inference", "pixels", "standardize", "to_tensor"]


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
        scale = max_side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        pooled = []
        for start in range(0, n, 1024):
            x = torch.from_numpy(images[start : start + 1024]).permute(0, 3, 1, 2).float()
            pooled.append(F.adaptive_avg_pool2d(x, size).permute(0, 2, 3, 1).reshape(len(x), -1))
        return standardize(torch.cat(pooled).numpy())
    return standardize(images.reshape(n, h * w * c))


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
    with torch.no_grad():
        for s in range(0, n, batch_size):
            reporter.check_cancelled()
            out.append(forward(images[s : s + batch_size]).float().cpu().numpy())
            done = min(s + batch_size, n)
            reporter.report("embedding", start + (1 - start) * done / n, f"embedded {done}/{n}")
    return np.concatenate(out).astype(np.float32)
