"""Out-of-fold class probabilities and confident learning (cleanlab) on them.

Every point is scored by a model trained on the other folds only, so a wrong
label cannot be memorised by the model that judges it.

Each fold's model is fit on at most :data:`MAX_FIT_ROWS` of the other folds' rows
(a stratified random sample, weighted back to the full folds' class counts): a
linear model of ``D x C`` weights gains nothing measurable from 800,000 rows over
50,000, while its L-BFGS fits grew linearly with them (the out-of-fold part alone
would have taken most of the 30 minutes a million points are given). Below the
cap every fold's model sees all the other folds' rows, as before.

Each fit is a piece of work for a :class:`~core.cluster.Executor` (``executor=``): in
this process by default, or one Ray task per fit on a cluster. Folds and row samples
are drawn before any fit, so both give the same probabilities for a seed.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = [
    "MAX_FIT_ROWS",
    "cleanlab_flags",
    "cleanlab_issues",
    "fit_rows",
    "out_of_fold_proba",
    "present_classes",
    "validate_inputs",
    "validate_pred_probs",
]

logger = logging.getLogger(__name__)

#: Inverse regularisation strengths tried for the logistic regression; the one with the lowest
#: held-out log-loss on the first fold is used for all folds.
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0)

#: Most rows a fold's model is fit on (``None``: all rows of the other folds). 50,000 rows are 75
#: per weight of a 64-d, 10-class model; at a million points the out-of-fold part then costs about
#: as much as at 60,000 (``benchmarks/detector_speed.py``).
MAX_FIT_ROWS: int | None = 50_000


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


def _logreg(x_tr: np.ndarray, y_tr: np.ndarray, c: float, seed: int, weight: np.ndarray | None = None):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(C=c, max_iter=300, random_state=seed)
    # One BLAS thread: L-BFGS makes many small matrix products, and threads that spin on a
    # busy machine made these fits up to 70x slower (measured: 56 s -> 0.8 s on digits).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # convergence warnings: probabilities are still usable
        clf.fit(x_tr, y_tr, sample_weight=weight)
    return clf


def _predict(clf, x_te: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x_te), n_classes))
    out[:, clf.classes_] = clf.predict_proba(x_te)
    return out


def _standardise(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = x_tr.mean(0)
    sd = x_tr.std(0)
    sd[sd < 1e-12] = 1.0
    return (x_tr - mu) / sd, (x_te - mu) / sd


def _splits(y: np.ndarray, n_classes: int, folds: int, seed: int) -> list:
    from sklearn.model_selection import StratifiedKFold

    k = int(min(folds, np.bincount(y, minlength=n_classes).max()))
    skf = StratifiedKFold(n_splits=max(k, 2), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class smaller than `folds` lands in few folds only
        return list(skf.split(np.zeros(len(y)), y))


def fit_rows(
    y_tr: np.ndarray, n_classes: int, cap: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions in ``y_tr`` a fold's model is fit on, and their sample weights.

    At or below ``cap`` rows: all of them, unweighted (``None``). Above it: a random
    sample of each class, ``cap`` rows in all in proportion to the classes, but at
    least ``cap // (2 C)`` of a class (all of a smaller one), so that a rare class
    is not lost; each row weighs ``n_c / sampled_c`` so that the weighted loss
    estimates the full folds' loss (class balance and the weight of the L2 term
    stay as they would be on all rows). At most ``1.5 cap + C`` rows.
    """
    n = len(y_tr)
    if cap is None or n <= cap:
        return np.arange(n), None
    counts = np.bincount(y_tr, minlength=n_classes)
    floor = cap // (2 * n_classes)
    take = np.minimum(counts, np.maximum(np.ceil(cap * counts / n).astype(np.int64), floor))
    rows, weight = [], []
    for c in np.flatnonzero(take):
        members = np.flatnonzero(y_tr == c)
        rows.append(rng.choice(members, int(take[c]), replace=False))
        weight.append(np.full(int(take[c]), counts[c] / take[c]))
    order = np.argsort(np.concatenate(rows), kind="stable")  # the folds' row order, as when uncapped
    return np.concatenate(rows)[order], np.concatenate(weight)[order]


