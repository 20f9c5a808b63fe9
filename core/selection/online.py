"""The online passes of HOST-CP (method.md steps 1-6), resumable and shardable.

A pass visits its points in a random order, a group of ``scale.solve_group`` batches per
solver call, and opens points into the pass's existing set. The pass is split into
*shards* (slices of the order with a share of the budget and of the class quotas),
and a shard advances in *rounds* of a few groups. Between rounds the driver merges
what every shard opened into one existing set, so all shards measure distances to
the same set, and (in a learning pass) averages phi and theta over the shards
(FedAvg). A round is a plain function of picklable values (:func:`shard_round`), so
it runs in this process or as a Ray task (:mod:`core.cluster`).

One shard advanced in one round is exactly the in-process pass; one shard in many
rounds gives the same result too, because everything the pass carries (its order,
budget, quotas, random state, phi, theta and Adam's moments) travels with the shard.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from core.selection.batch import (
    BatchInputs,
    batch_inputs,
    lookahead_val_loss,
    nearest_existing,
    round_opened,
    solve,
    theta_step,
)
from core.selection.config import HostCPConfig
from core.selection.layer import SelectionLayer
from core.selection.model import SelectionModel
from core.selection.readout import respect_quota

__all__ = [
    "Learner", "PassData", "PassEnv", "Shard", "TORCH_THREADS", "VAL_BATCH", "advance", "make_env",
    "merge_learners", "n_groups", "plan_shards", "shard_round", "solver_calls",
]

#: Validation points per lookahead loss, a fresh random sample each step (all of them when the
#: validation set is smaller), so a pass sees the whole validation set without every step paying
#: for all of it. 256 was the first choice and no benchmark varied it (issue 11 lists larger
#: samples with rarer phi updates as a hypothesis to measure, not a setting to guess).
VAL_BATCH = 256
#: torch intra-op threads during a run (set, then restored): the ops are tiny (32-point problems),
#: and 1 thread was 4x faster than torch's default on 2 cores. Measured only there: a machine where
#: more threads help would be a reason to make it a setting again.
TORCH_THREADS = 1


@dataclass
class PassData:
    """What every shard of a job reads and nobody changes: the data, the settings, the layer's shape."""

    x: np.ndarray  # (N, D) float32 training embeddings
    y: np.ndarray  # (N,) int64 given labels
    suspect: np.ndarray  # (N,) mislabel scores
    flagged: np.ndarray  # (N,) bool, closed to opening (ub = 0)
    allowed: np.ndarray  # (N,) bool, counted in budgets and quotas
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    cfg: HostCPConfig
    batch_size: int  # the layer's n (the configured batch size, at most N)
    device: str = "cpu"
    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # one job's data in a worker's cache


@dataclass
class Learner:
    """phi, theta and phi's optimiser state: what a learning pass changes."""

    model: SelectionModel
    theta: list[torch.Tensor]
    opt_state: dict | None = None  # torch.optim.Adam state_dict; None before the first step
    val_losses: list[float] = field(default_factory=list)


@dataclass
class Shard:
    """One shard's share of a pass, carried from round to round."""

    order: np.ndarray  # its points, in visiting order
    k: int  # its opening budget in this pass
    quota_left: np.ndarray  # (C,) picks still allowed per class
    left: np.ndarray  # (C,) allowed points per class not reached yet
    rng: np.random.Generator  # its draws (validation samples)
    learning: bool  # a pass that learns phi (the selector runs one only with learn_phi)
    next_group: int = 0
    n_opened: int = 0
    # what the last round did, for the driver to merge (positions in ``order``, global indices)
    done: tuple[int, int] = (0, 0)
    done_u: np.ndarray = field(default_factory=lambda: np.zeros(0))
    done_opened: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def solver_calls(n_points: int, batch_size: int, solve_group: int) -> int:
    """Solver calls a pass over ``n_points`` takes (``solve_group`` batches of ``batch_size`` a call)."""
    return math.ceil(math.ceil(n_points / batch_size) / solve_group)


def n_groups(shard: Shard, batch_size: int, solve_group: int) -> int:
    """Solver calls a whole pass of this shard takes."""
    return solver_calls(len(shard.order), batch_size, solve_group)


def plan_shards(
    order: np.ndarray, k: int, y: np.ndarray, allowed: np.ndarray, n_classes: int,
    rng: np.random.Generator, n_shards: int, *, learning: bool,
) -> list[Shard]:
    """Split a pass's ``order`` into ``n_shards`` contiguous slices with their shares of ``k``.

    Shard 0 draws from ``rng`` itself (so one shard is the unsharded pass); the others from
    generators spawned from it. Each shard's class quotas are its share of its own slice.
    """
    from core.valuation.base import stratified_quotas

    parts = np.array_split(order, n_shards) if n_shards > 1 else [order]
    rngs = [rng] + list(rng.spawn(n_shards - 1)) if n_shards > 1 else [rng]
    shards = []
    for part, r in zip(parts, rngs, strict=True):
        k_s = k if n_shards == 1 else int(round(k * len(part) / max(len(order), 1)))
        quota = stratified_quotas(y[part], k_s, n_classes, allowed=allowed[part]).astype(float)
        left = np.bincount(y[part][allowed[part]], minlength=n_classes).astype(float)
        shards.append(Shard(order=part, k=k_s, quota_left=quota, left=left, rng=r, learning=learning))
    return shards


