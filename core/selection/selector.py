"""HOST-CP: online, subset-aware selection through a differentiable convex layer.

Public face of ``core.selection``: :class:`HostCPConfig` and
:class:`HostCPSelector` (registered as ``"hostcp"`` in ``core.valuation``).
A run is four steps (:meth:`HostCPSelector._run`):

1. set-up: mislabel flags, the data on the device, phi at its start, the layer;
2. learning passes (method.md steps 1-6: label-aware ``f_phi``, a learned opening
   cost, flagged suspects never opened, a global budget, per-class quotas), on at
   most ``learn_sample`` points;
3. an online read-out pass over every point (at most ``score_sample``), which scores
   each point by how often and how strongly it was opened;
4. the set at the budget (:mod:`core.selection.readout`): per-class greedy
   facility location in f_phi space, then swap passes through the layer.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from core.progress import Reporter
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
from core.selection.model import SelectionModel, initial_model, pca_projection
from core.selection.readout import exactly_k, greedy_start, respect_quota, swap_pass
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput

__all__ = ["HostCPConfig", "HostCPSelector", "SelectionModel", "lookahead_val_loss", "pca_projection"]

logger = logging.getLogger(__name__)

#: Share of the progress bar for the online passes; the swap passes get the rest.
_ONLINE_SHARE = 0.85


@dataclass
class _Run:
    """What the steps of one run share."""

    task: SelectionTask
    cfg: HostCPConfig
    model: SelectionModel
    layer: SelectionLayer
    data: dict[str, torch.Tensor]
    xv: torch.Tensor
    yv: torch.Tensor
    theta: list[torch.Tensor]
    opt: torch.optim.Optimizer
    allowed: np.ndarray
    rng: np.random.Generator
    reporter: Reporter
    n_passes: int  # learning passes + the read-out pass
    learn_points: np.ndarray  # the points the learning passes see
    score_points: np.ndarray  # the points the online read-out pass scores
    u_sum: np.ndarray = field(init=False)
    open_count: np.ndarray = field(init=False)
    seen: np.ndarray = field(init=False)  # passes each point took part in
    val_losses: list[float] = field(default_factory=list)
    work_done: int = 0  # batches solved so far, for progress

    def __post_init__(self) -> None:
        n = self.task.n
        self.u_sum, self.open_count, self.seen = np.zeros(n), np.zeros(n), np.zeros(n)

    @property
    def total_work(self) -> int:
        b = self.layer.n
        return (self.cfg.epochs * math.ceil(len(self.learn_points) / b)
                + math.ceil(len(self.score_points) / b))


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
        t0 = time.perf_counter()
        run, flags = self._setup(task, reporter)
        times = {"setup": time.perf_counter() - t0}  # seconds by step, kept in the run info
        for ep in range(run.cfg.epochs):
            _online_pass(run, ep, learning=True)
        times["learning"] = time.perf_counter() - t0 - sum(times.values())
        online = _online_pass(run, run.cfg.epochs, learning=False)
        times["online"] = time.perf_counter() - t0 - sum(times.values())
        score = (run.u_sum + run.open_count) / (2.0 * np.maximum(run.seen, 1))  # how often, how strongly
        chosen, rank, swaps = _read_out(run, online, score, flags["suspect"])
        times["readout"] = time.perf_counter() - t0 - sum(times.values())
        # the chosen set ranks first, in greedy pick order (a prefix is the greedy set of that size),
        # then the rest by how often and how strongly the online pass opened them
        scores = np.where(chosen, 2.0 + np.where(rank > 0, rank, score), score)
        n_batches = math.ceil(task.n / run.layer.n)
        info = {
            "pass_selected": int(online.sum()),
            "adjusted": task.k - int(online.sum()),
            "swaps": swaps,
            "n_flagged": flags["n_flagged"],
            "n_closed_extra": int(flags["flagged"].sum()) - flags["n_flagged"],
            "flag_source": flags["source"],
            "learn_points": len(run.learn_points),
            "score_points": len(run.score_points),
            "val_loss_first": run.val_losses[0] if run.val_losses else None,
            "val_loss_last": float(np.mean(run.val_losses[-n_batches:])) if run.val_losses else None,
            "seconds": round(time.perf_counter() - t0, 2),
            **{f"seconds_{step}": round(v, 2) for step, v in times.items()},
            "config": asdict(run.cfg),
        }
        return chosen, scores, info

    def _setup(self, task: SelectionTask, reporter: Reporter) -> tuple[_Run, dict]:
        """Flags, the data on the device, phi at its start, theta, the layer, the learning sample."""
        cfg = self.config
        flagged, suspect, source = _flags(task, cfg)
        n_flagged = int(flagged.sum())
        flagged = flagged | _extra_closed(flagged, suspect, task.k, cfg.exclude_margin)
        dev = torch.device(task.device)
        rng = np.random.default_rng(task.seed)
        data = {
            "x": torch.as_tensor(task.x_train, device=dev),
            "y": torch.as_tensor(task.y_train, device=dev),
            "q": torch.as_tensor(suspect, device=dev, dtype=torch.float32),
            "flagged_np": flagged,
        }
        dim, ncls = task.x_train.shape[1], task.n_classes
        model = initial_model(task.x_train, ncls, cfg, task.seed, rng, dev)
        theta = [torch.zeros(dim, ncls, device=dev, requires_grad=True),
                 torch.zeros(ncls, device=dev, requires_grad=True)]
        layer = SelectionLayer(
            min(cfg.batch_size, task.n), cfg.n_existing, gamma=cfg.gamma,
            n_classes=ncls if cfg.class_quotas else 0, solver=cfg.solver,
        )
        learn_points, score_points = (_sample(task.n, size, rng) for size in (cfg.learn_sample,
                                                                             cfg.score_sample))
        run = _Run(
            task=task, cfg=cfg, model=model, layer=layer, data=data,
            xv=torch.as_tensor(task.x_val, device=dev), yv=torch.as_tensor(task.y_val, device=dev),
            theta=theta, opt=torch.optim.Adam(model.parameters(), lr=cfg.lr_phi),
            allowed=~flagged if cfg.exclude_flagged else np.ones(task.n, dtype=bool),
            rng=rng, reporter=reporter, n_passes=cfg.epochs + 1, learn_points=learn_points,
            score_points=score_points,
        )
        return run, {"flagged": flagged, "suspect": suspect, "n_flagged": n_flagged, "source": source}


def _online_pass(run: _Run, ep: int, *, learning: bool) -> np.ndarray:
    """One online pass in random order (method.md steps 1-6); returns the set it opened.

    A learning pass updates theta after every batch and phi once per solver call
    (``solve_group`` batches, the mean of their lookahead losses); the read-out
    pass only solves. Points are scored by their opened mass and openings.
    """
    task, cfg, layer = run.task, run.cfg, run.layer
    points = run.learn_points if learning else run.score_points
    k = task.k if len(points) == task.n else int(round(task.k * len(points) / task.n))
    order = points[run.rng.permutation(len(points))]
    selected = np.zeros(task.n, dtype=bool)
    quota_left = _class_quota(task.y_train[points], run.allowed[points], k, task.n_classes)
    n = layer.n
    n_batches = math.ceil(len(points) / n)
    # allowed points per class not yet reached in this pass, kept as the pass moves on (a count of
    # the rest of the order at every batch would cost O(N) per batch, O(N^2 / n) a pass)
    y_allowed = task.y_train[order][run.allowed[order]]
    left = np.bincount(y_allowed, minlength=task.n_classes).astype(float)
    feats = None
    if not learning:
        with torch.no_grad():
            feats = run.model.features(run.data["x"], run.data["y"])
    for g0 in range(0, n_batches, cfg.solve_group):
        run.reporter.check_cancelled()
        existing = np.flatnonzero(selected)  # one snapshot for the whole group
        k_left = max(k - int(selected.sum()), 0)
        do_phi = learning and cfg.learn_phi and ((g0 // cfg.solve_group) % cfg.phi_every == 0)
        group: list[BatchInputs] = []
        parts = [order[b * n:(b + 1) * n] for b in range(g0, min(g0 + cfg.solve_group, n_batches))]
        # the read-out pass (phi fixed): features once a pass, distances to the set once a group
        dists = [None] * len(parts) if feats is None else nearest_existing(feats, parts, existing, layer.m)
        with torch.set_grad_enabled(do_phi):
            for idx, d_near in zip(parts, dists, strict=True):
                here = np.bincount(task.y_train[idx][run.allowed[idx]], minlength=task.n_classes)
                bud = min(float(here.sum()), k_left * here.sum() / max(left.sum(), 1))
                quota = _batch_quota(quota_left, left, here) if cfg.class_quotas else None
                left -= here
                group.append(batch_inputs(run.model, layer, run.data, idx, existing, bud, quota, cfg,
                                          feats=feats, near=d_near))
            if learning and not do_phi:
                for batch in group:
                    batch.detach()
            sols = solve(layer, group)
        if learning:
            _learn(run, group, sols, do_phi)
        for batch, (zn, u) in zip(group, sols, strict=True):
            u_np = u.detach().cpu().double().numpy()
            limit = min(int(round(u_np.sum())), max(k - int(selected.sum()), 0))
            opened = round_opened(zn.detach().cpu().double().numpy(), u_np, batch.ub_real, limit)
            if cfg.class_quotas:
                opened = respect_quota(opened, u_np, task.y_train[batch.idx], quota_left)
                np.subtract.at(quota_left, task.y_train[batch.idx][opened], 1)
            selected[batch.idx[opened]] = True  # step 6
            run.u_sum[batch.idx] += u_np
            run.open_count[batch.idx[opened]] += 1
            run.seen[batch.idx] += 1
        run.work_done += len(group)
        b_last = min(g0 + cfg.solve_group, n_batches)
        run.reporter.report(
            "selection", _ONLINE_SHARE * run.work_done / run.total_work if cfg.swap_passes
            else run.work_done / run.total_work,
            f"epoch {ep + 1}/{run.n_passes}{'' if learning else ' (read-out)'}, batch {b_last}/{n_batches}",
        )
    return selected


def _learn(run: _Run, group: list[BatchInputs], sols: list, do_phi: bool) -> None:
    """Steps 3-5 for a solved group: phi on the mean lookahead loss, theta batch after batch."""
    cfg, dev = run.cfg, run.xv.device
    losses = []
    with torch.set_grad_enabled(True):
        for batch, (_, u) in zip(group, sols, strict=True):
            vi = torch.as_tensor(
                run.rng.choice(len(run.yv), min(cfg.val_batch, len(run.yv)), replace=False), device=dev
            )
            val_loss, _ = lookahead_val_loss(run.theta, batch, u, run.data, run.xv[vi], run.yv[vi],
                                             cfg.lr_theta)
            losses.append(val_loss)
        if do_phi:
            run.opt.zero_grad()
            torch.stack(losses).mean().backward()
            run.opt.step()
        for batch, (_, u) in zip(group, sols, strict=True):  # step 5, batch after batch
            theta_step(run.theta, batch, u, run.data, cfg.lr_theta)
    run.val_losses += [float(v.detach()) for v in losses]


def _read_out(
    run: _Run, online: np.ndarray, score: np.ndarray, suspect: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The set at the budget: greedy (or the online set), then swap passes. ``(chosen, rank, swaps)``."""
    task, cfg = run.task, run.cfg
    if cfg.start == "greedy":
        chosen, rank = greedy_start(run.model, run.data, task.y_train, run.allowed, task.k, task.n_classes,
                                    run.rng, power=cfg.dist_power, alloc=cfg.class_alloc)
    else:
        chosen, rank = exactly_k(online, score, run.allowed, suspect, task.k), np.zeros(task.n)
    swaps, cache = [], {}
    for sp in range(cfg.swap_passes):
        span = (_ONLINE_SHARE + (1 - _ONLINE_SHARE) * sp / cfg.swap_passes,
                _ONLINE_SHARE + (1 - _ONLINE_SHARE) * (sp + 1) / cfg.swap_passes)
        chosen, changed = swap_pass(run.model, run.layer, run.data, chosen, task.y_train, cfg, run.rng,
                                    run.reporter, span=span, label=f"swap pass {sp + 1}/{cfg.swap_passes}",
                                    cache=cache)
        swaps.append(changed)
        if changed == 0:
            break
    return chosen, rank, swaps


