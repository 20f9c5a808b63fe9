"""The shared interface of every selection method: task, result, base class and registry.

A method is built from its own settings (``get_method(name, **config)``), then
``fit(task)`` computes a subset of exactly ``task.k`` candidates plus a score for
every candidate (higher = more valuable). ``result`` raises
:class:`~core.errors.NotFittedError` before ``fit``.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import ConfigError, DataError, NotFittedError
from core.progress import NullReporter, Reporter

__all__ = [
    "SelectionTask",
    "SelectionResult",
    "SelectionMethod",
    "register",
    "get_method",
    "available_methods",
    "BUILTIN_METHODS",
    "top_k_mask",
    "stratified_quotas",
    "SelectOutput",
]

logger = logging.getLogger(__name__)

#: The built-in methods: name -> (module in ``core.valuation``, label), HOST-CP first. Listing
#: them needs no import; a method's module (torch, cvxpy, sklearn...) is imported when the method is
#: built, so that ``hostcp select`` and a page that lists the methods pay only for the one they use.
#: Each module registers its class under the same name and label (a test checks that they agree).
BUILTIN_METHODS: dict[str, tuple[str, str]] = {
    "hostcp": ("hostcp", "HOST-CP (subset-aware, learned)"),
    "random": ("random", "Random (stratified)"),
    "clean_random": ("clean_random", "Drop flagged, then random"),
    "kcenter": ("kcenter", "k-center greedy coreset"),
    "facility_location": ("facility_location", "Facility location (greedy, per class)"),
    "knn_shapley": ("knn_shapley", "KNN-Shapley (top-k)"),
    "data_oob": ("data_oob", "Data-OOB (top-k)"),
}
_REGISTRY: dict[str, tuple[type[SelectionMethod], str]] = {}

#: What ``SelectionMethod._select`` returns: (selected (N,) bool, scores (N,), info).
SelectOutput = tuple[np.ndarray, np.ndarray, dict[str, Any]]


@dataclass(frozen=True, eq=False)
class SelectionTask:
    """One selection problem, on precomputed embeddings.

    Attributes:
        x_train: ``(N, D)`` float32 embeddings of the candidates.
        y_train: ``(N,)`` int64 given (possibly noisy) labels of the candidates.
        x_val: ``(M, D)`` embeddings of the clean validation split.
        y_val: ``(M,)`` labels of the validation split.
        n_classes: Number of classes; labels lie in ``[0, n_classes)``.
        budget: Fraction of the candidates to select, in ``(0, 1]``.
        seed: Random seed; a method is deterministic for a seed on the CPU.
        flagged: ``(N,)`` bool, suspected mislabelled candidates that methods which
            honour it never select, or ``None``.
        suspect: ``(N,)`` float in ``[0, 1]``, mislabel score (higher = more likely
            mislabelled), or ``None``.
        device: Torch device string for methods that use torch (``"cpu"``, ``"cuda"``).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    budget: float
    seed: int = 0
    flagged: np.ndarray | None = None
    suspect: np.ndarray | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        x, y = np.asarray(self.x_train), np.asarray(self.y_train)
        xv, yv = np.asarray(self.x_val), np.asarray(self.y_val)
        if x.ndim != 2 or xv.ndim != 2:
            raise DataError(
                f"Expected 2-D embeddings (N, D); got x_train {x.shape} and x_val {xv.shape}. "
                "Embed the data first (core.embeddings.embed)."
            )
        if x.shape[1] != xv.shape[1]:
            raise DataError(
                f"x_train has {x.shape[1]} dimensions but x_val has {xv.shape[1]}; "
                "embed both splits with the same backbone."
            )
        if len(y) != len(x) or len(yv) != len(xv):
            raise DataError(
                f"Expected one label per row; got {len(x)} rows/{len(y)} labels (train) and "
                f"{len(xv)} rows/{len(yv)} labels (val)."
            )
        if len(x) < 2 or len(xv) < 1:
            raise DataError(
                f"Need at least 2 candidates and 1 validation point; got {len(x)} and {len(xv)}."
            )
        if not np.all(np.isfinite(x)) or not np.all(np.isfinite(xv)):
            raise DataError("Embeddings contain NaN or infinite values; re-embed the data.")
        if int(self.n_classes) < 2:
            raise ConfigError(f"n_classes must be at least 2; got {self.n_classes}.")
        for name, lab in (("y_train", y), ("y_val", yv)):
            if lab.min() < 0 or lab.max() >= self.n_classes:
                raise DataError(
                    f"{name} has labels outside [0, {self.n_classes}); "
                    f"found {int(lab.min())}..{int(lab.max())}."
                )
        if not 0.0 < float(self.budget) <= 1.0:
            raise ConfigError(
                f"budget must be a fraction in (0, 1]; got {self.budget}. Use 0.1 for 10 percent."
            )
        for name in ("flagged", "suspect"):
            arr = getattr(self, name)
            if arr is not None and len(np.asarray(arr)) != len(x):
                raise DataError(
                    f"{name} needs one entry per candidate ({len(x)}); got {len(np.asarray(arr))}."
                )
        object.__setattr__(self, "x_train", x.astype(np.float32, copy=False))
        object.__setattr__(self, "x_val", xv.astype(np.float32, copy=False))
        object.__setattr__(self, "y_train", y.astype(np.int64, copy=False))
        object.__setattr__(self, "y_val", yv.astype(np.int64, copy=False))
        if self.flagged is not None:
            object.__setattr__(self, "flagged", np.asarray(self.flagged, dtype=bool))
        if self.suspect is not None:
            object.__setattr__(
                self, "suspect", np.clip(np.asarray(self.suspect, dtype=np.float64), 0.0, 1.0)
            )

    @property
    def n(self) -> int:
        """Number of candidates."""
        return len(self.x_train)

    @property
    def k(self) -> int:
        """Subset size: ``round(budget * N)``, at least 1."""
        return max(1, int(round(float(self.budget) * self.n)))

    def allowed(self) -> np.ndarray:
        """``(N,)`` bool: candidates that are not flagged."""
        if self.flagged is None:
            return np.ones(self.n, dtype=bool)
        return ~self.flagged


