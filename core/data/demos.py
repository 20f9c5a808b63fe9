"""Built-in demo datasets that need no network: sklearn digits, a noisy copy, a Gaussian mixture."""

from __future__ import annotations

import numpy as np

from core.data.dataset import Dataset
from core.errors import DataError

__all__ = ["DEMOS", "DIGITS_NOISE_RATE", "load_demo", "flip_labels"]

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