def _sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """All ``n`` points, or a sorted random sample of ``size`` of them (no draw when all fit)."""
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))


def _extra_closed(flagged: np.ndarray, suspect: np.ndarray, k: int, margin: float) -> np.ndarray:
    """The ``margin * flagged`` most suspect unflagged points, keeping at least ``2k`` open candidates.

    A detector misses some mislabels (recall 0.93-0.95 on digits); facility location
    then opens them readily, because a mislabelled point is an outlier in its given
    class that nothing else represents. Closing a margin of the next most suspect
    points keeps them out, but it also closes hard clean points: on the tuning folds
    it cost 7-10 points summed over 30 percent noise digits, so the default is 0.
    """
    extra = np.zeros(len(flagged), dtype=bool)
    room = int((~flagged).sum()) - 2 * k
    n_extra = min(int(round(margin * flagged.sum())), max(room, 0))
    if n_extra > 0:
        order = np.argsort(-np.where(flagged, -np.inf, suspect), kind="stable")
        extra[order[:n_extra]] = True
    return extra


def _flags(task: SelectionTask, cfg: HostCPConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Flagged suspects and suspect scores: given, detected, or none."""
    flagged, suspect, source = task.flagged, task.suspect, "task"
    if flagged is None and (cfg.exclude_flagged or cfg.quality_weight or cfg.learn_cost):
        from core.mislabel import detect_mislabels  # part of this package: never optional

        res = detect_mislabels(task.x_train, task.y_train, n_classes=task.n_classes, seed=task.seed)
        flagged, source = res.flagged, "detect_mislabels"
        suspect = res.score if suspect is None else suspect
    if flagged is None:
        flagged, source = np.zeros(task.n, dtype=bool), "none"
    if suspect is None:
        suspect = flagged.astype(float)
    return np.asarray(flagged, dtype=bool), np.asarray(suspect, dtype=np.float64), source


def _class_quota(y: np.ndarray, allowed: np.ndarray, k: int, n_classes: int) -> np.ndarray:
    from core.valuation.base import stratified_quotas

    return stratified_quotas(y, k, n_classes, allowed=allowed).astype(float)


def _batch_quota(quota_left: np.ndarray, left: np.ndarray, here: np.ndarray) -> np.ndarray:
    """Per-class budget of one batch: its share of what is left, with room to spare.

    Args:
        quota_left: ``(C,)`` picks still allowed per class in this pass.
        left: ``(C,)`` allowed points per class from this batch to the end of the pass.
        here: ``(C,)`` allowed points per class in this batch.
    """
    share = np.where(left > 0, quota_left * here / np.maximum(left, 1), 0.0)
    return np.minimum(np.maximum(quota_left, 0), 1.5 * share + 0.5)
