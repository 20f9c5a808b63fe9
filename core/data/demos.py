"""Built-in demo datasets that need no network: sklearn digits, a noisy copy, a Gaussian mixture."""

from __future__ import annotations

import numpy as np

from core.data.dataset import Dataset
from core.errors import DataError

__all__ = ["DEMOS", "DIGITS_NOISE_RATE", "flip_labels", "load_demo", "nonlinear_classes"]

DIGITS_NOISE_RATE = 0.10  # share of labels flipped in "digits-noisy"

DEMOS: dict[str, str] = {
    "digits": "sklearn handwritten digits: 1797 grey 8x8 images, 10 classes (0-9).",
    "digits-noisy": (
        "The digits with 10% of labels flipped to a different class at a recorded seed; "
        "the true labels are kept, so mislabel detection can be scored."
    ),
    "mixture": "Synthetic 2-D Gaussian mixture: 1500 points in 5 overlapping classes (features).",
}


def load_demo(name: str, *, seed: int = 0) -> Dataset:
    """Load a built-in demo dataset (no network).

    Args:
        name: One of :data:`DEMOS`.
        seed: Seed of the label flips (``"digits-noisy"``) or of the sampling
            (``"mixture"``); ``"digits"`` does not depend on it.

    Raises:
        DataError: ``name`` is not a demo.
    """
    if name not in DEMOS:
        raise DataError(f"Unknown demo {name!r}. Available demos: {', '.join(DEMOS)}.")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}.")
    if name == "mixture":
        return _mixture(seed=int(seed))
    digits = _digits()
    if name == "digits":
        return digits
    return _flip_labels(digits, rate=DIGITS_NOISE_RATE, seed=int(seed))


def _digits() -> Dataset:
    """sklearn's digits as ``(1797, 8, 8, 1)`` uint8 images scaled from 0..16 to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    ids = np.array([f"digits/{i:04d}" for i in range(len(images))], dtype=str)
    return Dataset(
        name="digits",
        ids=ids,
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(c) for c in bunch.target_names),
        images=images,
        sources=np.array([f"sklearn.datasets.load_digits #{i}" for i in range(len(images))]),
        origin="demo:digits (sklearn.datasets.load_digits, 8x8 grey scaled to 0..255)",
    )


def flip_labels(
    labels: np.ndarray, *, rate: float, n_classes: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``rate`` of the labels, each to a uniformly chosen different class.

    The one way label noise is injected (demos, benchmarks, tests), so a seed
    means the same flips everywhere.

    Returns:
        ``(noisy, flipped)``: the ``(N,)`` noisy labels and the ``(N,)`` bool mask of flipped rows.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    idx = rng.choice(n, size=int(round(rate * n)), replace=False)
    noisy = np.asarray(labels).copy()
    noisy[idx] = (noisy[idx] + rng.integers(1, n_classes, size=len(idx))) % n_classes
    flipped = np.zeros(n, dtype=bool)
    flipped[idx] = True
    return noisy, flipped


def _flip_labels(clean: Dataset, *, rate: float, seed: int) -> Dataset:
    """The clean dataset with ``rate`` of its labels flipped; the true labels kept."""
    labels, flipped = flip_labels(clean.labels, rate=rate, n_classes=clean.n_classes, seed=seed)
    n = clean.n
    return Dataset(
        name="digits-noisy",
        ids=clean.ids,
        labels=labels,
        class_names=clean.class_names,
        images=clean.images,
        sources=clean.sources,
        true_labels=clean.labels.copy(),
        origin=(
            f"demo:digits-noisy (sklearn digits; {int(flipped.sum())} of {n} labels = {rate:.0%} "
            f"flipped to another class, flip_seed={seed})"
        ),
    )


def _mixture(*, seed: int, n: int = 1500, n_classes: int = 5) -> Dataset:
    """A 2-D Gaussian mixture: class means on a circle, anisotropic overlapping clusters."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    means = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (C, 2)
    weights = np.linspace(1.6, 0.6, n_classes)  # unequal class sizes, as real data has
    counts = np.floor(n * weights / weights.sum()).astype(int)
    counts[0] += n - counts.sum()
    labels = np.repeat(np.arange(n_classes), counts)
    features = np.empty((n, 2))
    for c in range(n_classes):
        a = rng.normal(size=(2, 2)) * 0.5 + np.eye(2) * 0.9  # per-class covariance factor
        rows = labels == c
        features[rows] = means[c] + rng.normal(size=(rows.sum(), 2)) @ a.T
    order = rng.permutation(n)
    ids = np.array([f"mixture/{i:04d}" for i in range(n)], dtype=str)
    return Dataset(
        name="mixture",
        ids=ids,
        labels=labels[order].astype(np.int64),
        class_names=tuple(f"class {c}" for c in range(n_classes)),
        features=features[order].astype(np.float32),
        sources=np.array([f"mixture seed={seed} #{i}" for i in range(n)]),
        origin=f"demo:mixture (2-D Gaussian mixture, {n_classes} classes, {n} points, seed={seed})",
    )


def nonlinear_classes(
    n: int = 3000, *, n_classes: int = 10, dim: int = 40, clusters_per_class: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded 10-class set in 40-d whose classes no linear model separates.

    Why: the detector's out-of-fold model is linear, and digits and the mixture are
    nearly linearly separable, so neither shows what happens when it is not. Ten
    informative coordinates: in eight, every class is a union of ``clusters_per_class``
    blobs scattered among the other classes' blobs (a hyperplane cuts through them);
    in two, the classes are concentric rings of ten radii, points spread along each
    ring (curved structure no hyperplane follows). They are rotated by a random
    orthogonal matrix and bent by a smooth warp ``z + 0.5 sin(z W)``, so no single axis
    reads a class off. The other ``dim - 10`` coordinates are noise of the same scale,
    as irrelevant columns are in tabular data and unused directions in an embedding:
    they drown Euclidean neighbours (kNN is near logistic regression here, about half
    right on clean labels) while trees and MLPs that find the informative directions
    are right about nine times in ten. Generated in code: no download.

    Args:
        n: Number of points (classes equally likely).
        n_classes: Number of classes.
        dim: Dimension, at least 12.
        clusters_per_class: Blobs per class.
        seed: Seed of everything drawn.

    Returns:
        ``(x, y)``: ``(n, dim)`` float32 features standardised per column, ``(n,)`` int64 labels.

    Raises:
        DataError: ``dim`` below 12.
    """
    if dim < 12:
        raise DataError(f"nonlinear_classes needs dim >= 12 (10 informative coordinates); got {dim}.")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    blob = rng.integers(0, clusters_per_class, n)
    centres = rng.uniform(-2.0, 2.0, (n_classes, clusters_per_class, 8))  # (C, K, 8)
    part_blob = centres[y, blob] + rng.normal(scale=0.5, size=(n, 8))
    angle = rng.uniform(0.0, 2 * np.pi, n)
    radius = 1.5 + 0.525 * rng.permutation(n_classes)[y] + rng.normal(scale=0.12, size=n)
    part_ring = np.stack([np.cos(angle), np.sin(angle)], 1) * radius[:, None]
    z = np.concatenate([part_blob, part_ring], 1) @ np.linalg.qr(rng.normal(size=(10, 10)))[0]
    z = z + 0.5 * np.sin(z @ (rng.normal(size=(10, 10)) / np.sqrt(10)))  # (n, 10)
    x = np.concatenate([z, rng.normal(size=(n, dim - 10))], 1)
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), y.astype(np.int64)
