"""HOST-CP: online, subset-aware selection through a differentiable convex layer.

Public face of ``core.selection``: :class:`HostCPConfig` and
:class:`HostCPSelector` (registered as ``"hostcp"`` in ``core.valuation``).
The algorithm is method.md steps 1-6; what it adds to the paper's recipe is
documented on :class:`HostCPConfig` (label-aware ``f_phi``, a learned opening
cost, flagged suspects never opened, a global budget, a rounding read-out).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from core.errors import ConfigError
from core.progress import Reporter
from core.selection.layer import SOLVERS, SelectionLayer
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, top_k_mask

__all__ = ["HostCPConfig", "HostCPSelector", "SelectionModel", "lookahead_val_loss"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostCPConfig:
    """Settings of HOST-CP (defaults chosen by ``benchmarks/value_curves.py``)."""

    epochs: int = 2  # learning passes (phi and theta updated); one read-out pass follows
    batch_size: int = 32  # incoming points per convex problem (n); solve time grows ~n^3
    n_existing: int = 8  # m nearest existing points per incoming point (Do columns)
    gamma: float = 0.05  # weight of the quadratic term; > 0 or the layer's gradient is zero
    proj_dim: int = 32  # dimension of the f_phi space where distances are measured
    use_labels: bool = True  # f_phi(x, y): a learned label embedding is added to W x
    label_init: float = 0.0  # initial label-embedding norm, x mean distance (0 = starts label-blind)
    learn_cost: bool = True  # learned opening cost c_phi(y, quality) in the objective
    learn_phi: bool = True  # False freezes phi at its random init (ablation)
    lr_phi: float = 0.01  # Adam step size of phi
    lr_theta: float = 0.5  # SGD step of theta, also the lookahead step eta
    phi_every: int = 1  # update phi every this many batches (others: forward-only solves)
    val_batch: int = 256  # validation points per lookahead loss (a fresh sample each step)
    exclude_flagged: bool = True  # flagged suspects may not be opened (ub = 0), still represented
    quality_weight: bool = True  # rows weighted by 1 - suspect: suspects need less coverage
    class_quotas: bool = True  # per-class quotas in the problem (validation: +1.3 points at 5%)
    missing_cost: float = 2.0  # cost of a missing existing column (no existing set yet), x mean dist
    cost_scale: float = 0.1  # scale of the opening cost c_phi (distances have mean 1)
    solver: str = "Clarabel"  # diffcp solve method: Clarabel (faster, exact) or SCS
    torch_threads: int = 1  # torch intra-op threads during fit (tiny ops: 1 was 4x faster on 2 cores)

    def __post_init__(self) -> None:
        for name in ("epochs", "phi_every", "val_batch", "proj_dim", "n_existing", "torch_threads"):
            if getattr(self, name) < (0 if name == "epochs" else 1):
                raise ConfigError(f"HostCPConfig.{name} must be positive; got {getattr(self, name)}.")
        if not 4 <= self.batch_size <= 128:
            raise ConfigError(
                f"HostCPConfig.batch_size must be in [4, 128] (solve time grows fast); got "
                f"{self.batch_size}."
            )
        if self.gamma <= 0:
            raise ConfigError(f"HostCPConfig.gamma must be > 0 (0 gives zero gradients); got {self.gamma}.")
        if self.solver not in SOLVERS:
            raise ConfigError(f"HostCPConfig.solver must be one of {SOLVERS}; got {self.solver!r}.")


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


@dataclass
class _Batch:
    """Padded problem inputs of one batch and the real indices it holds."""

    idx: np.ndarray  # (r,) indices of the real incoming points
    params: list[torch.Tensor]  # layer inputs
    ub: np.ndarray  # (r,) upper bounds of u


def _batch_inputs(
    model: SelectionModel,
    layer: SelectionLayer,
    data: dict[str, torch.Tensor],
    idx: np.ndarray,
    existing: np.ndarray,
    budget: float,
    quota: np.ndarray | None,
    cfg: HostCPConfig,
) -> _Batch:
    """Distances (method.md step 1) and the padded parameters of the batch problem."""
    n, m, r = layer.n, layer.m, len(idx)
    dev = data["x"].device
    it = torch.as_tensor(idx, device=dev)
    fb = model.features(data["x"][it], data["y"][it])  # (r, p)
    dn_r = torch.cdist(fb, fb)  # (r, r)
    scale = dn_r.sum() / max(r * (r - 1), 1) + 1e-8  # mean off-diagonal distance
    dn_r = dn_r / scale
    do_r = torch.full((r, m), cfg.missing_cost, device=dev)
    if len(existing):
        ie = torch.as_tensor(existing, device=dev)
        fe = model.features(data["x"][ie], data["y"][ie])  # current phi, never stale
        d = torch.cdist(fb, fe) / scale  # (r, |E|)
        kk = min(m, len(existing))
        near = torch.topk(d, kk, dim=1, largest=False).values  # exact kNN
        do_r = torch.cat([near, do_r[:, kk:]], dim=1)
    if cfg.quality_weight:
        w = (1.0 - data["q"][it]).clamp_min(0.1)[:, None]
        dn_r, do_r = dn_r * w, do_r * w
    ub = np.ones(r)
    if cfg.exclude_flagged:
        ub[data["flagged_np"][idx]] = 0.0
    dn = torch.full((n, n), cfg.missing_cost, device=dev, dtype=dn_r.dtype)
    dn[:r, :r] = dn_r
    do = torch.zeros((n, m), device=dev, dtype=dn_r.dtype)
    do[:r] = do_r
    c = torch.zeros(n, device=dev, dtype=dn_r.dtype)
    c[:r] = model.cost(data["y"][it], data["q"][it])
    ub_t = torch.zeros(n, device=dev, dtype=dn_r.dtype)
    ub_t[:r] = torch.as_tensor(ub, device=dev, dtype=dn_r.dtype)
    params = [dn, do, c, ub_t, torch.tensor(float(budget), device=dev, dtype=dn_r.dtype)]
    if layer.spec.n_classes:
        onehot = torch.zeros((layer.spec.n_classes, n), device=dev, dtype=dn_r.dtype)
        onehot[data["y"][it], torch.arange(r, device=dev)] = 1.0
        params += [onehot, torch.as_tensor(quota, device=dev, dtype=dn_r.dtype)]
    return _Batch(idx, params, ub)


def _round(zn: np.ndarray, u: np.ndarray, ub: np.ndarray, limit: int) -> np.ndarray:
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


def lookahead_val_loss(
    model: SelectionModel,
    layer: SelectionLayer,
    theta: list[torch.Tensor],
    batch: _Batch,
    data: dict[str, torch.Tensor],
    xv: torch.Tensor,
    yv: torch.Tensor,
    eta: float,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Steps 2-4: solve, lookahead ``theta_hat = theta - eta grad``, validation loss.

    Returns:
        ``(val_loss, u (r,), theta_grads (detached), zn (r, r))``.
    """
    r = len(batch.idx)
    zn, _, u = layer(*batch.params)
    u_r, zn_r = u[:r].clamp_min(0.0), zn[:r, :r]
    it = torch.as_tensor(batch.idx, device=xv.device)
    logits = data["x"][it] @ theta[0] + theta[1]
    per_point = F.cross_entropy(logits, data["y"][it], reduction="none")
    train_loss = (u_r.to(per_point.dtype) * per_point).sum() / u_r.sum().detach().clamp_min(1e-6)
    grads = torch.autograd.grad(train_loss, theta, create_graph=True)
    w_hat, b_hat = theta[0] - eta * grads[0], theta[1] - eta * grads[1]
    val_loss = F.cross_entropy(xv @ w_hat + b_hat, yv)
    return val_loss, u_r, [g.detach() for g in grads], zn_r


