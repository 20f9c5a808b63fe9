"""Shared data for the engine benchmarks: digits (standardised pixels) with flipped labels, the mixture."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits

from core.data.demos import flip_labels

__all__ = ["BenchData", "digits_data", "markdown", "mixture_data", "nonlinear_data", "with_flags"]


@dataclass(frozen=True)
class BenchData:
    """Train/val/test embeddings; only the train labels are noisy."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray  # given (possibly flipped) labels
    y_true: np.ndarray  # clean train labels
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    flagged: np.ndarray | None = None
    suspect: np.ndarray | None = None


def _split(x: np.ndarray, y: np.ndarray, n_classes: int, noise: float, name: str, seed: int = 0) -> BenchData:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=0.2, stratify=y, random_state=seed)
    tr, va = train_test_split(tr, test_size=0.15 / 0.8, stratify=y[tr], random_state=seed)
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6  # standardise on the train split only
    x = ((x - mu) / sd).astype(np.float32)
    y_tr = y[tr].copy()
    if noise > 0:
        y_tr = flip_labels(y[tr], rate=noise, n_classes=n_classes, seed=1000 + seed)[0]
    return BenchData(name, x[tr], y_tr, y[tr], x[va], y[va], x[te], y[te], n_classes)


def digits_data(noise: float = 0.0, split_seed: int = 0) -> BenchData:
    """sklearn digits (64-d pixels, standardised), train labels flipped at ``noise``.

    ``split_seed``: seed of the train / validation / test split and of the flips (0: the tables').
    """
    x, y = load_digits(return_X_y=True)
    return _split(x.astype(np.float64), y.astype(np.int64), 10, noise, f"digits noise={noise:.0%}",
                  seed=split_seed)


def mixture_data(noise: float = 0.0, split_seed: int = 0) -> BenchData:
    """The project's 2-D Gaussian mixture demo (or an equivalent made here); ``split_seed``: as digits'."""
    try:
        from core.data.demos import load_demo

        ds = load_demo("mixture", seed=0)
        x, y, c = ds.features.astype(np.float64), ds.labels.astype(np.int64), ds.n_classes
    except Exception:  # demos not available: same recipe inline
        rng = np.random.default_rng(0)
        c, n = 5, 1500
        y = rng.integers(0, c, n)
        ang = 2 * np.pi * np.arange(c) / c
        means = np.stack([np.cos(ang), np.sin(ang)], 1) * 2.0
        x = means[y] + rng.normal(size=(n, 2)) * np.array([1.0, 0.5])
    return _split(x, y, c, noise, f"mixture noise={noise:.0%}", seed=split_seed)


def nonlinear_data(
    noise: float = 0.0, n: int = 3000, seed: int = 0, split_seed: int | None = None
) -> BenchData:
    """``core.data.demos.nonlinear_classes``: 10 classes in 40-d no linear model separates.

    The generator lives in ``core.data.demos`` (beside ``flip_labels``) so that the engine's
    tests, the mislabel benchmark and the value-curve benchmarks draw the same points.
    ``split_seed`` (default ``seed``) splits the same points another way.
    """
    from core.data.demos import nonlinear_classes

    x, y = nonlinear_classes(n, seed=seed)
    return _split(x.astype(np.float64), y, 10, noise, f"nonlinear noise={noise:.0%}",
                  seed=seed if split_seed is None else split_seed)


def with_flags(d: BenchData, seed: int = 0, detector: dict | None = None) -> BenchData:
    """Attach mislabel flags and scores from ``core.mislabel.detect_mislabels`` (train split only).

    ``detector``: ``DetectorConfig`` fields to change (to measure what a detector part does).
    """
    from dataclasses import replace

    try:
        from core.mislabel import detect_mislabels
        from core.mislabel.detector import DetectorConfig

        res = detect_mislabels(d.x_train, d.y_train, n_classes=d.n_classes, seed=seed,
                               config=DetectorConfig(**(detector or {})))
        return replace(d, flagged=res.flagged, suspect=res.score)
    except ImportError:
        from core.mislabel import cleanlab_flags

        f = cleanlab_flags(d.x_train, d.y_train, n_classes=d.n_classes, seed=seed)
        return replace(d, flagged=f, suspect=f.astype(float))


def markdown(df) -> str:
    """A DataFrame as a Markdown table, without the optional ``tabulate`` package."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
