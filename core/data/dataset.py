"""The one dataset type every loader returns, and its stratified train/val/test split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from core.data.limits import listing
from core.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "DEFAULT_VAL_FRACTION",
    "MAX_PROBABILITY_CELLS",
    "MIN_CLASS_EXAMPLES",
    "Dataset",
    "Split",
    "check_curatable",
    "generated_feature_names",
    "make_split",
]

DEFAULT_VAL_FRACTION = 0.15  # share of each class held out for validation (the app's split)
DEFAULT_TEST_FRACTION = 0.2  # share of each class held out to test subset value

#: Fewest examples a class needs: the mislabel detector scores each example with a model trained
#: on other examples, and a class's only example would be judged by a model that never saw the class.
MIN_CLASS_EXAMPLES = 2
#: Largest examples x classes: the detector holds several (N, C) float64 probability matrices, each
#: 80 MB at this bound (ImageNet's 1000 classes fit with 10,000 examples, CIFAR-100 whole).
MAX_PROBABILITY_CELLS = 10_000_000


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
        feature_names: ``(D,)`` names of the feature columns (a CSV's header), kept from import to
            export; ``None`` for images. A tabular dataset given none (arrays, datasets stored
            before names were kept) gets :func:`generated_feature_names`.
        source_file: The imported file's name (no folder), ``""`` for demos and arrays.
        source_sha256: SHA-256 of the imported file's bytes, ``""`` when not known; with
            ``source_file`` it says in an export's run manifest exactly which file was curated.
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
    feature_names: tuple[str, ...] | None = None
    source_file: str = ""
    source_sha256: str = ""
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
        # one class is a valid *validation* set (core.data.validation); a dataset to curate needs
        # two, which check_curatable says before any work
        if self.sources is None:
            object.__setattr__(self, "sources", self.ids.astype(str).copy())
        object.__setattr__(self, "feature_names", self._checked_feature_names())

    def _checked_feature_names(self) -> tuple[str, ...] | None:
        """The feature names as a tuple of unique strings, one per column (generated if absent)."""
        if self.features is None:
            if self.feature_names is not None:
                raise DataError("feature_names name the columns of `features`; image data has none.")
            return None
        d = int(self.features.shape[1]) if self.features.ndim == 2 else 0
        if self.feature_names is None:
            return generated_feature_names(d)
        names = tuple(str(c) for c in self.feature_names)
        if len(names) != d:
            raise DataError(f"{len(names)} feature names for {d} feature columns; give one name per column.")
        if len(set(names)) != len(names):
            dups = sorted({c for c in names if names.count(c) > 1})[:5]
            raise DataError(f"Duplicate feature names: {', '.join(map(repr, dups))}. Every column needs a "
                            "unique name.")
        return names

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
            h.update(np.ascontiguousarray(data))  # the buffer itself: no copy of a GB-sized stack
            h.update("\x00".join(self.ids.astype(str)).encode())
            self._hash.append(h.hexdigest()[:24])
        return self._hash[0]


def generated_feature_names(d: int) -> tuple[str, ...]:
    """``("f0", "f1", ...)``: the names of ``d`` feature columns that came without any.

    The names exports have always written, so a dataset stored before real names were kept
    exports the same columns as before.
    """
    return tuple(f"f{j}" for j in range(int(d)))


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
    labels: np.ndarray,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
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
    _check_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_test, n_val = _split_counts(len(idx), val_fraction, test_fraction)
        test.append(idx[:n_test])
        val.append(idx[n_test : n_test + n_val])
        train.append(idx[n_test + n_val :])
    return Split(
        train=np.sort(np.concatenate(train)).astype(np.int64),
        val=np.sort(np.concatenate(val)).astype(np.int64),
        test=np.sort(np.concatenate(test)).astype(np.int64),
        seed=int(seed),
    )


def check_curatable(
    dataset: Dataset, *, val_fraction: float | None = None, test_fraction: float = 0.0
) -> None:
    """Raise a one-line DataError, before any work, if selection and mislabel review cannot run.

    Checks that at least two classes are present (a :class:`Dataset` may hold one: a clean
    validation set), that every class present has at least :data:`MIN_CLASS_EXAMPLES`
    examples (naming the first few that do not), that examples x classes stays
    within :data:`MAX_PROBABILITY_CELLS`, and, when ``val_fraction`` is given, that
    :func:`make_split` with these fractions leaves a validation example.
    Without it a dataset of 10,000 one-example classes failed deep in scikit-learn
    with a traceback, and one of two-example classes ran for minutes and took GBs
    before finding its validation split empty.

    Args:
        dataset: The dataset about to be split and stored.
        val_fraction: The validation share the split will use; ``None`` when the
            validation examples come from elsewhere (``hostcp select --val``).
        test_fraction: The test share the split will use.

    Raises:
        TypeError: ``dataset`` is not a :class:`Dataset`.
        ConfigError: The fractions are out of range (as :func:`make_split` says).
        DataError: What is too small or too large, and how to fix it.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"check_curatable expects a Dataset; got {type(dataset).__name__}.")
    counts = np.bincount(dataset.labels, minlength=dataset.n_classes)
    if np.count_nonzero(counts) < 2:
        only = dataset.class_names[int(np.argmax(counts))]
        raise DataError(
            f"{dataset.name}: only one class ({only!r}) is present. Selection and mislabel detection "
            "need at least two classes: add examples of another class."
        )
    small = [
        f"{dataset.class_names[c]!r} ({counts[c]})"
        for c in np.flatnonzero(counts)
        if counts[c] < MIN_CLASS_EXAMPLES
    ]
    if small:
        raise DataError(
            f"{dataset.name}: {len(small)} of {np.count_nonzero(counts)} classes have fewer than "
            f"{MIN_CLASS_EXAMPLES} examples: {listing(small, quote=False)}. Mislabel detection "
            f"scores each example with a model trained on other examples of its class; add examples "
            "to these classes, merge them into others, or drop their rows."
        )
    cells = dataset.n * dataset.n_classes
    if cells > MAX_PROBABILITY_CELLS:
        raise DataError(
            f"{dataset.name}: {dataset.n:,} examples x {dataset.n_classes:,} classes = {cells:,} class "
            f"probabilities, over the limit of {MAX_PROBABILITY_CELLS:,} (mislabel detection holds "
            "several examples x classes matrices). Merge classes, or curate the data in parts."
        )
    if val_fraction is None:
        return
    _check_fractions(val_fraction, test_fraction)
    n_val = sum(_split_counts(int(k), val_fraction, test_fraction)[1] for k in counts if k)
    if n_val == 0:
        need = next((k for k in range(2, 10_001) if _split_counts(k, val_fraction, test_fraction)[1]), None)
        size = f"a class needs at least {need} examples to give one" if need else "no class size gives one"
        raise DataError(
            f"{dataset.name}: the validation split would be empty: with val_fraction={val_fraction:g} and "
            f"test_fraction={test_fraction:g} {size}, and the largest class has {counts.max()}. Add "
            "examples, raise the validation fraction (hostcp select --val-fraction), or give a "
            "validation file (hostcp select --val)."
        )


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise a ConfigError unless both shares are in [0, 1) and leave 10% for training."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1:
        raise ConfigError(
            f"val_fraction and test_fraction must be in [0, 1); got {val_fraction}, {test_fraction}."
        )
    if val_fraction + test_fraction >= 0.9:
        raise ConfigError(
            "val_fraction + test_fraction must leave at least 10% for training; "
            f"got {val_fraction + test_fraction:.2f}."
        )


def _split_counts(n_c: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Test and validation examples :func:`make_split` takes from a class of ``n_c`` (one stays in train)."""
    n_test = int(round(n_c * test_fraction))
    n_val = int(round(n_c * val_fraction))
    while n_test + n_val >= n_c and (n_test or n_val):
        if n_test >= n_val and n_test:
            n_test -= 1
        else:
            n_val -= 1
    return n_test, n_val