class HostCPSelector(SelectionMethod):
    """HOST-CP subset selection (method.md); see :class:`HostCPConfig` for the settings."""

    config_class = HostCPConfig

    def __init__(self, config: HostCPConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, HostCPConfig):
            raise TypeError(f"config must be a HostCPConfig; got {type(config).__name__}.")
        self.config = config or HostCPConfig()

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        before = torch.get_num_threads()
        torch.set_num_threads(self.config.torch_threads)  # process-wide; restored below
        try:
            return self._run(task, reporter)
        finally:
            torch.set_num_threads(before)

    def _run(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        cfg = self.config
        t0 = time.perf_counter()
        flagged, suspect, flag_source = _flags(task, cfg)
        dev = torch.device(task.device)
        gen = torch.Generator().manual_seed(int(task.seed))
        rng = np.random.default_rng(task.seed)
        data = {
            "x": torch.as_tensor(task.x_train, device=dev),
            "y": torch.as_tensor(task.y_train, device=dev),
            "q": torch.as_tensor(suspect, device=dev, dtype=torch.float32),
            "flagged_np": flagged,
        }
        xv_all = torch.as_tensor(task.x_val, device=dev)
        yv_all = torch.as_tensor(task.y_val, device=dev)
        n_tr, dim, ncls = task.n, task.x_train.shape[1], task.n_classes
        label_scale = 0.0
        if cfg.use_labels and cfg.label_init > 0:  # in units of the mean distance at init
            sample = task.x_train[rng.choice(n_tr, min(n_tr, 256), replace=False)]
            w0 = torch.randn(dim, cfg.proj_dim, generator=torch.Generator().manual_seed(int(task.seed)))
            f0 = torch.as_tensor(sample) @ (w0 / math.sqrt(cfg.proj_dim))
            label_scale = cfg.label_init * float(torch.cdist(f0, f0).mean()) / math.sqrt(2.0)
        model = SelectionModel(dim, ncls, cfg, gen, label_scale=label_scale).to(dev)
        theta = [torch.zeros(dim, ncls, device=dev, requires_grad=True),
                 torch.zeros(ncls, device=dev, requires_grad=True)]
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr_phi)
        n = min(cfg.batch_size, n_tr)
        layer = SelectionLayer(
            n, cfg.n_existing, gamma=cfg.gamma, n_classes=ncls if cfg.class_quotas else 0,
            solver=cfg.solver,
        )
        k = task.k
        allowed = ~flagged if cfg.exclude_flagged else np.ones(n_tr, dtype=bool)
        u_sum, open_count = np.zeros(n_tr), np.zeros(n_tr)
        n_batches = math.ceil(n_tr / n)
        passes = cfg.epochs + 1
        val_losses: list[float] = []
        final = np.zeros(n_tr, dtype=bool)
        for ep in range(passes):
            learning = ep < cfg.epochs
            order = rng.permutation(n_tr)
            selected = np.zeros(n_tr, dtype=bool)
            quota_left = _class_quota(task.y_train, allowed, k, ncls)
            for b in range(n_batches):
                reporter.check_cancelled()
                idx = order[b * n:(b + 1) * n]
                seen = b * n
                left_pts = allowed[order[seen:]].sum()
                k_left = max(k - int(selected.sum()), 0)
                bud = min(float(allowed[idx].sum()), k_left * allowed[idx].sum() / max(left_pts, 1))
                quota = None
                if cfg.class_quotas:
                    quota = _batch_quota(quota_left, task.y_train, allowed, order[seen:], idx, ncls)
                existing = np.flatnonzero(selected)
                do_phi = learning and cfg.learn_phi and (b % cfg.phi_every == 0)
                with torch.set_grad_enabled(learning):
                    with torch.set_grad_enabled(do_phi):
                        batch = _batch_inputs(model, layer, data, idx, existing, bud, quota, cfg)
                    if learning:
                        vi = torch.as_tensor(
                            rng.choice(len(yv_all), min(cfg.val_batch, len(yv_all)), replace=False),
                            device=dev,
                        )
                        if not do_phi:
                            batch.params = [p.detach() for p in batch.params]
                        val_loss, u_r, grads, zn_r = lookahead_val_loss(
                            model, layer, theta, batch, data, xv_all[vi], yv_all[vi], cfg.lr_theta
                        )
                        if do_phi:
                            opt.zero_grad()
                            val_loss.backward()
                            opt.step()
                        with torch.no_grad():  # step 5: theta on the selection-weighted loss
                            theta[0] -= cfg.lr_theta * grads[0]
                            theta[1] -= cfg.lr_theta * grads[1]
                        val_losses.append(float(val_loss.detach()))
                    else:
                        zn, _, u = layer(*batch.params)
                        u_r, zn_r = u[: len(idx)].clamp_min(0.0), zn[: len(idx), : len(idx)]
                u_np = u_r.detach().cpu().double().numpy()
                zn_np = zn_r.detach().cpu().double().numpy()
                limit = min(int(round(u_np.sum())), k_left)
                opened = _round(zn_np, u_np, batch.ub, limit)
                if cfg.class_quotas:
                    opened = _respect_quota(opened, u_np, task.y_train[idx], quota_left)
                    np.subtract.at(quota_left, task.y_train[idx][opened], 1)
                selected[idx[opened]] = True  # step 6
                u_sum[idx] += u_np
                open_count[idx[opened]] += 1
                reporter.report(
                    "selection", (ep * n_batches + b + 1) / (passes * n_batches),
                    f"epoch {ep + 1}/{passes}{'' if learning else ' (read-out)'}, "
                    f"batch {b + 1}/{n_batches}",
                )
            final = selected
        score = (u_sum + open_count) / (2.0 * passes)  # how often and how strongly opened
        pass_size = int(final.sum())
        chosen = _exactly_k(final, score, allowed, suspect, k)
        scores = score + chosen.astype(float)  # the chosen set ranks first
        info = {
            "pass_selected": pass_size,
            "adjusted": k - pass_size,
            "n_flagged": int(flagged.sum()),
            "flag_source": flag_source,
            "val_loss_first": val_losses[0] if val_losses else None,
            "val_loss_last": float(np.mean(val_losses[-n_batches:])) if val_losses else None,
            "seconds": round(time.perf_counter() - t0, 2),
            "config": asdict(cfg),
        }
        return chosen, scores, info


