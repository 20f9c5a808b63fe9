"""The one dataset type every loader returns, and its stratified train/val/test split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from core.errors import ConfigError, DataError

__all__ = ["Dataset", "Split", "make_split"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled dataset: either a feature matrix or a stack of images.

    Attributes:
        name: Human-readable name (file name or demo name).
        ids: ``(N,)`` unique string ids (file paths inside an archive, row ids...).
        labels: ``(N,)`` int64 class indices in ``[0, len(class_names))``.
        class_names: Class name of each label index.
        features: ``(N, D)`` float32 feature matrix, or ``None`` for image data.
        images: ``(N, H, W, C)`` uint8 images (C is 1 or 3), or ``None``.
        sources: ``(N,)`` where each example came from (path in archive, ``file.csv:row 12``).
        true_labels: ``(N,)`` clean labels when known (demos with injected noise), else ``None``.
        origin: Short description of the input (format and path) for provenance.
    """

    name: str
    ids: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    features: np.ndarray | None = None
    images: np.ndarray | None = None
    sources: np.ndarray | None = None
    true_labels: np.ndarray | None = None
    origin: str = ""
    _hash: list = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if (self.features is None) == (self.images is None):
            raise DataError("A dataset holds exactly one of `features` or `images`.")
        data = self.features if self.features is not None else self.images
        if len(data) != n or len(self.ids) != n:
            raise DataError(
                f"Length mismatch: {len(self.ids)} ids, {n} labels and {len(data)} examples. "
                "Every example needs exactly one label."
            )
        if n == 0:
            raise DataError("The dataset is empty: no examples were found.")
        uniq, counts = np.unique(self.ids.astype(str), return_counts=True)
        if len(uniq) != n:
            dups = ", ".join(repr(u) for u in uniq[counts > 1][:5])
            raise DataError(f"Duplicate ids: {dups}. Every example needs a unique id.")
        if self.labels.min() < 0 or self.labels.max() >= len(self.class_names):
            raise DataError("Label index out of range of class_names.")
        present = np.unique(self.labels)
        if len(present) < 2:
            only = self.class_names[int(present[0])]
            raise DataError(
                f"Only one class ({only!r}) is present. Selection and mislabel detection "
                "need at least two classes: add examples of another class."
            )
        if self.sources is None:
            object.__setattr__(self, "sources", self.ids.astype(str).copy())

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(len(self.labels))

    @property
    def n_classes(self) -> int:
        """Number of classes (including any with zero examples)."""
        return len(self.class_names)

    @property
    def kind(self) -> str:
        """``"image"`` or ``"tabular"``."""
        return "image" if self.images is not None else "tabular"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example: ``(H, W, C)`` for images, ``(D,)`` for features."""
        data = self.images if self.images is not None else self.features
        return tuple(int(s) for s in data.shape[1:])

    def class_counts(self) -> dict[str, int]:
        """Examples per class name, in class order."""
        counts = np.bincount(self.labels, minlength=self.n_classes)
        return {name: int(c) for name, c in zip(self.class_names, counts, strict=True)}

    def content_hash(self) -> str:
        """A stable hash of the examples (not of the labels); keys embedding caches."""
        if not self._hash:
            h = hashlib.sha256()
            data = self.images if self.images is not None else self.features
            h.update(str(data.dtype).encode() + str(data.shape).encode())
            h.update(np.ascontiguousarray(data).tobytes())
            h.update("\x00".join(self.ids.astype(str)).encode())
            self._hash.append(h.hexdigest()[:24])
        return self._hash[0]


@dataclass(frozen=True)
class Split:
    """Index arrays (into the dataset) of a stratified train / validation / test split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int

    def role_of(self, n: int) -> np.ndarray:
        """``(n,)`` array of ``"train"``, ``"val"`` or ``"test"`` per example."""
        roles = np.empty(n, dtype=object)
        roles[self.train] = "train"
        roles[self.val] = "val"
        roles[self.test] = "test"
        return roles


def make_split(
    labels: np.ndarray, *, val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0
) -> Split:
    """Split indices per class so each part keeps the class balance.

    Every class keeps at least one training example; a class too small for a
    validation or test example contributes none there.

    Args:
        labels: ``(N,)`` int class labels.
        val_fraction: Share of each class held out for validation (never trained on).
        test_fraction: Share of each class held out for the final test of subset value.
        seed: Seed of the shuffle; the same seed gives the same split.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ConfigError(
            f"val_fraction and test_fraction must be in [0, 1); got {val_fraction}, {test_fraction}."
        )
    if val_fraction + test_fraction >= 0.9:
        raise ConfigError(
            "val_fraction + test_fraction must leave at least 10% for training; "
            f"got {val_fraction + test_fraction:.2f}."
        )
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_c = len(idx)
        n_test = int(round(n_c * test_fraction))
        n_val = int(round(n_c * val_fraction))
        while n_test + n_val >= n_c and (n_test or n_val):
            if n_test >= n_val and n_test:
                n_test -= 1
            else:
                n_val -= 1
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    return Split(
        train=np.sort(np.concatenate(train)).astype(np.int64),
        val=np.sort(np.concatenate(val)).astype(np.int64),
        test=np.sort(np.concatenate(test)).astype(np.int64),
        seed=int(seed),
    )
