"""Neighbourhood signals of a wrong label, computed in the embedding space.

All signals are ``(N,)`` suspicions in [0, 1] (higher = more likely mislabelled),
and every one excludes the point itself (by index, so exact duplicates of a
point still count as its neighbours).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Neighbours", "neighbours", "knn_label_distribution", "representation_cost",
           "reverse_knn_disagreement"]


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` nearest other points of every point, nearest first."""

    index: np.ndarray  # (N, k) int64
    dist: np.ndarray  # (N, k) float64 Euclidean distances


def neighbours(x: np.ndarray, k: int) -> Neighbours:
    """The ``k`` nearest neighbours of each row of ``x`` among the other rows (:func:`core.knn.knn`).

    Exact up to :data:`core.knn.EXACT_MAX_PAIRS` point pairs (every size the detector was
    tuned and tested on), approximate (IVF) beyond; distances are recomputed exactly in
    float64 for the neighbours found, so exact duplicates are at distance 0.
    """
    from core.knn import knn

    k = int(min(k, len(x) - 1))
    if k < 1:  # a single point has no other rows
        return Neighbours(index=np.zeros((len(x), 0), dtype=np.int64), dist=np.zeros((len(x), 0)))
    dist, index = knn(np.asarray(x, dtype=np.float64), k, exclude_self=True)
    return Neighbours(index=index.astype(np.int64), dist=dist.astype(np.float64))


def knn_label_distribution(nb: Neighbours, y: np.ndarray, n_classes: int, k: int) -> np.ndarray:
    """``(N, C)`` label distribution of the ``k`` nearest neighbours (add-half smoothed)."""
    ly = y[nb.index[:, :k]]  # (N, k)
    counts = np.zeros((len(y), n_classes))
    for c in range(n_classes):
        counts[:, c] = (ly == c).sum(1)
    counts += 0.5 / n_classes
    return counts / counts.sum(1, keepdims=True)


def representation_cost(x: np.ndarray, y: np.ndarray, nb: Neighbours, k: int) -> np.ndarray:
    """HOST-CP's label-aware representation cost, as a suspicion in [0, 1].

    Under a distance that forbids representing a point by another label, point
    ``i`` costs ``d_same`` = mean distance to its ``k`` nearest *same-label*
    points; without the label, ``d_any`` = mean distance to its ``k`` nearest
    points. The suspicion is ``1 - d_any / d_same``: 0 when its own class is
    all around it, near 1 when its label is an island in another class. A point
    alone in its class gets 1.
    """
    n = len(y)
    d_any = nb.dist[:, :k].mean(1)
    d_same = np.empty(n)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        if len(members) == 1:
            d_same[members] = np.inf
            continue
        kc = min(k, len(members) - 1)
        d_same[members] = neighbours(x[members], kc).dist.mean(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = 1.0 - d_any / d_same
    cost[d_same == 0] = 0.0  # exact duplicates with the same label: free to represent
    return np.clip(np.nan_to_num(cost, nan=0.0), 0.0, 1.0)


def reverse_knn_disagreement(
    nb: Neighbours, y: np.ndarray, k: int, prior: np.ndarray
) -> np.ndarray:
    """Share of the points that count ``i`` among their ``k`` neighbours with another label.

    A point nobody has as a neighbour falls back to ``prior`` (one pseudo-count).
    """
    n = len(y)
    k = min(k, nb.index.shape[1])
    src = np.repeat(np.arange(n), k)  # point j ...
    dst = nb.index[:, :k].ravel()  # ... has i = dst among its neighbours
    count = np.bincount(dst, minlength=n).astype(np.float64)
    differ = np.bincount(dst, weights=(y[src] != y[dst]).astype(np.float64), minlength=n)
    return (differ + prior) / (count + 1.0)
