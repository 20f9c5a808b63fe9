"""The detector's non-linear out-of-fold model: extremely randomised trees on a capped sample.

Why trees: the logistic regression of :mod:`core.mislabel.oof` cannot follow classes
that are unions of scattered clusters or concentric shells, and the kNN signals fail
as well where many coordinates carry no class information (they drown Euclidean
distances). A forest of extremely randomised trees (Geurts et al. 2006, sklearn's
``ExtraTreesClassifier``) picks the informative coordinates itself and bends around
clusters; on ``core.data.demos.nonlinear_classes`` its out-of-fold self-confidence
ranks flipped labels at AUROC 0.99 where the logistic one is at 0.91-0.93
(``benchmarks/mislabel.py``). Extra trees rather than a random forest or gradient
boosting: better held-out log-loss there (0.94-1.01 against 1.04-1.20 for random forests,
100 trees each, 10% flipped) at a quarter of a random forest's time, and a quarter of
histogram boosting's with ten classes (one tree per class per round). Half the features
tried at each split, not the square root: with 30 of 40 coordinates noise, ``sqrt``
splits mostly on noise (AUROC 0.993 against 0.998). Rather than an MLP: no epochs to
tune, no device, bitwise the same on a Ray worker.

Cost stays bounded: each fold's forest is fit on at most :data:`TREE_MAX_FIT_ROWS`
rows (a weighted stratified sample, :func:`core.mislabel.oof.fit_rows`) and
predicts the held-out fold in chunks; one thread (``n_jobs=1``, no worker pool).
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_FEATURES", "MIN_SAMPLES_LEAF", "N_TREES", "TREE_MAX_FIT_ROWS", "tree_proba"]

#: Trees per fold's forest: 50 keep the benchmark's AUROC (``benchmarks/mislabel.py``) at half
#: the time of 100 (100 cost 61 s more than the logistic model alone at 100,000 points).
N_TREES = 50

#: Rows per leaf, at least: leaves of one row would give 0/1 probabilities that a flipped
#: label in the training folds pushes to certainty; three soften them (held-out log-loss).
MIN_SAMPLES_LEAF = 3

#: Share of the features tried at each split (see the module docstring).
MAX_FEATURES = 0.5

#: Most rows each fold's forest is fit on (the logistic model's cap is larger, it is cheaper
#: per row): fits then cost about the same from 6,250 points to a million.
TREE_MAX_FIT_ROWS = 5_000

_PREDICT_CHUNK = 65_536  # held-out rows per predict_proba call, to bound memory at 10^6 points


def tree_proba(
    x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, n_classes: int, seed: int,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """Fit a forest on ``(x_tr, y_tr)`` and return ``(len(x_te), n_classes)`` class probabilities.

    Classes absent from ``y_tr`` get probability 0 (the caller clips and renormalises).
    """
    from sklearn.ensemble import ExtraTreesClassifier

    from core.processes import ENGINE_N_JOBS

    forest = ExtraTreesClassifier(
        n_estimators=N_TREES, min_samples_leaf=MIN_SAMPLES_LEAF, max_features=MAX_FEATURES,
        random_state=seed, n_jobs=ENGINE_N_JOBS,  # no worker processes (core.processes)
    ).fit(np.asarray(x_tr, dtype=np.float32), y_tr, sample_weight=weight)
    out = np.zeros((len(x_te), n_classes))
    for start in range(0, len(x_te), _PREDICT_CHUNK):
        part = np.asarray(x_te[start:start + _PREDICT_CHUNK], dtype=np.float32)
        out[start:start + len(part), forest.classes_] = forest.predict_proba(part)
    return out
