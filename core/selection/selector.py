"""HOST-CP: online, subset-aware selection through a differentiable convex layer.

Public face of ``core.selection``: :class:`HostCPConfig` and
:class:`HostCPSelector` (registered as ``"hostcp"`` in ``core.valuation``).
A run is four steps (:meth:`HostCPSelector._run`):

1. set-up: mislabel flags, the data on the device, phi at its start, the layer;
2. learning passes (method.md steps 1-6: label-aware ``f_phi``, a learned opening
   cost, flagged suspects never opened, a global budget, per-class quotas), on at
   most ``scale.learn_sample`` points;
3. an online read-out pass over every point (at most ``scale.score_sample``), which scores
   each point by how often and how strongly it was opened;
4. the set at the budget (:mod:`core.selection.readout`): per-class greedy
   facility location in f_phi space, then swap passes through the layer; of that set,
   the greedy start and greedy k-center, the one whose MLP scores best on the validation
   set (:mod:`core.selection.readout_choice`). When the
   pool is shifted from the validation set (:mod:`core.selection.target`, checked in
   step 1), the set represents the validation set's distribution: quotas by its class
   shares, and each point's cost of being represented weighted by its density ratio.

Steps 2 and 3 are online passes (:mod:`core.selection.online`); given a cluster
(:meth:`HostCPSelector.distribute`) they run as shards on its workers, exchanging
the pass's set every few solver calls; steps 1 and 4 run in this process.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from core.errors import ConfigError
from core.progress import Reporter, SubReporter
from core.selection.batch import lookahead_val_loss
from core.selection.config import LEARN_PHI_NOTE, HostCPConfig
from core.selection.layer import SelectionLayer
from core.selection.model import SelectionModel, initial_model, pca_projection
from core.selection.online import (
    TORCH_THREADS,
    Learner,
    PassData,
    PassEnv,
    Shard,
    advance,
    make_env,
    merge_learners,
    n_groups,
    plan_shards,
    shard_round,
    solver_calls,
)
from core.selection.readout import greedy_start, swap_pass
from core.selection.readout_choice import CHOICE_MIN_VAL, ReadoutChoice, choose_readout, kcenter_allowed
from core.selection.target import TargetShift, detect_shift, no_shift, sample_rows
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = ["HostCPConfig", "HostCPSelector", "SelectionModel", "lookahead_val_loss", "pca_projection"]

logger = logging.getLogger(__name__)

#: Share of the progress bar for the online passes; the swap passes get the rest.
_ONLINE_SHARE = 0.85


@dataclass
class _Run:
    """What the steps of one run share."""

    task: SelectionTask
    cfg: HostCPConfig
    env: PassEnv  # the data as tensors and the layer, in this process
    learner: Learner  # phi, theta and phi's optimiser state
    allowed: np.ndarray
    rng: np.random.Generator
    reporter: Reporter
    learn_points: np.ndarray  # the points the learning passes see
    shift: TargetShift  # pool against validation set: whom the read-out represents
    score_points: np.ndarray  # the points the online read-out pass scores
    executor: Executor | None = None  # where shard rounds run (None: one shard, here)
    shards: int = 1
    exchange_every: int = 16  # solver calls a shard makes between exchanges of the set
    shared: Any = None  # the executor's handle to the PassData
    u_sum: np.ndarray = field(init=False)
    open_count: np.ndarray = field(init=False)
    seen: np.ndarray = field(init=False)  # passes each point took part in
    val_losses: list[float] = field(default_factory=list)
    work_done: int = 0  # solver calls made so far, for progress
    rounds: int = 0  # shard rounds run on the executor
    exchange_bytes: int = 0  # array bytes those rounds moved between the driver and the shards

    def __post_init__(self) -> None:
        n = self.task.n
        self.u_sum, self.open_count, self.seen = np.zeros(n), np.zeros(n), np.zeros(n)

    @property
    def model(self) -> SelectionModel:
        return self.learner.model

    @property
    def layer(self) -> SelectionLayer:
        return self.env.layer

    @property
    def data(self) -> dict[str, torch.Tensor]:
        return self.env.data

    @property
    def total_work(self) -> int:
        calls = [solver_calls(len(p), self.layer.n, self.cfg.scale.solve_group)
                 for p in (self.learn_points, self.score_points)]
        return max(self.learning_passes * calls[0] + calls[1], 1)

    @property
    def n_passes(self) -> int:
        """Learning passes + the read-out pass."""
        return self.learning_passes + 1

    @property
    def online_share(self) -> float:
        """Share of the progress bar for the online passes (the swap passes, if any, get the rest)."""
        return _ONLINE_SHARE if self.cfg.swap_passes else 1.0

    @property
    def learning_passes(self) -> int:
        """Passes that learn phi (none when it is frozen: theta serves only phi's lookahead)."""
        return self.cfg.epochs if self.cfg.learn_phi else 0


class HostCPSelector(SelectionMethod):
    """HOST-CP subset selection (method.md); see :class:`HostCPConfig` for the settings."""

    config_class = HostCPConfig

    def __init__(self, config: HostCPConfig | None = None) -> None:
        super().__init__()
        if config is not None and not isinstance(config, HostCPConfig):
            raise TypeError(f"config must be a HostCPConfig; got {type(config).__name__}.")
        self.config = config or HostCPConfig()
        self._executor: Executor | None = None
        self._shards, self._exchange_every = 1, 16

    def distribute(
        self, executor: Executor | None, shards: int = 1, exchange_every: int = 16
    ) -> HostCPSelector:
        """Run the online passes as ``shards`` shards on ``executor``; returns ``self``.

        Each shard advances ``exchange_every`` solver calls per round against the pass's
        existing set; between rounds the driver merges the openings of every shard and,
        in a learning pass, averages phi and theta (:mod:`core.selection.online`). The
        read-out (greedy start, swap passes, the choice on the validation set) stays here.
        One shard gives the result of a run in this process for the seed; ``executor=None``
        is that run.
        """
        for name, value in (("shards", shards), ("exchange_every", exchange_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
        self._executor, self._shards, self._exchange_every = executor, shards, exchange_every
        return self

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        before = torch.get_num_threads()
        torch.set_num_threads(TORCH_THREADS)  # process-wide; restored below
        try:
            return self._run(task, reporter)
        finally:
            torch.set_num_threads(before)

    def _run(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        t0 = time.perf_counter()
        run, flags = self._setup(task, reporter)
        times = {"setup": time.perf_counter() - t0}  # seconds by step, kept in the run info
        for ep in range(run.learning_passes):
            _online_pass(run, ep, learning=True)
        times["learning"] = time.perf_counter() - t0 - sum(times.values())
        online = _online_pass(run, run.learning_passes, learning=False)
        times["online"] = time.perf_counter() - t0 - sum(times.values())
        score = (run.u_sum + run.open_count) / (2.0 * np.maximum(run.seen, 1))  # how often, how strongly
        chosen, rank, swaps, choice = _read_out(run)
        times["readout"] = time.perf_counter() - t0 - sum(times.values())
        # the chosen set ranks first, in greedy pick order (a prefix is the greedy set of that size),
        # then the rest by how often and how strongly the online pass opened them
        scores = np.where(chosen, 2.0 + np.where(rank > 0, rank, score), score)
        n_batches = math.ceil(task.n / run.layer.n)
        info = {
            "pass_selected": int(online.sum()),
            "adjusted": task.k - int(online.sum()),
            "swaps": swaps,
            **choice.info(),
            **run.shift.info(),
            "n_flagged": flags["n_flagged"],
            "flag_source": flags["source"],
            "learning_passes": run.learning_passes,
            "phi": "learned from the validation set" if run.cfg.learn_phi else LEARN_PHI_NOTE,
            "learn_points": len(run.learn_points),
            "score_points": len(run.score_points),
            "val_loss_first": run.val_losses[0] if run.val_losses else None,
            "val_loss_last": float(np.mean(run.val_losses[-n_batches:])) if run.val_losses else None,
            "shards": run.shards if run.executor is not None else 1,
            "exchange_every": run.exchange_every if run.executor is not None else None,
            "shard_rounds": run.rounds,
            "exchange_bytes": run.exchange_bytes,
            "seconds": round(time.perf_counter() - t0, 2),
            **{f"seconds_{step}": round(v, 2) for step, v in times.items()},
            "config": asdict(run.cfg),
        }
        return chosen, scores, info

    def _setup(self, task: SelectionTask, reporter: Reporter) -> tuple[_Run, dict]:
        """Flags, the data on the device, phi at its start, theta, the layer, the learning sample."""
        cfg = self.config
        flagged, suspect, source = _flags(task, cfg)
        dev = torch.device(task.device)
        rng = np.random.default_rng(task.seed)
        dim, ncls = task.x_train.shape[1], task.n_classes
        model = initial_model(task.x_train, ncls, cfg, task.seed, dev)
        theta = [torch.zeros(dim, ncls, device=dev, requires_grad=True),
                 torch.zeros(ncls, device=dev, requires_grad=True)]
        allowed = ~flagged if cfg.exclude_flagged else np.ones(task.n, dtype=bool)
        pass_data = PassData(
            x=task.x_train, y=task.y_train, suspect=suspect, flagged=flagged, allowed=allowed,
            x_val=task.x_val, y_val=task.y_val, n_classes=ncls, cfg=cfg,
            batch_size=min(cfg.batch_size, task.n), device=task.device,
        )
        learn_points, score_points = (sample_rows(task.n, size, rng) for size in (cfg.scale.learn_sample,
                                                                             cfg.scale.score_sample))
        shift = no_shift() if cfg.target == "off" else detect_shift(
            task.x_train, task.y_train, task.x_val, task.y_val, ncls, allowed=allowed, seed=task.seed,
            force=cfg.target == "on")
        run = _Run(
            task=task, cfg=cfg, env=make_env(pass_data), learner=Learner(model=model, theta=theta),
            allowed=allowed, rng=rng, reporter=reporter, learn_points=learn_points, shift=shift,
            score_points=score_points,
        )
        if self._executor is not None:
            run.executor, run.shards, run.exchange_every = self._executor, self._shards, self._exchange_every
            run.shared = self._executor.put(pass_data)
        return run, {"n_flagged": int(flagged.sum()), "source": source}


def _online_pass(run: _Run, ep: int, *, learning: bool) -> np.ndarray:
    """One online pass in random order (method.md steps 1-6); returns the set it opened.

    A learning pass updates theta after every batch and phi once per solver call
    (``scale.solve_group`` batches, the mean of their lookahead losses); the read-out
    pass only solves. Points are scored by their opened mass and openings. With a
    cluster (:meth:`HostCPSelector.distribute`) the pass runs as shards in rounds
    (:mod:`core.selection.online`); here it is one shard in one round.
    """
    task = run.task
    points = run.learn_points if learning else run.score_points
    k = task.k if len(points) == task.n else int(round(task.k * len(points) / task.n))
    order = points[run.rng.permutation(len(points))]
    n_shards = run.shards if run.executor is not None else 1
    shards = plan_shards(order, k, task.y_train, run.allowed, task.n_classes, run.rng, n_shards,
                         learning=learning)
    total = sum(n_groups(sh, run.layer.n, run.cfg.scale.solve_group) for sh in shards)
    done_before = run.work_done
    label = f"epoch {ep + 1}/{run.n_passes}{'' if learning else ' (read-out)'}"
    selected = np.zeros(task.n, dtype=bool)
    run.reporter.check_cancelled()
    if run.executor is None:
        def on_group(done: int, _total: int) -> None:
            run.work_done = done_before + done
            _report(run, f"{label}, call {done}/{total}")
            run.reporter.check_cancelled()

        advance(run.env, shards[0], run.learner, np.zeros(0, dtype=np.int64), on_group=on_group)
        _merge_round(run, shards, selected)
        return selected
    while any(sh.next_group < n_groups(sh, run.layer.n, run.cfg.scale.solve_group) for sh in shards):
        # every shard starts the round from the same phi and theta (a copy each: a LocalExecutor
        # runs the shards one after another in this process, on the objects themselves)
        items = [(sh, copy.deepcopy(run.learner) if n_shards > 1 else run.learner, np.flatnonzero(selected),
                  run.exchange_every) for sh in shards]
        group_size = run.cfg.scale.solve_group
        calls = sum(min(run.exchange_every, n_groups(sh, run.layer.n, group_size) - sh.next_group)
                    for sh in shards)
        share = run.online_share
        span = SubReporter(run.reporter, share * run.work_done / run.total_work,
                           share * min(run.work_done + calls, run.total_work) / run.total_work)
        out = run.executor.map(shard_round, items, shared=run.shared, reporter=span, stage="selection",
                               label=lambda _: f"{label}, {n_shards} shards")
        shards = [sh for sh, _ in out]
        run.rounds += 1
        run.exchange_bytes += sum(_payload(sh, lr, learning) for sh, lr in out) + sum(
            it[2].nbytes + (_payload(None, it[1], learning)) for it in items)
        run.learner = merge_learners([lr for _, lr in out]) if learning else run.learner
        run.rng.bit_generator.state = shards[0].rng.bit_generator.state  # shard 0 draws for the run
        _merge_round(run, shards, selected)
        run.work_done = done_before + sum(sh.next_group for sh in shards)
        _report(run, f"{label}, call {sum(sh.next_group for sh in shards)}/{total}, {n_shards} shards")
    return selected


def _merge_round(run: _Run, shards: list[Shard], selected: np.ndarray) -> None:
    """What every shard did in a round joins the pass's set and the run's scores."""
    for sh in shards:
        a, b = sh.done
        run.u_sum[sh.order[a:b]] += sh.done_u
        run.seen[sh.order[a:b]] += 1
        run.open_count[sh.done_opened] += 1
        selected[sh.done_opened] = True  # step 6
    run.val_losses += run.learner.val_losses
    run.learner.val_losses = []


def _payload(shard: Shard | None, learner: Learner, learning: bool) -> int:
    """Bytes of the arrays a round moves for one shard one way (the exchange's size, for the run info)."""
    n = 0
    if shard is not None:
        n += shard.done_u.nbytes + shard.done_opened.nbytes + shard.quota_left.nbytes + shard.left.nbytes
    if learning:  # phi, theta and Adam's two moments travel both ways
        n += sum(3 * p.numel() * p.element_size() for p in learner.model.parameters())
        n += sum(t.numel() * t.element_size() for t in learner.theta)
    return n


def _report(run: _Run, message: str) -> None:
    run.reporter.report("selection", run.online_share * min(run.work_done / run.total_work, 1.0), message)


def _read_out(run: _Run) -> tuple[np.ndarray, np.ndarray, list[int], ReadoutChoice]:
    """The set at the budget: ``(chosen, rank, swaps, choice)``.

    Per-class greedy in f_phi space, then swap passes; of that set, the greedy start and
    greedy k-center among the allowed points, the one whose MLP does best on the validation
    set (:mod:`core.selection.readout_choice`). Starting from the online pass's own set
    instead lost on the tuning folds (2-6 points behind greedy at every budget on clean
    digits; README, "How the read-out was chosen").
    """
    task, cfg = run.task, run.cfg
    chosen, rank = greedy_start(run.model, run.data, task.y_train, run.allowed, task.k, task.n_classes,
                                run.rng, weights=run.shift.weights, shares=run.shift.shares,
                                suspect=run.env.pd.suspect)
    start = chosen.copy()
    swaps, cache = [], {}
    for sp in range(cfg.swap_passes):
        span = (_ONLINE_SHARE + (1 - _ONLINE_SHARE) * sp / cfg.swap_passes,
                _ONLINE_SHARE + (1 - _ONLINE_SHARE) * (sp + 1) / cfg.swap_passes)
        chosen, changed = swap_pass(run.model, run.layer, run.data, chosen, task.y_train, cfg, run.rng,
                                    run.reporter, span=span, label=f"swap pass {sp + 1}/{cfg.swap_passes}",
                                    cache=cache, weights=run.shift.weights)
        swaps.append(changed)
        if changed == 0:
            break
    final = "swap passes" if cfg.swap_passes else "greedy start"
    if cfg.scale.choice_sample == 0:
        return chosen, rank, swaps, ReadoutChoice(final, {}, "scale.choice_sample=0: no choice")
    if len(task.y_val) < CHOICE_MIN_VAL:  # no choice: build nothing to throw away
        return chosen, rank, swaps, choose_readout({final: chosen}, task, sample=cfg.scale.choice_sample)
    run.reporter.check_cancelled()
    run.reporter.report("selection", 1.0, "choosing the read-out on the validation set")
    candidates = {final: chosen}
    if not np.array_equal(start, chosen):  # the swap passes changed the set: the start is a second candidate
        candidates["greedy start"] = start
    left_out = ""
    if run.shift.shares is not None:  # a target (detected shift or target=on) sets the class quotas
        left_out = "k-center left out (the target sets the class quotas; k-center keeps none)"
        kc = None
    else:
        # its "k-center i/k" messages at the stage's end, not a progress bar running back from 1
        kc = kcenter_allowed(task.x_train, run.allowed, task.k, task.seed,
                             reporter=SubReporter(run.reporter, 1.0, 1.0))
        if kc is None:  # too much work (KCENTER_MAX_WORK)
            left_out = (f"k-center left out ({task.n:,} points x {task.k:,} picks x {task.x_train.shape[1]} "
                        "dimensions: too slow)")
        else:
            candidates["k-center"] = kc[0]
    choice = choose_readout(candidates, task, sample=cfg.scale.choice_sample, reporter=run.reporter)
    if left_out:
        choice.reason += f"; {left_out}"
    if choice.name == "k-center":
        return kc[0], kc[1], swaps, choice
    return candidates[choice.name], rank, swaps, choice


def _flags(task: SelectionTask, cfg: HostCPConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """Flagged suspects and suspect scores: given, detected, or none."""
    flagged, suspect, source = task.flagged, task.suspect, "task"
    if flagged is None and (cfg.exclude_flagged or cfg.learn_cost):
        from core.mislabel import detect_mislabels  # part of this package: never optional

        res = detect_mislabels(task.x_train, task.y_train, n_classes=task.n_classes, seed=task.seed)
        flagged, source = res.flagged, "detect_mislabels"
        suspect = res.score if suspect is None else suspect
    if flagged is None:
        flagged, source = np.zeros(task.n, dtype=bool), "none"
    if suspect is None:
        suspect = flagged.astype(float)
    return np.asarray(flagged, dtype=bool), np.asarray(suspect, dtype=np.float64), source
