"""phi: the learned metric ``f_phi(x, y)`` and opening cost ``c_phi(y, q)`` of HOST-CP."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.selection.config import HostCPConfig

__all__ = ["SelectionModel", "pca_projection", "initial_model"]


class SelectionModel(torch.nn.Module):
    """``f_phi(x, y) = W x + E[y]`` and opening cost ``c_phi(y, q) = s * softplus(a q + b_y)``."""

    def __init__(
        self, dim: int, n_classes: int, config: HostCPConfig, generator: torch.Generator,
        *, label_scale: float = 0.0,
    ):
        super().__init__()
        p = config.proj_dim
        w = torch.randn(dim, p, generator=generator) / math.sqrt(p)  # JL-like: keeps distances
        self.proj = torch.nn.Parameter(w)
        emb = torch.randn(n_classes, p, generator=generator)
        emb = emb / emb.norm(dim=1, keepdim=True) * label_scale  # 0: starts label-blind
        self.label_emb = torch.nn.Parameter(emb)
        self.cost_q = torch.nn.Parameter(torch.zeros(()))
        self.cost_y = torch.nn.Parameter(torch.zeros(n_classes))
        self.use_labels = config.use_labels
        self.learn_cost = config.learn_cost
        self.cost_scale = config.cost_scale

    def features(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``(B, p)`` points in f_phi space."""
        f = x @ self.proj
        if self.use_labels:
            f = f + self.label_emb[y]
        return f

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


def initial_model(
    x_train: np.ndarray, n_classes: int, cfg: HostCPConfig, seed: int, rng: np.random.Generator,
    device: torch.device,
) -> SelectionModel:
    """phi at the start: the encoder's metric (``proj_init="pca"``) or a random projection."""
    n, dim = x_train.shape
    label_scale = 0.0
    if cfg.use_labels and cfg.label_init > 0:  # in units of the mean distance at init
        sample = x_train[rng.choice(n, min(n, 256), replace=False)]
        w0 = torch.randn(dim, cfg.proj_dim, generator=torch.Generator().manual_seed(int(seed)))
        f0 = torch.as_tensor(sample) @ (w0 / math.sqrt(cfg.proj_dim))
        label_scale = cfg.label_init * float(torch.cdist(f0, f0).mean()) / math.sqrt(2.0)
    gen = torch.Generator().manual_seed(int(seed))
    model = SelectionModel(dim, n_classes, cfg, gen, label_scale=label_scale)
    if cfg.proj_init == "pca":
        with torch.no_grad():
            model.proj.copy_(pca_projection(x_train, cfg.proj_dim, seed=int(seed)))
    return model.to(device)
