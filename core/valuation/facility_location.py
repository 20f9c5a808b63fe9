"""Greedy facility location (per class, like CRAIG): maximise total similarity to the subset.

Two forms of the same greedy. *Dense* (:func:`facility_location_greedy`) holds the
``n x n`` distances of a class: exact k-median greedy, ``O(n^2)`` memory, ``O(n^2)``
work per pick. *Sparse* (:func:`facility_location_sparse`) holds only each point's
``m`` nearest neighbours (:func:`core.knn.knn`) and runs the exact greedy on the
k-median cost with each point's distance *truncated at its own kNN radius*
``r_i`` (the distance to its ``m``-th neighbour)::

    cost(S) = sum_i min(d(i, S), r_i) ** power

which is the dense cost for every point whose nearest chosen point lies among its
``m`` neighbours (no approximation there) and charges ``r_i ** power`` to the
rest: memory ``O(n m)``, no ``n x n`` anywhere and no candidate subsampling.
``m`` grows as the budget shrinks (:func:`graph_neighbours`), so that most
points end with a chosen point among their neighbours. The per-class entry
points pick dense or sparse by class size (:data:`DENSE_MAX_CLASS`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register, stratified_quotas

__all__ = [
    "DENSE_MAX_CLASS",
    "FacilityLocationSelector",
    "facility_location_greedy",
    "facility_location_joint",
    "facility_location_per_class",
    "facility_location_sparse",
    "graph_neighbours",
]

logger = logging.getLogger(__name__)

#: Classes up to this many candidates run the dense greedy, larger ones the sparse one.
#: Measured (``benchmarks/readout.py --crossover``, 32-d mixture, torch at 1 thread, dense / sparse
#: ms at budgets 5 / 10 / 30 %): 300 points 2/29, 5/15, 18/13; 500 points 15/51, 31/29, 79/31;
#: 1,000 points 1083/112, 431/58, 1004/40; 2,000 points 2356/321, 12263/137, 45395/128.
DENSE_MAX_CLASS = 500
#: Sparse graph: about this many neighbours per chosen point's share of the class ...
GRAPH_COVER = 3.0
#: ... within these bounds (memory is ``n * m`` distances and indices).
GRAPH_MIN, GRAPH_MAX = 10, 64


def facility_location_greedy(
    x: np.ndarray, k: int, *, power: float = 1.0, weights: np.ndarray | None = None,
    own_gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of ``sum_i w_i max_{j in S} s(i, j)``, ``s = d_max - d`` (``d`` euclidean
    raised to ``power``: 1 is k-median; larger powers weigh far, poorly covered points more).
    Towards k-center as the power grows. ``weights`` (``(n,)``, >= 0; ``None``: all 1) say how
    much each point counts as one to be represented (a target's density ratio). ``own_gain``
    (``(n,)`` in [0, 1]; ``None``: all 1) is how much of a candidate's gain for covering *itself*
    counts: 0 lets a point gain only for the others it represents, so a point far from the rest
    of its class (a mislabel the detector missed) is no longer drawn in for being alone.

    Exact greedy, vectorised with torch over all candidates per step (O(n^2) per pick);
    callers run it per class to keep ``n`` small.

    Returns:
        ``(order (k,) indices in pick order, gains (k,) marginal gain of each pick)``.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n = len(xt)
    k = min(k, n)
    if k == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    d = torch.cdist(xt, xt)  # (n, n)
    if power != 1.0:
        d = d.pow(power)
    sim = d.max() - d
    if weights is not None:  # w_i >= 0 scales row i: max_j w_i s(i, j) = w_i max_j s(i, j)
        sim = sim * torch.as_tensor(np.asarray(weights), dtype=sim.dtype)[:, None]
    cur = torch.zeros(n)
    chosen = torch.zeros(n, dtype=torch.bool)
    order, gains = [], []
    drop = None if own_gain is None else 1.0 - torch.as_tensor(np.asarray(own_gain), dtype=sim.dtype)
    own_sim = torch.diagonal(sim)  # each candidate's similarity to itself
    for _ in range(k):
        g = torch.clamp(sim - cur[:, None], min=0).sum(0)  # (n,) gain of each candidate
        if drop is not None:  # less of the gain for covering itself
            g = g - drop * torch.clamp(own_sim - cur, min=0)
        g[chosen] = -1.0
        j = int(torch.argmax(g))
        order.append(j)
        gains.append(float(g[j]))
        chosen[j] = True
        cur = torch.maximum(cur, sim[:, j])
    return np.asarray(order), np.asarray(gains)


def graph_neighbours(n: int, k: int) -> int:
    """Neighbours per point of the sparse graph for ``k`` picks among ``n`` points.

    A chosen point represents about ``n / k`` points; ``GRAPH_COVER`` times that many
    neighbours (within ``[GRAPH_MIN, GRAPH_MAX]``, at most ``n - 1``) leave most points
    with a chosen point among them, where the truncated cost is the dense one.
    """
    m = int(math.ceil(GRAPH_COVER * n / max(k, 1)))
    return max(1, min(n - 1, max(GRAPH_MIN, min(GRAPH_MAX, m))))


def facility_location_sparse(
    x: np.ndarray, k: int, *, power: float = 1.0, n_neighbors: int | None = None,
    weights: np.ndarray | None = None, own_gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location on a kNN graph (module docstring): memory ``O(n m)``.

    Args:
        x: ``(n, D)`` points.
        k: Picks.
        power: Distances enter raised to this power (as in :func:`facility_location_greedy`).
        n_neighbors: ``m``, neighbours per point; ``None``: :func:`graph_neighbours`.
        weights: ``(n,)`` how much each point counts (>= 0), as in :func:`facility_location_greedy`.
        own_gain: ``(n,)`` share of each candidate's gain for covering itself, as there.

    Returns:
        ``(order (k,) indices in pick order, gains (k,) marginal gain of each pick)``, gains
        in the truncated cost's units.
    """
    n = len(x)
    k = min(int(k), n)
    if k == 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    if n == 1:
        return np.zeros(1, dtype=int), np.zeros(1)
    nbr, sim = _graph(np.asarray(x), n_neighbors or graph_neighbours(n, k), power)
    if weights is not None:
        sim = sim * np.asarray(weights, dtype=np.float64)[:, None]
    return _sparse_greedy(nbr, sim, k, own_gain=own_gain)