@dataclass
class PassEnv:
    """A process's view of :class:`PassData`: tensors on the device and the layer, built once."""

    pd: PassData
    data: dict[str, torch.Tensor]
    xv: torch.Tensor
    yv: torch.Tensor
    layer: SelectionLayer


def make_env(pd: PassData) -> PassEnv:
    """Tensors of ``pd`` on its device and the convex layer."""
    dev = torch.device(pd.device)
    cfg = pd.cfg
    with warnings.catch_warnings():  # a Ray worker's arrays are read-only views of the object store
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        data = {
            "x": torch.as_tensor(pd.x, device=dev),
            "y": torch.as_tensor(pd.y, device=dev),
            "q": torch.as_tensor(pd.suspect, device=dev, dtype=torch.float32),
            "flagged_np": pd.flagged,
        }
        xv, yv = torch.as_tensor(pd.x_val, device=dev), torch.as_tensor(pd.y_val, device=dev)
    layer = SelectionLayer(pd.batch_size, cfg.n_existing, gamma=cfg.gamma,
                           n_classes=pd.n_classes if cfg.class_quotas else 0, solver=cfg.solver)
    return PassEnv(pd=pd, data=data, xv=xv, yv=yv, layer=layer)


def advance(
    env: PassEnv, shard: Shard, learner: Learner, existing: np.ndarray, max_groups: int | None = None,
    *, on_group: Callable[[int, int], None] | None = None,
) -> None:
    """Run up to ``max_groups`` solver calls of ``shard`` (in place), against ``existing``.

    ``existing`` is the pass's set when the round starts (sorted global indices, this
    shard's own openings included); what the shard opens joins it at once. ``learner``
    is updated in place in a learning pass (theta after every batch, phi once per call);
    a read-out pass only solves, with phi fixed.
    ``on_group(done, total)`` is called after every solver call (progress, Cancel).
    """
    pd, layer = env.pd, env.layer
    cfg, y_np, n = pd.cfg, pd.y, layer.n
    order = shard.order
    n_batches = math.ceil(len(order) / n)
    group_size = cfg.scale.solve_group
    total = n_groups(shard, n, group_size)
    stop = total if max_groups is None else min(total, shard.next_group + max_groups)
    selected = np.zeros(len(y_np), dtype=bool)
    selected[existing] = True
    p_first = shard.next_group * group_size * n
    u_done = np.zeros(max(min(stop * group_size * n, len(order)) - p_first, 0))
    opened_all: list[np.ndarray] = []
    opt = None
    if shard.learning:
        opt = torch.optim.Adam(learner.model.parameters(), lr=cfg.lr_phi)
        if learner.opt_state is not None:
            opt.load_state_dict(learner.opt_state)
    feats = None
    if not shard.learning:
        with torch.no_grad():
            feats = learner.model.features(env.data["x"], env.data["y"])
    for g in range(shard.next_group, stop):
        g0 = g * group_size
        snapshot = np.flatnonzero(selected)  # one snapshot for the whole group
        k_left = max(shard.k - shard.n_opened, 0)
        group: list[BatchInputs] = []
        parts = [order[b * n:(b + 1) * n] for b in range(g0, min(g0 + group_size, n_batches))]
        # the read-out pass (phi fixed): features once a pass, distances to the set once a group
        dists = [None] * len(parts) if feats is None else nearest_existing(feats, parts, snapshot, layer.m)
        with torch.set_grad_enabled(shard.learning):  # phi's gradient flows through every distance
            for idx, d_near in zip(parts, dists, strict=True):
                here = np.bincount(y_np[idx][pd.allowed[idx]], minlength=pd.n_classes)
                bud = min(float(here.sum()), k_left * here.sum() / max(shard.left.sum(), 1))
                quota = _batch_quota(shard.quota_left, shard.left, here) if cfg.class_quotas else None
                shard.left -= here
                group.append(batch_inputs(learner.model, layer, env.data, idx, snapshot, bud, quota, cfg,
                                          feats=feats, near=d_near))
            sols = solve(layer, group)
        if opt is not None:
            _learn(env, shard.rng, learner, opt, group, sols)
        pos = g0 * n - p_first
        for batch, (zn, u) in zip(group, sols, strict=True):
            u_np = u.detach().cpu().double().numpy()
            limit = min(int(round(u_np.sum())), max(shard.k - shard.n_opened, 0))
            opened = round_opened(zn.detach().cpu().double().numpy(), u_np, batch.ub_real, limit)
            if cfg.class_quotas:
                opened = respect_quota(opened, u_np, y_np[batch.idx], shard.quota_left)
                np.subtract.at(shard.quota_left, y_np[batch.idx][opened], 1)
            selected[batch.idx[opened]] = True  # step 6
            shard.n_opened += int(opened.sum())
            opened_all.append(batch.idx[opened])
            u_done[pos:pos + batch.r] = u_np
            pos += batch.r
        if on_group is not None:
            on_group(g + 1, total)
    if opt is not None:
        learner.opt_state = opt.state_dict()
    shard.done = (p_first, p_first + len(u_done))
    shard.done_u = u_done
    shard.done_opened = np.concatenate(opened_all) if opened_all else np.zeros(0, dtype=np.int64)
    shard.next_group = stop