def _fold_pieces(
    y: np.ndarray, n_classes: int, folds: int, seed: int, max_fit_rows: int | None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each fold's ``(fit rows, held-out rows, sample weights)``.

    The row samples are drawn here, fold after fold from one generator, so that where the
    fits then run (this process or a cluster) cannot change them.
    """
    rng = np.random.default_rng(seed)
    pieces = []
    for tr, te in _splits(y, n_classes, folds, seed):
        pick, weight = fit_rows(y[tr], n_classes, max_fit_rows, rng)
        pieces.append((tr[pick], te, weight))
    return pieces


def _fold_proba(shared: dict, piece: tuple) -> np.ndarray:
    """One fold's work: fit on its rows with inverse regularisation ``c``, predict its held-out rows.

    A piece of :func:`compute_oof` for an :class:`~core.cluster.Executor` (a Ray worker
    imports it by name); ``shared`` holds the validated features and labels.
    """
    tr, te, weight, c = piece
    x, y = shared["x"], shared["y"]
    x_tr, x_te = _standardise(x[tr], x[te])
    return _predict(_logreg(x_tr, y[tr], c, shared["seed"], weight), x_te, shared["n_classes"])


def compute_oof(
    x: np.ndarray, y: np.ndarray, n_classes: int, folds: int, seed: int,
    *, max_fit_rows: int | None = MAX_FIT_ROWS, executor: Executor | None = None,
) -> np.ndarray:
    """Out-of-fold probabilities on validated input (see :func:`out_of_fold_proba`).

    Two rounds of pieces on ``executor``: the first fold with two classes fit with every
    :data:`C_GRID` value (the held-out log-loss picks one), then every other fold with that
    value. The features go to the executor once; each piece is one fit and one prediction.
    """
    from core.cluster import LocalExecutor

    executor = executor or LocalExecutor()
    pieces = _fold_pieces(y, n_classes, folds, seed, max_fit_rows)
    proba = np.zeros((len(y), n_classes))
    fit = []  # positions in `pieces` of the folds whose training rows hold two classes or more
    for i, (tr, te, _) in enumerate(pieces):
        classes = np.unique(y[tr])
        if len(classes) == 1:  # tiny data: the training folds hold a single class
            proba[te, classes[0]] = 1.0
        else:
            fit.append(i)
    if fit:
        shared = executor.put({"x": x, "y": y, "seed": seed, "n_classes": n_classes})
        tr0, te0, w0 = pieces[fit[0]]
        grid = executor.map(_fold_proba, [(tr0, te0, w0, c) for c in C_GRID], shared=shared,
                            stage="out-of-fold models", label=lambda p: f"first fold, C={p[3]}")
        best = None  # (held-out log-loss, C, probabilities); the first of equal losses wins
        for c, p in zip(C_GRID, grid, strict=True):
            loss = -np.log(np.clip(p[np.arange(len(te0)), y[te0]], 1e-12, None)).mean()
            if best is None or loss < best[0]:
                best = (loss, c, p)
        _, chosen_c, proba[te0] = best
        logger.debug("out-of-fold model: logistic regression with C=%s", chosen_c)
        rest = [(*pieces[i], chosen_c) for i in fit[1:]]
        for (_, te, _, _), p in zip(rest, executor.map(
                _fold_proba, rest, shared=shared, stage="out-of-fold models",
                label=lambda p: f"fold of {len(p[1])} rows"), strict=True):
            proba[te] = p
    proba = np.clip(proba, 1e-9, None)
    return proba / proba.sum(1, keepdims=True)


def out_of_fold_proba(
    features: np.ndarray, labels: np.ndarray, *, n_classes: int, folds: int = 5, seed: int = 0,
    max_fit_rows: int | None = MAX_FIT_ROWS, executor: Executor | None = None,
) -> np.ndarray:
    """Class probabilities of each point from a model that never saw that point.

    A multinomial logistic regression on standardised features is trained on
    ``folds - 1`` stratified folds (at most ``max_fit_rows`` of their rows, see
    :func:`fit_rows`) and predicts the held-out fold. Its regularisation is
    picked from :data:`C_GRID` by held-out log-loss on the first fold. When no
    class has ``folds`` members the number of folds is reduced (at least 2); a
    class with fewer members than folds simply is not in every fold, and a class
    missing from a training fold gets (near) zero probability there.

    Args:
        features: ``(N, D)`` embeddings.
        labels: ``(N,)`` given labels in ``[0, n_classes)``.
        n_classes: Number of classes (columns of the result).
        folds: Number of stratified folds.
        seed: Seed of the fold assignment, the row sample and the model.
        max_fit_rows: Most rows each fold's model is fit on; ``None``: all.
        executor: Where the folds' fits run (:mod:`core.cluster`), one piece per fit;
            ``None``: one after another in this process. The same seed gives the same
            probabilities either way.

    Returns:
        ``(N, n_classes)`` float64, rows sum to 1.
    """
    x, y = validate_inputs(features, labels, n_classes, folds)
    _check_max_fit_rows(max_fit_rows)
    return compute_oof(x, y, n_classes, folds, seed, max_fit_rows=max_fit_rows, executor=executor)


def _check_max_fit_rows(value: object) -> None:
    if value is not None and (not _is_int(value) or value < 2):
        raise ConfigError(f"max_fit_rows must be None (all rows) or an int of at least 2; got {value!r}.")


def cleanlab_issues(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """cleanlab's ``find_label_issues`` (prune by noise rate) as an ``(N,)`` bool mask.

    Always in this process (``n_jobs``): by default cleanlab forks a pool of every CPU, which
    hung the app when forked from the Streamlit server (see :mod:`core.processes`).
    """
    from cleanlab.filter import find_label_issues

    from core.processes import ENGINE_N_JOBS

    y, proba = present_classes(y, proba)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(find_label_issues(y, proba, n_jobs=ENGINE_N_JOBS), dtype=bool)


def present_classes(y: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop classes with no examples and renumber (cleanlab wants every class present)."""
    present = np.unique(y)
    if len(present) == proba.shape[1]:
        return y, proba
    remap = np.full(proba.shape[1], -1)
    remap[present] = np.arange(len(present))
    sub = proba[:, present]
    return remap[y], sub / sub.sum(1, keepdims=True)


def cleanlab_flags(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    folds: int = 5,
    seed: int = 0,
    pred_probs: np.ndarray | None = None,
    max_fit_rows: int | None = MAX_FIT_ROWS,
    executor: Executor | None = None,
) -> np.ndarray:
    """Confident learning: cleanlab's ``find_label_issues`` on out-of-fold probabilities.

    Args:
        features: ``(N, D)`` embeddings.
        labels: ``(N,)`` given labels in ``[0, n_classes)``.
        n_classes: Number of classes.
        folds: Folds of :func:`out_of_fold_proba` (unused when ``pred_probs`` is given).
        seed: Seed of :func:`out_of_fold_proba`.
        pred_probs: ``(N, n_classes)`` out-of-fold probabilities already computed, or ``None``.
        max_fit_rows: Most rows each fold's model is fit on (:func:`out_of_fold_proba`).
        executor: Where the out-of-fold fits run (:func:`out_of_fold_proba`); ``None``: here.

    Returns:
        ``(N,)`` bool, True where cleanlab finds a label issue.
    """
    x, y = validate_inputs(features, labels, n_classes, folds)
    _check_max_fit_rows(max_fit_rows)
    if pred_probs is None:
        proba = compute_oof(x, y, n_classes, folds, seed, max_fit_rows=max_fit_rows, executor=executor)
    else:
        proba = validate_pred_probs(pred_probs, len(y), n_classes)
    return cleanlab_issues(y, proba)