def _graph(x: np.ndarray, m: int, power: float) -> tuple[np.ndarray, np.ndarray]:
    """``(nbr (n, m + 1), sim (n, m + 1))``: each point itself, then its ``m`` nearest others;
    ``sim[i, t] = r_i ** power - d(i, nbr[i, t]) ** power`` with ``r_i`` its ``m``-th distance."""
    from core.knn import knn

    n = len(x)
    m = max(1, min(int(m), n - 1))
    dist, idx = knn(np.asarray(x, dtype=np.float32), m)  # (n, m), self excluded by index
    nbr = np.concatenate([np.arange(n)[:, None], idx], axis=1).astype(np.int64)
    d = np.concatenate([np.zeros((n, 1)), dist.astype(np.float64)], axis=1)
    if power != 1.0:
        d = d ** power
    return nbr, d[:, -1:] - d  # (n, m + 1), >= 0; the m-th neighbour gains nothing


def _sparse_greedy(
    nbr: np.ndarray, sim: np.ndarray, k: int, *, own_gain: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact greedy on ``F(S) = sum_i max_{t: nbr[i, t] in S} sim[i, t]`` with incremental gains.

    ``gain[j] = sum over rows i listing j of max(0, sim[i, j] - cur[i])``. A pick ``j``
    raises ``cur`` only for the rows that list ``j`` (found through the column index);
    only the candidates in those rows' lists change gain, by the exact difference. Ties go
    to the lowest index, as ``argmax`` does in the dense greedy.
    """
    n, m = nbr.shape
    flat = nbr.ravel()
    by_col = np.argsort(flat, kind="stable")  # entries grouped by candidate j
    ptr = np.concatenate([[0], np.cumsum(np.bincount(flat, minlength=n))])
    sim_flat = sim.ravel()
    gain = np.bincount(flat, weights=sim_flat, minlength=n)  # (n,) float64
    own = None if own_gain is None else np.asarray(own_gain, dtype=np.float64)
    if own is not None:  # column 0 is each point itself (_graph): count only ``own`` of it
        gain -= (1.0 - own) * sim[:, 0]
    cur = np.zeros(n)
    order = np.empty(k, dtype=np.int64)
    gains = np.empty(k)
    for t in range(k):
        j = int(np.argmax(gain))
        order[t], gains[t] = j, gain[j]
        gain[j] = -np.inf
        ent = by_col[ptr[j]:ptr[j + 1]]
        rows, s = ent // m, sim_flat[ent]
        up = s > cur[rows]
        rows, new = rows[up], s[up]
        if len(rows) == 0:
            continue
        old = cur[rows]
        cur[rows] = new
        row_sim = sim[rows]  # (r, m + 1)
        delta = np.maximum(row_sim - old[:, None], 0.0) - np.maximum(row_sim - new[:, None], 0.0)
        if own is not None:
            delta[:, 0] *= own[rows]
        np.subtract.at(gain, nbr[rows].ravel(), delta.ravel())
    return order, gains


def facility_location_per_class(
    x: np.ndarray,
    y: np.ndarray,
    quotas: np.ndarray,
    *,
    allowed: np.ndarray | None = None,
    max_class: int = 5000,
    power: float = 1.0,
    rng: np.random.Generator | None = None,
    reporter: Reporter | None = None,
    sparse: bool | None = None,
    n_neighbors: int | None = None,
    weights: np.ndarray | None = None,
    own_gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location inside each class, ``quotas[c]`` picks from class ``c``.

    A class with more than :data:`DENSE_MAX_CLASS` allowed candidates runs the sparse
    greedy on all of them; a smaller one the dense greedy. Only the dense greedy
    (``sparse=False`` forces it) subsamples: a class with more than ``max_class``
    candidates runs on a random sample of them (it is O(n^2) in memory).

    Args:
        sparse: ``None`` by class size, ``True`` / ``False`` sparse / dense for every class.
        n_neighbors: Neighbours per point of the sparse graph (``None``: by the budget).
        weights: ``(N,)`` how much each point counts as one to be represented (``None``: alike).
        own_gain: ``(N,)`` share of each candidate's gain for covering itself (``None``: all of it).

    Returns:
        ``(selected (N,) bool, scores (N,))``; scores rank picks inside a class by
        pick order, normalised so classes interleave (0 for points not picked).
    """
    n = len(y)
    rng = rng or np.random.default_rng(0)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    selected = np.zeros(n, dtype=bool)
    scores = np.zeros(n)
    for c in range(len(quotas)):
        if reporter is not None:
            reporter.check_cancelled()
        members = np.flatnonzero((y == c) & allowed)
        if len(members) == 0 or quotas[c] == 0:
            continue
        if _use_sparse(sparse, len(members)):
            order, _ = facility_location_sparse(x[members], int(quotas[c]), power=power,
                                                n_neighbors=n_neighbors, **_rows(members, weights, own_gain))
        else:
            if len(members) > max_class:
                members = np.sort(rng.choice(members, max_class, replace=False))
            order, _ = facility_location_greedy(x[members], int(quotas[c]), power=power,
                                                **_rows(members, weights, own_gain))
        selected[members[order]] = True
        scores[members[order]] = 1.0 + (len(order) - np.arange(len(order))) / len(order)
        if reporter is not None:
            reporter.report("selection", (c + 1) / len(quotas), f"class {c + 1}/{len(quotas)}")
    return selected, scores


def _rows(members: np.ndarray, weights: np.ndarray | None, own_gain: np.ndarray | None) -> dict:
    """The per-point arrays of one class's members."""
    return {"weights": None if weights is None else weights[members],
            "own_gain": None if own_gain is None else np.asarray(own_gain)[members]}


def _use_sparse(sparse: bool | None, n: int) -> bool:
    return n > DENSE_MAX_CLASS if sparse is None else bool(sparse)


def facility_location_joint(
    x: np.ndarray, y: np.ndarray, k: int, *, allowed: np.ndarray | None = None, max_class: int = 5000,
    rng: np.random.Generator | None = None, sparse: bool | None = None, n_neighbors: int | None = None,
) -> np.ndarray:
    """Greedy facility location with points represented only inside their class, no class quotas.

    Each step opens the point with the largest gain over all classes, so a class
    gets as many points as its spread earns, not its size share. Dense (every class
    up to :data:`DENSE_MAX_CLASS`, or ``sparse=False``): gains share one unit
    (``s = d_max - d`` with the largest distance over all classes), a pick changes
    only its own class's gains, so each step recomputes one class; classes above
    ``max_class`` are subsampled. Sparse: one greedy over the union of the per-class
    kNN graphs (the truncated cost of the module docstring, which needs no shared unit).

    Returns:
        ``(order,)`` indices in pick order, ``min(k, allowed)`` of them; a prefix of it is
        the greedy set of that smaller size.
    """
    n = len(y)
    rng = rng or np.random.default_rng(0)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    sizes = np.bincount(y[allowed]) if allowed.any() else np.zeros(1, dtype=int)
    if _use_sparse(sparse, int(sizes.max())):
        return _joint_sparse(x, y, k, allowed, n_neighbors)
    blocks = []
    for c in np.unique(y[allowed]):
        members = np.flatnonzero((y == c) & allowed)
        if len(members) > max_class:
            members = np.sort(rng.choice(members, max_class, replace=False))
        xt = torch.as_tensor(np.asarray(x[members], dtype=np.float32))
        blocks.append([members, torch.cdist(xt, xt)])
    dmax = max(float(d.max()) for _, d in blocks) if blocks else 0.0
    state = []
    for members, d in blocks:
        sim = dmax - d
        state.append({"m": members, "sim": sim, "cur": torch.zeros(len(members)),
                      "gain": sim.sum(0), "taken": torch.zeros(len(members), dtype=torch.bool)})
    order = []
    for _ in range(min(k, int(sum(len(b[0]) for b in blocks)))):
        best = [float(s["gain"].max()) if not bool(s["taken"].all()) else -np.inf for s in state]
        s = state[int(np.argmax(best))]
        j = int(torch.argmax(s["gain"]))
        s["taken"][j] = True
        order.append(int(s["m"][j]))
        s["cur"] = torch.maximum(s["cur"], s["sim"][:, j])
        g = torch.clamp(s["sim"] - s["cur"][:, None], min=0).sum(0)
        g[s["taken"]] = -1.0
        s["gain"] = g
    return np.asarray(order, dtype=int)


def _joint_sparse(
    x: np.ndarray, y: np.ndarray, k: int, allowed: np.ndarray, n_neighbors: int | None
) -> np.ndarray:
    """Joint greedy on the union of per-class graphs (edges only inside a class)."""
    members_all = np.flatnonzero(allowed)
    k = min(int(k), len(members_all))
    if k == 0:
        return np.zeros(0, dtype=int)
    pos = np.full(len(y), -1, dtype=np.int64)
    pos[members_all] = np.arange(len(members_all))  # global index -> position in the union
    m = n_neighbors or graph_neighbours(len(members_all), k)
    nbrs, sims = [], []
    for c in np.unique(y[allowed]):
        members = np.flatnonzero((y == c) & allowed)
        if len(members) == 1:
            nbr, sim = np.zeros((1, 1), dtype=np.int64), np.zeros((1, 1))
        else:
            nbr, sim = _graph(x[members], min(m, len(members) - 1), 1.0)
        width = m + 1  # pad short classes with self at zero similarity (gains nothing)
        pad = width - nbr.shape[1]
        nbr = np.concatenate([nbr, np.repeat(nbr[:, :1], pad, axis=1)], axis=1)
        sim = np.pad(sim, ((0, 0), (0, pad)))
        nbrs.append(pos[members][nbr])
        sims.append(sim)
    order, _ = _sparse_greedy(np.concatenate(nbrs), np.concatenate(sims), k)
    return members_all[order]


@register("facility_location", "Facility location (greedy, per class)")
class FacilityLocationSelector(SelectionMethod):
    """Per-class greedy facility location with class quotas proportional to class sizes.

    Ignores flags (a pure coverage baseline). Classes above :data:`DENSE_MAX_CLASS` run
    the sparse greedy on all their candidates; ``max_class`` bounds the dense one only.
    """

    def __init__(self, *, max_class: int = 5000) -> None:
        super().__init__()
        self.max_class = int(max_class)

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        rng = np.random.default_rng(task.seed)
        quotas = stratified_quotas(task.y_train, task.k, task.n_classes)
        selected, scores = facility_location_per_class(
            task.x_train, task.y_train, quotas, max_class=self.max_class, rng=rng, reporter=reporter
        )
        short = task.k - int(selected.sum())
        if short > 0:  # subsampled classes could not fill their quota
            rest = np.flatnonzero(~selected)
            selected[rng.choice(rest, short, replace=False)] = True
        return selected, scores + selected * 1e-3, {"quotas": quotas.tolist()}
