"""One mini-batch problem of HOST-CP: its inputs, its solve (alone or stacked), its rounding.

:func:`batch_inputs` measures the distances of method.md step 1 in f_phi space
and pads them to the layer's fixed sizes; :func:`solve` sends several batch
problems to the solver in one call (they share one snapshot of the existing
set); :func:`lookahead_val_loss` is steps 2-4 (solve, one-step lookahead of the
model theta, validation loss); :func:`round_opened` is the read-out of a
fractional solution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.selection.config import HostCPConfig
from core.selection.layer import SelectionLayer
from core.selection.model import SelectionModel

__all__ = ["BatchInputs", "MISSING_COST", "batch_inputs", "nearest_existing", "solve", "lookahead_val_loss",
           "theta_step", "round_opened"]

#: Distances computed at once by :func:`nearest_existing` (float entries of one block: 128 MB in float32).
_NEAR_BLOCK = 1 << 25
#: Distance of a missing existing column (no existing set yet, or fewer than ``m`` points) and of
#: padding, in units of the batch's mean distance (distances have mean 1 in a problem): twice the
#: mean is farther than a point's real neighbours, so "unrepresented" costs more than any real
#: assignment, and it stays a constant so the problem keeps its shape (DPP). Never tuned: it only
#: has to be clearly above the typical distance (it was a HostCPConfig field nobody changed).
MISSING_COST = 2.0


@dataclass
class BatchInputs:
    """Padded problem inputs of one batch (layer order: dn, do, cost, ub, budget[, onehot, quota])."""

    idx: np.ndarray  # (r,) indices of the real incoming points
    dn: torch.Tensor  # (n, n) incoming-to-incoming distances
    do: torch.Tensor  # (n, m) distances to the m nearest existing points
    cost: torch.Tensor  # (n,) opening cost
    ub: torch.Tensor  # (n,) upper bound of u (0: may not open, padding)
    budget: torch.Tensor  # () opened mass allowed
    onehot: torch.Tensor | None  # (C, n) class membership, with quotas
    quota: torch.Tensor | None  # (C,) per-class opened mass allowed
    ub_real: np.ndarray  # (r,) the real rows' upper bounds
    scale: float = 1.0  # the distance unit of this problem (mean off-diagonal batch distance)

    @property
    def r(self) -> int:
        """Number of real (not padding) rows."""
        return len(self.idx)

    def params(self) -> list[torch.Tensor]:
        """The layer's inputs in :attr:`BatchProblem.parameters` order."""
        out = [self.dn, self.do, self.cost, self.ub, self.budget]
        if self.onehot is not None:
            out += [self.onehot, self.quota]
        return out


def batch_inputs(
    model: SelectionModel,
    layer: SelectionLayer,
    data: dict[str, torch.Tensor],
    idx: np.ndarray,
    existing: np.ndarray,
    budget: float,
    quota: np.ndarray | None,
    cfg: HostCPConfig,
    *,
    feats: torch.Tensor | None = None,
    near: torch.Tensor | None = None,
) -> BatchInputs:
    """Distances (method.md step 1) and the padded parameters of the batch problem.

    ``feats`` (every point in f_phi space) and ``near`` (the batch's distances to its
    nearest existing points, from :func:`nearest_existing`) are for the read-out passes,
    where phi is fixed: the features are then computed once a pass and the distances
    once a group, instead of re-projecting the whole existing set for every batch
    (at a million points that was most of a swap pass). A learning pass passes neither,
    so the gradient reaches phi through every distance.
    """
    n, m, r = layer.n, layer.m, len(idx)
    dev = data["x"].device
    it = torch.as_tensor(idx, device=dev)
    fb = feats[it] if feats is not None else model.features(data["x"][it], data["y"][it])  # (r, p)
    dn_r = torch.cdist(fb, fb)  # (r, r)
    scale = dn_r.sum() / max(r * (r - 1), 1) + 1e-8  # mean off-diagonal distance
    dn_r = dn_r / scale
    do_r = torch.full((r, m), MISSING_COST, device=dev)
    if near is None and len(existing):
        ie = torch.as_tensor(existing, device=dev)
        fe = model.features(data["x"][ie], data["y"][ie])  # current phi, never stale
        near = torch.topk(torch.cdist(fb, fe), min(m, len(existing)), dim=1, largest=False).values
    if near is not None and near.shape[1]:
        kk = near.shape[1]
        near = near.to(dn_r.dtype) / scale
        do_r = torch.cat([near, do_r[:, kk:]], dim=1)
    ub = np.ones(r)
    if cfg.exclude_flagged:
        ub[data["flagged_np"][idx]] = 0.0
    dt = dn_r.dtype
    dn = torch.full((n, n), MISSING_COST, device=dev, dtype=dt)
    dn[:r, :r] = dn_r
    do = torch.zeros((n, m), device=dev, dtype=dt)
    do[:r] = do_r
    c = torch.zeros(n, device=dev, dtype=dt)
    c[:r] = model.cost(data["y"][it], data["q"][it])
    ub_t = torch.zeros(n, device=dev, dtype=dt)
    ub_t[:r] = torch.as_tensor(ub, device=dev, dtype=dt)
    onehot = quota_t = None
    if layer.spec.n_classes:
        onehot = torch.zeros((layer.spec.n_classes, n), device=dev, dtype=dt)
        onehot[data["y"][it], torch.arange(r, device=dev)] = 1.0
        quota_t = torch.as_tensor(quota, device=dev, dtype=dt)
    return BatchInputs(
        idx=idx, dn=dn, do=do, cost=c, ub=ub_t, budget=torch.tensor(float(budget), device=dev, dtype=dt),
        onehot=onehot, quota=quota_t, ub_real=ub, scale=float(scale.detach()),
    )