def _learn(env: PassEnv, rng: np.random.Generator, learner: Learner, opt: torch.optim.Optimizer,
           group: list[BatchInputs], sols: list) -> None:
    """Steps 3-5 for a solved group: phi on the mean lookahead loss, theta batch after batch."""
    cfg, dev = env.pd.cfg, env.xv.device
    losses = []
    with torch.set_grad_enabled(True):
        for batch, (_, u) in zip(group, sols, strict=True):
            vi = torch.as_tensor(rng.choice(len(env.yv), min(VAL_BATCH, len(env.yv)), replace=False),
                                 device=dev)
            val_loss, _ = lookahead_val_loss(learner.theta, batch, u, env.data, env.xv[vi], env.yv[vi],
                                             cfg.lr_theta)
            losses.append(val_loss)
        opt.zero_grad()
        torch.stack(losses).mean().backward()
        opt.step()
        for batch, (_, u) in zip(group, sols, strict=True):  # step 5, batch after batch
            theta_step(learner.theta, batch, u, env.data, cfg.lr_theta)
    learner.val_losses += [float(v.detach()) for v in losses]


def merge_learners(learners: list[Learner]) -> Learner:
    """FedAvg: the mean of the shards' phi, theta and Adam moments (one shard: itself, unchanged)."""
    if len(learners) == 1:
        return learners[0]
    first = learners[0]
    with torch.no_grad():
        for name, p in first.model.named_parameters():
            p.copy_(torch.stack([dict(lr.model.named_parameters())[name] for lr in learners]).mean(0))
        for i, t in enumerate(first.theta):
            t.copy_(torch.stack([lr.theta[i] for lr in learners]).mean(0))
    states = [lr.opt_state for lr in learners if lr.opt_state is not None]
    if states:
        merged = states[0]
        for pid, slot in merged["state"].items():
            for key in ("exp_avg", "exp_avg_sq"):
                slot[key] = torch.stack([s["state"][pid][key] for s in states]).mean(0)
            slot["step"] = max(s["state"][pid]["step"] for s in states)
        first.opt_state = merged
    first.val_losses = [v for lr in learners for v in lr.val_losses]
    return first


#: A worker's environment for the job it last served (the data, as tensors, and the layer).
_WORKER_ENV: dict[str, PassEnv] = {}


def shard_round(pd: PassData, item: tuple[Shard, Learner, np.ndarray, int]) -> tuple[Shard, Learner]:
    """One round of one shard, anywhere: ``(shard, learner, existing, groups) -> (shard, learner)``.

    The environment is built once per worker process and job (the layer costs 0.1-0.7 s)
    and kept for the job's next rounds.
    """
    shard, learner, existing, groups = item
    # Ray hands numpy arguments over as read-only views of its object store; these two change
    shard.quota_left, shard.left = shard.quota_left.copy(), shard.left.copy()
    env = _WORKER_ENV.get(pd.key)
    if env is None:
        _WORKER_ENV.clear()  # one job's data at a time
        env = _WORKER_ENV[pd.key] = make_env(pd)
    before = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    try:
        learner.val_losses = []  # the driver keeps the history; a round returns only its own
        advance(env, shard, learner, existing, groups)
    finally:
        torch.set_num_threads(before)
    return shard, learner


def _batch_quota(quota_left: np.ndarray, left: np.ndarray, here: np.ndarray) -> np.ndarray:
    """Per-class budget of one batch: its share of what is left, with room to spare.

    Args:
        quota_left: ``(C,)`` picks still allowed per class in this pass.
        left: ``(C,)`` allowed points per class from this batch to the end of the pass.
        here: ``(C,)`` allowed points per class in this batch.
    """
    share = np.where(left > 0, quota_left * here / np.maximum(left, 1), 0.0)
    return np.minimum(np.maximum(quota_left, 0), 1.5 * share + 0.5)
