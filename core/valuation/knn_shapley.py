"""Exact KNN-Shapley (Jia et al. 2019) with respect to the validation set; top-k."""

from __future__ import annotations

import numpy as np
import torch

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register, top_k_mask

__all__ = ["KNNShapleySelector", "knn_shapley_values"]


def knn_shapley_values(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
    k: int = 5, chunk: int = 256,
) -> np.ndarray:
    """``(N,)`` exact KNN-Shapley values (the recursion of Jia et al. 2019, Thm. 1), averaged over val.

    For a validation point with training points sorted by distance
    ``alpha_1..alpha_N``: ``s_N = 1[y_N = y] / N`` and
    ``s_i = s_{i+1} + (1[y_i = y] - 1[y_{i+1} = y]) / k * min(k, i) / i``.
    """
    xt = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
    yt = torch.as_tensor(np.asarray(y_train))
    n = len(xt)
    total = torch.zeros(n, dtype=torch.float64)
    i = torch.arange(1, n, dtype=torch.float64)  # positions 1..N-1
    coef = torch.minimum(torch.full_like(i, k), i) / (k * i)
    for s in range(0, len(x_val), chunk):
        xv = torch.as_tensor(np.asarray(x_val[s:s + chunk], dtype=np.float32))
        yv = torch.as_tensor(np.asarray(y_val[s:s + chunk]))
        order = torch.argsort(torch.cdist(xv, xt), dim=1, stable=True)  # (b, N)
        match = (yt[order] == yv[:, None]).double()  # (b, N)
        diffs = (match[:, :-1] - match[:, 1:]) * coef  # term for positions 1..N-1
        # s_i = s_N + sum_{t >= i} diffs_t: reverse cumulative sum
        tail = torch.flip(torch.cumsum(torch.flip(diffs, [1]), 1), [1])
        vals = torch.cat([tail, torch.zeros(len(xv), 1, dtype=torch.float64)], 1) + (match[:, -1:] / n)
        total.scatter_add_(0, order.reshape(-1), vals.reshape(-1))
    return (total / len(x_val)).numpy()


@register("knn_shapley", "KNN-Shapley (top-k)")
class KNNShapleySelector(SelectionMethod):
    """Top-k of exact KNN-Shapley values w.r.t. the validation set (per point, not subset-aware)."""

    def __init__(self, *, n_neighbors: int = 5) -> None:
        super().__init__()
        self.n_neighbors = int(n_neighbors)

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        vals = knn_shapley_values(task.x_train, task.y_train, task.x_val, task.y_val, k=self.n_neighbors)
        return top_k_mask(vals, task.k), vals, {"n_neighbors": self.n_neighbors}
