"""Checks of the detector's input at its boundary: features, labels, options, given probabilities.

Kept apart from :mod:`core.mislabel.oof` so that the out-of-fold models read as models;
``oof`` re-exports both checks under their old names.
"""

from __future__ import annotations

import numpy as np

from core.errors import ConfigError, DataError

__all__ = ["validate_inputs", "validate_pred_probs"]


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate_inputs(
    features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, label range and options.

    Returns:
        ``(N, D)`` float64 features and ``(N,)`` int64 labels.

    Raises:
        TypeError: ``n_classes`` or ``folds`` is not an int.
        ConfigError: ``n_classes`` < 2 or ``folds`` < 2.
        DataError: wrong shapes, labels out of range, one class only, NaN/inf features.
    """
    if not _is_int(n_classes):
        raise TypeError(f"n_classes must be an int; got {type(n_classes).__name__}.")
    if not _is_int(folds):
        raise TypeError(f"folds must be an int; got {type(folds).__name__}.")
    if n_classes < 2:
        raise ConfigError(f"n_classes must be at least 2; got {n_classes}.")
    if folds < 2:
        raise ConfigError(
            f"folds must be at least 2 (each point is scored by a model that did not see it); "
            f"got {folds}."
        )
    x = np.asarray(features)
    y = np.asarray(labels)
    if x.ndim != 2:
        raise DataError(f"features must be a 2-D (N, D) array; got shape {x.shape}.")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(
            f"labels must be a 1-D array with one label per row of features ({len(x)} rows); "
            f"got shape {y.shape}."
        )
    if len(x) < 4:
        raise DataError(f"Mislabel detection needs at least 4 examples; got {len(x)}.")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"features must be real numbers; got dtype {x.dtype}.")
    if not np.issubdtype(y.dtype, np.integer):
        whole = np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y))
        if not (whole and np.all(y == np.round(y))):
            raise DataError(f"labels must be integer class indices; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0 or y.max() >= n_classes:
        raise DataError(
            f"labels must lie in [0, {n_classes - 1}] for n_classes={n_classes}; got values "
            f"from {y.min()} to {y.max()}. Pass the number of classes as n_classes."
        )
    if len(np.unique(y)) < 2:
        raise DataError(
            "Only one class is present; mislabel detection needs examples of at least two classes."
        )
    x = x.astype(np.float64)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"features contain NaN or infinite values in {len(bad)} rows (first: "
            f"{bad[:5].tolist()}). Drop or impute those rows first."
        )
    return x, y


def validate_pred_probs(pred_probs: np.ndarray, n: int, n_classes: int) -> np.ndarray:
    """Check a user-supplied ``(N, C)`` probability matrix; return it as float64."""
    p = np.asarray(pred_probs, dtype=np.float64)
    if p.shape != (n, n_classes):
        raise DataError(
            f"pred_probs must have shape (N, n_classes) = ({n}, {n_classes}); got {p.shape}."
        )
    if not np.isfinite(p).all() or p.min() < 0:
        raise DataError("pred_probs must be finite and non-negative.")
    sums = p.sum(1)
    if np.abs(sums - 1).max() > 1e-3:
        raise DataError(
            f"pred_probs rows must sum to 1 (out-of-fold probabilities); got row sums from "
            f"{sums.min():.4f} to {sums.max():.4f}."
        )
    return p / sums[:, None]