def _flags(task: SelectionTask, cfg: HostCPConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Flagged suspects and suspect scores: given, detected, or none."""
    flagged, suspect, source = task.flagged, task.suspect, "task"
    if flagged is None and (cfg.exclude_flagged or cfg.quality_weight or cfg.learn_cost):
        try:
            from core.mislabel import detect_mislabels

            res = detect_mislabels(
                task.x_train, task.y_train, n_classes=task.n_classes, seed=task.seed
            )
            flagged, source = res.flagged, "detect_mislabels"
            suspect = res.score if suspect is None else suspect
        except ImportError:
            logger.warning("core.mislabel is not available; selecting without mislabel flags.")
    if flagged is None:
        flagged, source = np.zeros(task.n, dtype=bool), "none"
    if suspect is None:
        suspect = flagged.astype(float)
    return np.asarray(flagged, dtype=bool), np.asarray(suspect, dtype=np.float64), source


def _class_quota(y: np.ndarray, allowed: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    from core.valuation.base import stratified_quotas

    return stratified_quotas(y, k, n_classes, allowed=allowed).astype(float)


def _batch_quota(
    quota_left: np.ndarray, y: np.ndarray, allowed: np.ndarray, rest: np.ndarray,
    idx: np.ndarray, n_classes: int,
) -> np.ndarray:
    """Per-class budget of one batch: its share of what is left, with room to spare."""
    left = np.bincount(y[rest][allowed[rest]], minlength=n_classes).astype(float)
    here = np.bincount(y[idx][allowed[idx]], minlength=n_classes).astype(float)
    share = np.where(left > 0, quota_left * here / np.maximum(left, 1), 0.0)
    return np.minimum(np.maximum(quota_left, 0), 1.5 * share + 0.5)


def _respect_quota(opened: np.ndarray, u: np.ndarray, y: np.ndarray, quota_left: np.ndarray) -> np.ndarray:
    out = np.zeros_like(opened)
    left = quota_left.copy()
    for j in np.flatnonzero(opened)[np.argsort(-u[opened], kind="stable")]:
        if left[y[j]] >= 1:
            out[j] = True
            left[y[j]] -= 1
    return out


def _exactly_k(
    final: np.ndarray, score: np.ndarray, allowed: np.ndarray, suspect: np.ndarray, k: int
) -> np.ndarray:
    """The final pass's set sized to exactly ``k``: trim lowest-scored, top up highest-scored."""
    n_sel = int(final.sum())
    if n_sel == k:
        return final.copy()
    if n_sel > k:
        keep = top_k_mask(np.where(final, score, -np.inf), k)
        return keep & final
    # top up: allowed points by score, then (if needed) flagged ones by lowest suspicion
    rank = np.where(allowed, score, -1.0 - suspect)
    rank = np.where(final, np.inf, rank)
    return top_k_mask(rank, k)