def nearest_existing(
    feats: torch.Tensor, batches: list[np.ndarray], existing: np.ndarray, m: int
) -> list[torch.Tensor]:
    """Each batch's ``(r, min(m, |E \\ batch|))`` ascending distances to its nearest existing points.

    One snapshot of the existing set (sorted indices) for the whole group; a batch's own
    points are never its existing points (a swap pass re-decides chosen points). The
    distances of all the group's rows are computed together, in blocks of at most
    :data:`_NEAR_BLOCK` entries; ``(r, 0)`` for a batch with no existing point outside it.
    """
    dev = feats.device
    out = [torch.zeros((len(idx), 0), dtype=feats.dtype, device=dev) for idx in batches]
    if not len(existing):
        return out
    fe = feats[torch.as_tensor(existing, device=dev)]  # (E, p)
    per_block = max(1, _NEAR_BLOCK // (len(existing) * max(len(batches[0]), 1)))
    for b0 in range(0, len(batches), per_block):
        part = batches[b0:b0 + per_block]
        rows = torch.as_tensor(np.concatenate(part), device=dev)
        d = torch.cdist(feats[rows], fe)  # (R, E)
        s = 0
        for j, idx in enumerate(part, start=b0):
            db = d[s:s + len(idx)]
            s += len(idx)
            pos = np.searchsorted(existing, idx)
            own = pos[(pos < len(existing)) & (existing[np.minimum(pos, len(existing) - 1)] == idx)]
            if len(own):
                db[:, torch.as_tensor(own, device=dev)] = float("inf")
            kk = min(m, len(existing) - len(own))
            if kk > 0:
                out[j] = torch.topk(db, kk, dim=1, largest=False).values
    return out


def solve(layer: SelectionLayer, batches: list[BatchInputs]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Solve every batch problem in one layer call; ``[(Zn (r, r), u (r,) >= 0)]`` of the real rows.

    One problem goes to the layer unbatched; several are stacked along a leading
    dimension (the backend solves them together), and gradients reach each
    batch's own inputs.
    """
    if len(batches) == 1:
        zn, _, u = layer(*batches[0].params())
        zn, u = zn[None], u[None]
    else:
        stacked = [torch.stack(group) for group in zip(*(b.params() for b in batches), strict=True)]
        zn, _, u = layer(*stacked)
    return [(zn[g, :b.r, :b.r], u[g, :b.r].clamp_min(0.0)) for g, b in enumerate(batches)]


def lookahead_val_loss(
    theta: list[torch.Tensor],
    batch: BatchInputs,
    u_r: torch.Tensor,
    data: dict[str, torch.Tensor],
    xv: torch.Tensor,
    yv: torch.Tensor,
    eta: float,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Steps 3-4 on a solved batch: lookahead ``theta_hat = theta - eta grad``, validation loss.

    Args:
        u_r: ``(r,)`` opened mass of the batch's real rows (from :func:`solve`).

    Returns:
        ``(val_loss, theta_grads (detached))``.
    """
    grads = _train_grads(theta, batch, u_r, data, create_graph=True)
    w_hat, b_hat = theta[0] - eta * grads[0], theta[1] - eta * grads[1]
    val_loss = F.cross_entropy(xv @ w_hat + b_hat, yv)
    return val_loss, [g.detach() for g in grads]


def theta_step(theta: list[torch.Tensor], batch: BatchInputs, u_r: torch.Tensor,
               data: dict[str, torch.Tensor], lr: float) -> None:
    """Step 5: one SGD step of theta on the batch's selection-weighted training loss (in place)."""
    grads = _train_grads(theta, batch, u_r.detach(), data, create_graph=False)
    with torch.no_grad():
        theta[0] -= lr * grads[0]
        theta[1] -= lr * grads[1]


def _train_grads(theta: list[torch.Tensor], batch: BatchInputs, u_r: torch.Tensor,
                 data: dict[str, torch.Tensor], *, create_graph: bool) -> tuple[torch.Tensor, ...]:
    """Gradient of the u-weighted cross-entropy of the batch's real rows w.r.t. theta."""
    it = torch.as_tensor(batch.idx, device=theta[0].device)
    logits = data["x"][it] @ theta[0] + theta[1]
    per_point = F.cross_entropy(logits, data["y"][it], reduction="none")
    train_loss = (u_r.to(per_point.dtype) * per_point).sum() / u_r.sum().detach().clamp_min(1e-6)
    return torch.autograd.grad(train_loss, theta, create_graph=create_graph)


def round_opened(zn: np.ndarray, u: np.ndarray, ub: np.ndarray, limit: int) -> np.ndarray:
    """Open the largest ``u``, drop the points it now represents, repeat (method.md read-out).

    Args:
        zn: ``(r, r)`` incoming assignment of the real rows.
        u: ``(r,)`` opened mass.
        ub: ``(r,)`` upper bounds (0 = may not open).
        limit: At most this many points are opened.

    Returns:
        ``(r,)`` bool, the opened points.
    """
    r = len(u)
    opened = np.zeros(r, dtype=bool)
    alive = (ub > 0) & (u > 1e-3)
    row_max = zn.max(axis=1) + 1e-12
    for _ in range(limit):
        if not alive.any():
            break
        j = int(np.argmax(np.where(alive, u, -np.inf)))
        opened[j] = True
        represented = zn[:, j] >= 0.5 * row_max  # rows whose main facility is j (duplicates)
        alive &= ~represented
        alive[j] = False
    return opened
