"""phi: the learned metric ``f_phi(x, y)`` and opening cost ``c_phi(y, q)`` of HOST-CP."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.selection.config import HostCPConfig

__all__ = ["COST_SCALE", "SelectionModel", "pca_projection", "initial_model"]

#: Scale ``s`` of the opening cost ``c_phi = s * softplus(...)``. Distances in a batch problem have
#: mean 1, so at the start a point costs ``0.1 * log 2 = 0.07`` to open: small against what it saves
#: in distance, so the budget and the quotas, not the cost, decide how many points open, and the
#: learned part (``cost_q``, ``cost_y``) moves the cost from there. Never tuned on its own.
COST_SCALE = 0.1


class SelectionModel(torch.nn.Module):
    """``f_phi(x, y) = W x + E[y]`` and opening cost ``c_phi(y, q) = s * softplus(a q + b_y)``."""

    def __init__(self, dim: int, n_classes: int, config: HostCPConfig, generator: torch.Generator):
        super().__init__()
        p = config.proj_dim
        w = torch.randn(dim, p, generator=generator) / math.sqrt(p)  # JL-like; initial_model: PCA axes
        self.proj = torch.nn.Parameter(w)
        self.label_emb = torch.nn.Parameter(torch.zeros(n_classes, p))  # starts label-blind
        self.cost_q = torch.nn.Parameter(torch.zeros(()))
        self.cost_y = torch.nn.Parameter(torch.zeros(n_classes))
        self.learn_cost = config.learn_cost
        self.cost_scale = COST_SCALE

    def features(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, p)`` points in f_phi space."""
        return x @ self.proj + self.label_emb[y]  # E starts at 0: label-blind until phi learns

    def cost(self, y: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``(B,)`` opening cost (constant when ``learn_cost`` is off)."""
        if not self.learn_cost:
            return torch.full(y.shape, self.cost_scale * math.log(2.0), device=y.device)
        return self.cost_scale * F.softplus(self.cost_q * q + self.cost_y[y])


def pca_projection(x: np.ndarray, p: int, *, max_rows: int = 100_000, seed: int = 0) -> torch.Tensor:
    """``(D, p)`` orthonormal top principal axes of ``x`` (zero columns when ``D < p``).

    Distances after it are the encoder's own distances restricted to the ``p``
    directions of largest variance: exact when ``D <= p``, the best rank-``p``
    approximation otherwise, unlike a random projection, which distorts them.
    Above ``max_rows`` rows the axes come from a random sample of that many (the
    SVD of a million rows in float64 would take 0.5 GB and minutes for nothing:
    the top axes of 100,000 rows are the same to a few parts in a thousand).
    """
    if len(x) > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    xt = xt - xt.mean(0)
    _, _, vh = torch.linalg.svd(xt, full_matrices=False)  # rows of vh: axes by variance
    w = torch.zeros(x.shape[1], p, dtype=torch.float64)
    q = min(p, vh.shape[0])
    w[:, :q] = vh[:q].T
    return w.to(torch.float32)


def initial_model(x_train: np.ndarray, n_classes: int, cfg: HostCPConfig, seed: int,
                  device: torch.device) -> SelectionModel:
    """phi at the start: the encoder's metric (its top PCA axes), label-blind.

    A random projection at the start lost on the tuning folds (it distorts distances on
    low-dimensional data; README, "How the read-out was chosen"). The label embedding
    starts at zero and is learned with phi (it was optional, ``use_labels``, until the
    target setting took its place among the 15); a non-zero start was a setting from
    the first version on that no benchmark ever chose.
    """
    gen = torch.Generator().manual_seed(int(seed))
    model = SelectionModel(x_train.shape[1], n_classes, cfg, gen)
    with torch.no_grad():
        model.proj.copy_(pca_projection(x_train, cfg.proj_dim, seed=int(seed)))
    return model.to(device)
