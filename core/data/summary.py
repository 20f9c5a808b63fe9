"""A dataset's vital statistics and the problems worth fixing before curation (`hostcp inspect`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from core.data.dataset import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, Dataset, check_curatable
from core.errors import DataError

__all__ = ["IMBALANCE_RATIO", "TINY_CLASS", "DatasetSummary", "summarize"]

IMBALANCE_RATIO = 5.0  # largest / smallest class above this is reported as imbalance
TINY_CLASS = 10  # classes with fewer examples are too small for a train/val/test split
_CLASS_LINES = 30  # classes listed one per line in the text report; the rest are counted
_FEATURE_NAMES = 50  # feature column names listed in the text report; the rest are counted


@dataclass(frozen=True)
class DatasetSummary:
    """What a dataset holds and what looks wrong with it.

    Attributes:
        name: Dataset name.
        kind: ``"image"`` or ``"tabular"``.
        n_examples: Number of examples.
        n_classes: Number of classes.
        class_counts: Examples per class name, in class order.
        shape: Shape of one example (``(H, W, C)`` or ``(D,)``).
        origin: Where the data came from.
        n_duplicates: Examples that are exact copies of an earlier example.
        n_conflicting: Duplicate groups whose copies carry different labels.
        known_noise_rate: Share of labels that differ from known true labels, or ``None``.
        problems: Human-readable problems (imbalance, tiny classes, duplicates...).
        feature_names: The feature columns of a table, in order (``None`` for images).
    """

    name: str
    kind: str
    n_examples: int
    n_classes: int
    class_counts: dict[str, int]
    shape: tuple[int, ...]
    origin: str
    n_duplicates: int
    n_conflicting: int
    known_noise_rate: float | None
    problems: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None

    def to_text(self) -> str:
        """A plain-text report, one fact per line."""
        if self.kind == "image":
            shape = "x".join(str(s) for s in self.shape) + " images (H x W x C)"
        else:
            shape = f"{self.shape[0]} features"
        width = max(len(c) for c in list(self.class_counts)[:_CLASS_LINES])
        lines = [
            f"Dataset: {self.name} ({self.kind}, {self.n_examples} examples, {self.n_classes} classes)",
            f"Shape: {shape}",
            f"Origin: {self.origin}",
        ]
        if self.feature_names is not None:
            shown = ", ".join(self.feature_names[:_FEATURE_NAMES])
            more = len(self.feature_names) - _FEATURE_NAMES
            lines.append(f"Features: {shown}" + (f" ... and {more} more" if more > 0 else ""))
        lines.append("Classes:")
        for cls, count in list(self.class_counts.items())[:_CLASS_LINES]:
            lines.append(f"  {cls:<{width}}  {count:>7}  ({count / self.n_examples:6.1%})")
        if len(self.class_counts) > _CLASS_LINES:
            lines.append(f"  ... and {len(self.class_counts) - _CLASS_LINES} more classes")
        if self.known_noise_rate is not None:
            lines.append(f"Known label noise: {self.known_noise_rate:.1%} of labels (true labels kept)")
        lines.append("Problems:" if self.problems else "Problems: none found")
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)


def summarize(dataset: Dataset) -> DatasetSummary:
    """Count examples and classes and look for problems that hurt selection.

    Problems reported: what stops curation (see
    :func:`~core.data.dataset.check_curatable`, with the app's split fractions),
    empty classes, tiny classes (fewer than :data:`TINY_CLASS`), class imbalance
    (ratio over :data:`IMBALANCE_RATIO`), exact duplicate examples (and duplicates
    with conflicting labels), and constant feature columns.

    Raises:
        TypeError: ``dataset`` is not a :class:`Dataset`.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"summarize expects a Dataset; got {type(dataset).__name__}.")
    counts = dataset.class_counts()
    problems: list[str] = []
    try:
        check_curatable(dataset, val_fraction=DEFAULT_VAL_FRACTION, test_fraction=DEFAULT_TEST_FRACTION)
    except DataError as e:
        problems.append(str(e))
    empty = [c for c, k in counts.items() if k == 0]
    if empty:
        problems.append(f"{len(empty)} classes have no examples: {_names(empty)}.")
    tiny = [f"{c} ({k})" for c, k in counts.items() if 0 < k < TINY_CLASS]
    if tiny:
        problems.append(
            f"{len(tiny)} tiny classes (fewer than {TINY_CLASS} examples): {_names(tiny)}; too "
            "few for reliable validation and test examples. Add examples or merge classes."
        )
    present = {c: k for c, k in counts.items() if k > 0}
    big, small = max(present, key=present.get), min(present, key=present.get)
    ratio = present[big] / present[small]
    if ratio > IMBALANCE_RATIO:
        problems.append(
            f"Class imbalance: {big!r} has {present[big]} examples, {small!r} only "
            f"{present[small]} ({ratio:.1f}x). Small classes may be under-selected; "
            "check per-class counts of the selected subset."
        )
    n_dup, n_conflict = _duplicates(dataset)
    if n_dup:
        conflict = f", {n_conflict} groups of them with conflicting labels" if n_conflict else ""
        problems.append(
            f"{n_dup} examples are exact duplicates of another example{conflict}. "
            "Duplicates inflate validation scores; consider removing them."
        )
    if dataset.features is not None and dataset.n > 1:
        constant = np.flatnonzero(np.ptp(dataset.features, axis=0) == 0)
        if len(constant):
            problems.append(
                f"{len(constant)} feature columns are constant ("
                f"{', '.join(repr(dataset.feature_names[j]) for j in constant[:10])}"
                f"{'...' if len(constant) > 10 else ''}); "
                "they carry no information."
            )
    noise = None
    if dataset.true_labels is not None:
        noise = float(np.mean(dataset.true_labels != dataset.labels))
    return DatasetSummary(
        name=dataset.name,
        kind=dataset.kind,
        n_examples=dataset.n,
        n_classes=dataset.n_classes,
        class_counts=counts,
        shape=dataset.shape,
        origin=dataset.origin,
        n_duplicates=n_dup,
        n_conflicting=n_conflict,
        known_noise_rate=noise,
        problems=tuple(problems),
        feature_names=dataset.feature_names,
    )


def _duplicates(dataset: Dataset) -> tuple[int, int]:
    """Count examples identical to an earlier one, and duplicate groups with mixed labels."""
    data = dataset.images if dataset.images is not None else dataset.features
    rows = data.reshape(dataset.n, -1)
    # A 16-byte digest per row: sorting the rows themselves copied a GB-sized image stack.
    digests = b"".join(hashlib.blake2b(np.ascontiguousarray(r), digest_size=16).digest() for r in rows)
    keys = np.frombuffer(digests, dtype=np.dtype((np.void, 16)))
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    n_dup = int(dataset.n - len(counts))
    if not n_dup:
        return 0, 0
    inverse = inverse.ravel()
    groups = np.flatnonzero(counts > 1)
    pairs = np.unique(np.stack([inverse, dataset.labels]), axis=1)  # (2, unique (group, label))
    labels_per_group = np.bincount(pairs[0], minlength=len(counts))
    return n_dup, int(np.sum(labels_per_group[groups] > 1))


def _names(items: list[str]) -> str:
    """Join the first few names."""
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    return ", ".join(items[:10]) + more