@dataclass(frozen=True, eq=False)
class SelectionResult:
    """What a fitted method returns.

    Attributes:
        method: Registry name of the method.
        selected: ``(N,)`` bool with exactly ``k`` True.
        scores: ``(N,)`` float, higher = more valuable; orders points for previews at
            other budgets.
        info: Method-specific diagnostics (JSON-friendly values where possible).
    """

    method: str
    selected: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


class SelectionMethod(ABC):
    """Base class: ``fit(task) -> self`` then ``result``."""

    #: Registry name, set by :func:`register`.
    name: str = ""
    #: Human-readable label, set by :func:`register`.
    label: str = ""

    def __init__(self) -> None:
        self._result: SelectionResult | None = None

    def fit(self, task: SelectionTask, *, reporter: Reporter | None = None) -> SelectionMethod:
        """Select ``task.k`` candidates; returns ``self``.

        Raises:
            TypeError: ``task`` is not a :class:`SelectionTask`.
        """
        if not isinstance(task, SelectionTask):
            raise TypeError(f"fit expects a SelectionTask; got {type(task).__name__}.")
        reporter = reporter or NullReporter()
        selected, scores, info = self._select(task, reporter)
        selected = np.asarray(selected, dtype=bool)
        if int(selected.sum()) != task.k:  # internal invariant, not user input
            raise RuntimeError(f"{self.name} selected {int(selected.sum())} points, not k={task.k}.")
        self._result = SelectionResult(
            method=self.name, selected=selected, scores=np.asarray(scores, dtype=np.float64), info=info
        )
        reporter.report("selection", 1.0, f"{self.label or self.name}: {task.k} selected")
        return self

    @property
    def result(self) -> SelectionResult:
        """The fitted :class:`SelectionResult`.

        Raises:
            NotFittedError: ``fit`` was not called yet.
        """
        if self._result is None:
            raise NotFittedError(
                f"{type(self).__name__}.result was read before fit(); call fit(task) first."
            )
        return self._result

    @abstractmethod
    def _select(
        self, task: SelectionTask, reporter: Reporter
    ) -> SelectOutput:
        """Return ``(selected (N,) bool with k True, scores (N,), info)``."""


