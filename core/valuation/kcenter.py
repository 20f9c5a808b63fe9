"""k-center greedy coreset (Sener & Savarese 2018): repeatedly add the farthest point."""

from __future__ import annotations

import numpy as np

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register

__all__ = ["KCenterSelector", "kcenter_greedy"]


def kcenter_greedy(x: np.ndarray, k: int, *, seed: int = 0, reporter: Reporter | None = None) -> np.ndarray:
    """Indices of ``k`` greedy k-center picks, in pick order (first = random start)."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    rng = np.random.default_rng(seed)
    sq = (x * x).sum(1)
    first = int(rng.integers(n))
    order = [first]
    dist = np.maximum(sq - 2 * x @ x[first] + sq[first], 0)  # (N,) squared distance to centers
    dist[first] = -1.0  # never picked twice (once exact duplicates are all covered, every distance is 0)
    for t in range(1, min(k, n)):
        j = int(np.argmax(dist))
        order.append(j)
        np.minimum(dist, np.maximum(sq - 2 * x @ x[j] + sq[j], 0), out=dist)
        dist[j] = -1.0
        if reporter is not None and t % 256 == 0:
            reporter.check_cancelled()
            reporter.report("selection", t / k, f"k-center {t}/{k}")
    return np.asarray(order)


@register("kcenter", "k-center greedy coreset")
class KCenterSelector(SelectionMethod):
    """Greedy k-center on the embeddings; ignores labels and flags."""

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        n, k = task.n, task.k
        order = kcenter_greedy(task.x_train, k, seed=task.seed, reporter=reporter)
        selected = np.zeros(n, dtype=bool)
        selected[order] = True
        scores = np.zeros(n)
        scores[order] = 1.0 + (k - np.arange(len(order))) / k  # earlier picks rank higher
        x = task.x_train
        rest = np.flatnonzero(~selected)
        if len(rest):  # unselected: farther from the centers = more novel
            c = x[order]
            d = np.full(len(rest), np.inf, dtype=np.float32)
            xr = x[rest]
            for s in range(0, len(c), 1024):
                cc = c[s:s + 1024]
                blk = (xr**2).sum(1)[:, None] - 2 * xr @ cc.T + (cc**2).sum(1)[None]  # squared dists
                d = np.minimum(d, np.maximum(blk, 0).min(1))
            scores[rest] = d / (d.max() + 1e-12) * 0.99
        return selected, scores, {}
