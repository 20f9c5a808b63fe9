"""Out-of-fold class probabilities and confident learning (cleanlab) on them.

Every point is scored by a model trained on the other folds only, so a wrong
label cannot be memorised by the model that judges it.

Each fold's model is fit on at most :data:`MAX_FIT_ROWS` of the other folds' rows
(a stratified random sample, weighted back to the full folds' class counts): a
linear model of ``D x C`` weights gains nothing measurable from 800,000 rows over
50,000, while its L-BFGS fits grew linearly with them (the out-of-fold part alone
would have taken most of the 30 minutes a million points are given). Below the
cap every fold's model sees all the other folds' rows, as before.

With ``model="auto"`` (the detector's default) a second, non-linear model runs on the
same folds: extremely randomised trees (:mod:`core.mislabel.trees`, at most
:data:`~core.mislabel.trees.TREE_MAX_FIT_ROWS` rows a fold). The probabilities are
``(1 - w) p_logistic + w p_trees`` with ``w`` from :data:`TREE_WEIGHTS`, chosen like
``C``: by held-out log-loss of the given labels on the first fold (never by anything
that knows which labels are wrong). Where the classes are linear ``w`` is small or 0,
and at ``w = 0`` the trees are fit on the first fold only.

Each fit is a piece of work for a :class:`~core.cluster.Executor` (``executor=``): in
this process by default, or one Ray task per fit on a cluster. Folds and row samples
are drawn before any fit, so both give the same probabilities for a seed.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError
from core.mislabel.inputs import _is_int, validate_inputs, validate_pred_probs

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = [
    "MAX_FIT_ROWS",
    "OOF_MODELS",
    "TREE_WEIGHTS",
    "cleanlab_flags",
    "check_model",
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


#: Out-of-fold models: ``"logistic"`` alone, or ``"auto"``: logistic and trees blended by ``w``.
OOF_MODELS = ("logistic", "auto")

#: Weights ``w`` of the trees' probabilities tried by ``model="auto"``; the first of equal
#: held-out losses wins, so a tie keeps the logistic model alone.
TREE_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)

_TREES = "trees"  # the model slot of a piece that fits the forest instead of a logistic C


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
    y: np.ndarray, n_classes: int, folds: int, seed: int, max_fit_rows: int | None,
    stream: int = 0,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """Each fold's ``(fit rows, held-out rows, sample weights)``.

    The row samples are drawn here, fold after fold from one generator, so that where the
    fits then run (this process or a cluster) cannot change them. ``stream`` 0 is the
    logistic model's generator (as it always was), 1 the trees'; the folds are the same.
    """
    rng = np.random.default_rng(seed if stream == 0 else [seed, stream])
    pieces = []
    for tr, te in _splits(y, n_classes, folds, seed):
        pick, weight = fit_rows(y[tr], n_classes, max_fit_rows, rng)
        pieces.append((tr[pick], te, weight))
    return pieces


def _fold_proba(shared: dict, piece: tuple) -> np.ndarray:
    """One fold's work: fit on its rows with inverse regularisation ``c`` (or the trees, when ``c``
    is ``"trees"``), predict its held-out rows.

    A piece of :func:`compute_oof` for an :class:`~core.cluster.Executor` (a Ray worker
    imports it by name); ``shared`` holds the validated features and labels.
    """
    tr, te, weight, c = piece
    x, y = shared["x"], shared["y"]
    if c == _TREES:
        from core.mislabel.trees import tree_proba

        return tree_proba(x[tr], y[tr], x[te], shared["n_classes"], shared["seed"], weight)
    x_tr, x_te = _standardise(x[tr], x[te])
    return _predict(_logreg(x_tr, y[tr], c, shared["seed"], weight), x_te, shared["n_classes"])


def compute_oof(
    x: np.ndarray, y: np.ndarray, n_classes: int, folds: int, seed: int,
    *, max_fit_rows: int | None = MAX_FIT_ROWS, executor: Executor | None = None,
    model: str = "logistic",
) -> np.ndarray:
    """Out-of-fold probabilities on validated input (see :func:`out_of_fold_proba`).

    Two rounds of pieces on ``executor``: the first fold with two classes fit with every
    :data:`C_GRID` value (and, for ``model="auto"``, with the trees); its held-out log-loss
    picks ``C`` (and the trees' weight ``w``); then every other fold with those (the
    trees only where ``w > 0``, the logistic model only where ``w < 1``). The features go
    to the executor once; each piece is one fit and one prediction.
    """
    from core.cluster import LocalExecutor
    from core.mislabel.trees import TREE_MAX_FIT_ROWS

    executor = executor or LocalExecutor()
    pieces = _fold_pieces(y, n_classes, folds, seed, max_fit_rows)
    trees = model == "auto"
    if trees:
        cap = TREE_MAX_FIT_ROWS if max_fit_rows is None else min(max_fit_rows, TREE_MAX_FIT_ROWS)
        tree_pieces = _fold_pieces(y, n_classes, folds, seed, cap, stream=1)
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
        first = [(tr0, te0, w0, c) for c in C_GRID]
        if trees:
            first.append((*tree_pieces[fit[0]], _TREES))
        grid = executor.map(_fold_proba, first, shared=shared, stage="out-of-fold models",
                            label=lambda p: f"first fold, {'C=' if p[3] != _TREES else ''}{p[3]}")

        def loss(p: np.ndarray) -> float:
            return float(-np.log(np.clip(p[np.arange(len(te0)), y[te0]], 1e-12, None)).mean())

        best = None  # (held-out log-loss, C, probabilities); the first of equal losses wins
        for c, p in zip(C_GRID, grid, strict=False):
            if best is None or loss(p) < best[0]:
                best = (loss(p), c, p)
        _, chosen_c, p_lin = best
        w = 0.0
        if trees:
            p_tree = grid[-1]
            w = min(TREE_WEIGHTS, key=lambda v: (loss((1 - v) * p_lin + v * p_tree), TREE_WEIGHTS.index(v)))
            p_lin = (1 - w) * p_lin + w * p_tree
        proba[te0] = p_lin
        logger.debug("out-of-fold model: logistic regression with C=%s, trees' weight %s", chosen_c, w)
        rest = [(*pieces[i], chosen_c) for i in fit[1:]] if w < 1 else []
        rest += [(*tree_pieces[i], _TREES) for i in fit[1:]] if w > 0 else []
        outputs = executor.map(_fold_proba, rest, shared=shared, stage="out-of-fold models",
                               label=lambda p: f"fold of {len(p[1])} rows") if rest else []
        for (_, te, _, c), p in zip(rest, outputs, strict=True):
            proba[te] += (w if c == _TREES else 1 - w) * p
    proba = np.clip(proba, 1e-9, None)
    return proba / proba.sum(1, keepdims=True)


def out_of_fold_proba(
    features: np.ndarray, labels: np.ndarray, *, n_classes: int, folds: int = 5, seed: int = 0,
    max_fit_rows: int | None = MAX_FIT_ROWS, executor: Executor | None = None,
    model: str = "logistic",
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
        model: ``"logistic"``, or ``"auto"``: blended with extremely randomised trees by a
            weight chosen on the first fold (module docstring; the detector's default).

    Returns:
        ``(N, n_classes)`` float64, rows sum to 1.
    """
    x, y = validate_inputs(features, labels, n_classes, folds)
    _check_max_fit_rows(max_fit_rows)
    check_model(model)
    return compute_oof(x, y, n_classes, folds, seed, max_fit_rows=max_fit_rows, executor=executor,
                       model=model)


def check_model(value: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of :data:`OOF_MODELS`."""
    if value not in OOF_MODELS:
        raise ConfigError(f"model must be one of {', '.join(OOF_MODELS)}; got {value!r}.")


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
