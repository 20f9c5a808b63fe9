"""Greedy facility location (per class, like CRAIG): maximise total similarity to the subset."""

from __future__ import annotations

import numpy as np
import torch

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register, stratified_quotas

__all__ = [
    "FacilityLocationSelector",
    "facility_location_greedy",
    "facility_location_joint",
    "facility_location_per_class",
]


def facility_location_greedy(
    x: np.ndarray, k: int, *, power: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of ``sum_i max_{j in S} s(i, j)``, ``s = d_max - d`` (``d`` euclidean
    raised to ``power``: 1 is k-median; larger powers weigh far, poorly covered points more).
    Towards k-center as the power grows.

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
    cur = torch.zeros(n)
    chosen = torch.zeros(n, dtype=torch.bool)
    order, gains = [], []
    for _ in range(k):
        g = torch.clamp(sim - cur[:, None], min=0).sum(0)  # (n,) gain of each candidate
        g[chosen] = -1.0
        j = int(torch.argmax(g))
        order.append(j)
        gains.append(float(g[j]))
        chosen[j] = True
        cur = torch.maximum(cur, sim[:, j])
    return np.asarray(order), np.asarray(gains)


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
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location inside each class, ``quotas[c]`` picks from class ``c``.

    Classes with more than ``max_class`` allowed candidates run on a random sample
    of them (the greedy is O(n^2) in memory per class).

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
        if len(members) > max_class:
            members = np.sort(rng.choice(members, max_class, replace=False))
        order, _ = facility_location_greedy(x[members], int(quotas[c]), power=power)
        selected[members[order]] = True
        scores[members[order]] = 1.0 + (len(order) - np.arange(len(order))) / len(order)
        if reporter is not None:
            reporter.report("selection", (c + 1) / len(quotas), f"class {c + 1}/{len(quotas)}")
    return selected, scores


def facility_location_joint(
    x: np.ndarray, y: np.ndarray, k: int, *, allowed: np.ndarray | None = None, max_class: int = 5000,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Greedy facility location with points represented only inside their class, no class quotas.

    Each step opens the point with the largest gain over all classes, so a class
    gets as many points as its spread earns, not its size share. Gains share one
    unit (``s = d_max - d`` with the largest distance over all classes). A pick
    changes only its own class's gains, so each step recomputes one class.

    Returns:
        ``(order,)`` indices in pick order, ``min(k, allowed)`` of them; a prefix of it is
        the greedy set of that smaller size.
    """
    n = len(y)
    rng = rng or np.random.default_rng(0)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
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


@register("facility_location", "Facility location (greedy, per class)")
class FacilityLocationSelector(SelectionMethod):
    """Per-class greedy facility location with class quotas proportional to class sizes.

    Ignores flags (a pure coverage baseline). For classes larger than ``max_class``
    the greedy runs on a random subsample of candidates.
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