def register(name: str, label: str) -> Callable[[type[SelectionMethod]], type[SelectionMethod]]:
    """Class decorator: make a :class:`SelectionMethod` available under ``name``."""

    def deco(cls: type[SelectionMethod]) -> type[SelectionMethod]:
        cls.name = name
        cls.label = label
        _REGISTRY[name] = (cls, label)
        return cls

    return deco


def _load(name: str) -> None:
    """Import the module of built-in method ``name`` (it registers itself), if not done yet."""
    if name in BUILTIN_METHODS and name not in _REGISTRY:
        importlib.import_module(f"core.valuation.{BUILTIN_METHODS[name][0]}")


def available_methods() -> dict[str, str]:
    """Registered methods: name -> human-readable label, built-in ones first (HOST-CP first).

    Imports no method's module: built-in methods are listed from :data:`BUILTIN_METHODS`.
    """
    out = {name: label for name, (_, label) in BUILTIN_METHODS.items()}
    out.update((name, _REGISTRY[name][1]) for name in sorted(_REGISTRY) if name not in BUILTIN_METHODS)
    return out


def get_method(name: str, **config: Any) -> SelectionMethod:
    """Build the method registered as ``name`` with its settings.

    Methods with a ``config_class`` (HOST-CP) get ``config_class(**config)``; the
    others take their settings as keyword arguments.

    Raises:
        ConfigError: unknown name or unknown setting.
    """
    _load(name)
    if name not in _REGISTRY:
        raise ConfigError(
            f"Unknown selection method {name!r}; expected one of {sorted(available_methods())}."
        )
    cls, _ = _REGISTRY[name]
    try:
        config_class = getattr(cls, "config_class", None)
        if config_class is not None:
            return cls(config=config_class(**config))  # type: ignore[call-arg]
        return cls(**config)
    except TypeError as e:
        raise ConfigError(f"Bad settings for method {name!r}: {e}") from e


def top_k_mask(scores: np.ndarray, k: int, *, allowed: np.ndarray | None = None) -> np.ndarray:
    """``(N,)`` bool of the ``k`` highest scores, allowed points first, ties by index."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    # sort by (not allowed, -score, index)
    order = np.lexsort((np.arange(n), -np.nan_to_num(scores, nan=-np.inf), ~allowed))
    out = np.zeros(n, dtype=bool)
    out[order[: min(k, n)]] = True
    return out


def stratified_quotas(
    labels: np.ndarray, k: int, n_classes: int, *, allowed: np.ndarray | None = None,
    shares: np.ndarray | None = None,
) -> np.ndarray:
    """``(C,)`` per-class counts summing to ``k``, proportional to class sizes (or to ``shares``).

    Proportions come from all candidates (the label distribution), or from ``shares``
    (``(C,)``, e.g. a target's class shares); counts are capped by the allowed points of
    each class and the rest is moved to classes with room (largest remainders first).
    """
    labels = np.asarray(labels)
    allowed = np.ones(len(labels), dtype=bool) if allowed is None else allowed
    sizes = np.bincount(labels, minlength=n_classes).astype(float)
    if shares is not None:
        sizes = np.asarray(shares, dtype=float)
    room = np.bincount(labels[allowed], minlength=n_classes)
    if room.sum() < k:  # not enough allowed points: every class takes all of its allowed ones
        room = np.bincount(labels, minlength=n_classes)
    ideal = sizes / sizes.sum() * k
    q = np.minimum(np.floor(ideal).astype(int), room)
    rem = ideal - np.floor(ideal)
    while q.sum() < k:
        free = q < room
        cand = np.where(free, rem + (ideal - q), -np.inf)
        c = int(np.argmax(cand))
        q[c] += 1
        rem[c] = 0.0
    return q
