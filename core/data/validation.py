"""A pool and a separate clean validation set as one stored dataset: the user's own target.

In curation the training pool is often scraped and the clean, in-domain examples are a
small set of their own. Given as a separate file, that set becomes the validation split
(what the methods may use to choose, and what HOST-CP checks the pool against,
:mod:`core.selection.target`) and, with ``test_fraction``, also the test split that
scores the value curves, so that both describe the target rather than the pool.
"""

from __future__ import annotations

import numpy as np

from core.data.dataset import Dataset, Split, make_split
from core.data.limits import LoadLimits
from core.data.sources import Source
from core.errors import DataError

__all__ = ["load_validation", "with_validation"]


def load_validation(source: Source, *, label_column: str = "label") -> Dataset:
    """A clean validation file, read as :func:`core.data.load_dataset` reads one, but one class is allowed.

    A target of one class is a real case (clean examples of the class that matters most);
    its classes are the pool's, so the pool's two-class rule does not apply to it.
    """
    from core.data.loaders import load_dataset
    from core.data.tables import LabelColumnError

    try:
        return load_dataset(source, label_column=label_column, limits=LoadLimits(min_classes=1))
    except LabelColumnError as e:  # it has a box (a flag) of its own: name that one
        raise e.for_role("validation set's label column") from e


def with_validation(
    data: Dataset, val: Dataset, *, test_fraction: float = 0.0, seed: int = 0,
    names: tuple[str, str] = ("DATA", "VAL"),
) -> tuple[Dataset, Split]:
    """One dataset of ``data``'s rows followed by ``val``'s rows, and the split that says which is which.

    Args:
        data: The pool: every row is a candidate (the training split).
        val: The clean validation set, with ``data``'s columns (or image size) and classes.
        test_fraction: Share of each class of ``val`` held out as the test split (stratified,
            seeded; every class keeps at least one validation example). 0: no test split.
        seed: Seed of that share.
        names: What the messages call ``data`` and ``val`` (the CLI's DATA and VAL, the app's words).

    Raises:
        DataError: ``val`` does not match ``data`` (kind, shape, feature columns) or has classes
            that ``data`` lacks; one line naming the difference.
    """
    pool, target = names
    if data.kind != val.kind or data.shape != val.shape:
        raise DataError(
            f"{target} does not match {pool}: {val.kind} {val.shape} against {data.kind} {data.shape}. "
            "Give a validation set with the same columns or image size."
        )
    if data.feature_names != val.feature_names:
        differ = [f"{a!r} / {b!r}" for a, b in zip(data.feature_names, val.feature_names, strict=True)
                  if a != b]
        raise DataError(
            f"{target}'s feature columns are not {pool}'s ({len(differ)} differ, {pool} / {target}: "
            f"{', '.join(differ[:5])}). Give a validation set with the same columns in the same order."
        )
    class_names = list(data.class_names)
    unknown = sorted(set(val.class_names[i] for i in np.unique(val.labels)) - set(class_names))
    if unknown:
        raise DataError(
            f"{target} has classes that {pool} lacks: {unknown}. Remove them or add them to {pool}."
        )
    val_labels = np.array([class_names.index(val.class_names[i]) for i in val.labels], dtype=np.int64)
    both = Dataset(
        name=data.name,
        ids=np.concatenate([data.ids.astype(str), np.char.add("val:", val.ids.astype(str))]).astype(object),
        labels=np.concatenate([data.labels, val_labels]),
        class_names=data.class_names,
        features=None if data.features is None else np.concatenate([data.features, val.features]),
        images=None if data.images is None else np.concatenate([data.images, val.images]),
        sources=np.concatenate([np.asarray(data.sources), np.asarray(val.sources)]).astype(object),
        origin=f"{data.origin} + validation {val.origin}",
        feature_names=data.feature_names,
        source_file=data.source_file,
        source_sha256=data.source_sha256,
    )
    rows = np.arange(data.n, data.n + val.n)
    test = np.arange(0)
    if test_fraction > 0:  # make_split's "val" share is our test; its "train" (>= 1 a class) our validation
        part = make_split(val_labels, val_fraction=test_fraction, test_fraction=0.0, seed=seed)
        rows, test = rows[part.train], rows[part.val]
    return both, Split(train=np.arange(data.n), val=rows, test=test, seed=int(seed))
