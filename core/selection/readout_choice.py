"""HOST-CP's last step: of its candidate read-outs, keep the one whose model does best on the validation set.

Why: no one read-out wins everywhere. On the tuning folds (``benchmarks/tune_hostcp.py``,
3 folds, 7 sets, 5-30 %) the swap passes gained on clean digits at 10-20 % and lost 1-4
points on the non-linear set, and greedy k-center, last of the baselines at 5 %, was first
on clean digits at 20-30 %. The method's premise is that value is what the clean validation
set says, so each candidate is judged there: an MLP (:func:`core.evaluate.subset_value`, the
app's value-curve model) trained on the candidate's points, scored on the validation rows.
Choosing by that among the swap passes' set, the greedy start and k-center met 27 of the 28
tuning cells (23 with the swap passes' set always), +9.7 points summed (README, "Which
read-out, chosen by the validation set").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.progress import Reporter
from core.valuation.base import SelectionTask
from core.valuation.kcenter import kcenter_greedy

__all__ = [
    "CHOICE_MIN_VAL", "CHOICE_SEED_OFFSET", "KCENTER_MAX_WORK", "ReadoutChoice", "choose_readout",
    "kcenter_allowed", "readout_line",
]

logger = logging.getLogger(__name__)

#: The judging MLP's seed is the run's plus this: a model of its own, not the one a benchmark (or
#: a user's script) trains with the run's seed on the subset it is given, whose lucky or unlucky
#: initialisation the choice would otherwise select for.
CHOICE_SEED_OFFSET = 7919

#: Greedy k-center costs about points x picks x dimensions: 10^8 points x picks took 6 s on
#: 2 cores in 64-d (50,000 x 2,000). Above this much work (about 20 s) it is left out of the
#: candidates; a million 64-d points at 10 % would be 6e12, hours.
KCENTER_MAX_WORK = 2e10

#: Fewer validation points than this: the swap passes' set is kept without a choice (with 30
#: points a one-point accuracy difference is a third of a point; the choice would be noise).
CHOICE_MIN_VAL = 50


@dataclass
class ReadoutChoice:
    """Which candidate was kept, each one's validation accuracy, and why (for the run's info)."""

    name: str
    scores: dict[str, float]
    reason: str

    def info(self) -> dict:
        return {"readout": self.name, "readout_val_accuracy": self.scores, "readout_reason": self.reason}


def kcenter_allowed(
    x: np.ndarray, allowed: np.ndarray, k: int, seed: int, reporter: Reporter | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Greedy k-center among the allowed points in the encoder's metric (the baseline's, flags left out).

    Like the k-center baseline it ignores classes: its set keeps no class quotas (the choice
    leaves it out where a detected shift sets them, :func:`core.selection.selector._read_out`).

    Returns:
        ``(chosen (N,) bool, rank (N,) in (0, 1]: 1 for the first pick, 0 if not picked)``, or
        ``None`` where ``N x k x D`` is above :data:`KCENTER_MAX_WORK`.
    """
    if float(len(allowed)) * k * x.shape[1] > KCENTER_MAX_WORK:
        return None
    order = []
    # too few allowed points: all of them, then k-center among the flagged (as the greedy start tops up)
    for idx in (np.flatnonzero(allowed), np.flatnonzero(~allowed)):
        if len(order) < k and len(idx):
            order.extend(idx[kcenter_greedy(x[idx], k - len(order), seed=seed, reporter=reporter)])
    order = np.asarray(order, dtype=np.int64)
    chosen, rank = np.zeros(len(allowed), dtype=bool), np.zeros(len(allowed))
    chosen[order] = True
    rank[order] = 1.0 - np.arange(len(order)) / max(len(order), 1)
    return chosen, rank


def choose_readout(
    candidates: dict[str, np.ndarray], task: SelectionTask, *, sample: int,
    value: Callable[..., float] | None = None, reporter: Reporter | None = None,
) -> ReadoutChoice:
    """The candidate (a ``(N,)`` bool mask) whose MLP scores best on ``task``'s validation rows.

    The first candidate wins ties and is kept without a choice where the validation set is
    smaller than :data:`CHOICE_MIN_VAL`. A candidate above ``sample`` points is judged by an
    MLP on a seeded random ``sample`` of it (the same size for all, so the cost stops growing).
    ``value`` (default :func:`core.evaluate.subset_value`, on the task's device) is the model's
    score; a test may pass another. ``reporter`` is asked before each candidate whether the
    job was cancelled.
    """
    first = next(iter(candidates))
    if len(task.y_val) < CHOICE_MIN_VAL:
        return ReadoutChoice(first, {}, f"validation set under {CHOICE_MIN_VAL} points: no choice")
    if value is None:
        from functools import partial

        from core.evaluate import subset_value

        value = partial(subset_value, device=task.device)
    rng = np.random.default_rng(task.seed)
    seed = task.seed + CHOICE_SEED_OFFSET
    scores: dict[str, float] = {}
    for name, chosen in candidates.items():
        if reporter is not None:
            reporter.check_cancelled()
        rows = np.flatnonzero(chosen)
        if len(rows) > sample:
            rows = np.sort(rng.choice(rows, sample, replace=False))
        scores[name] = round(float(value(task.x_train[rows], task.y_train[rows], task.x_val, task.y_val,
                                         n_classes=task.n_classes, seed=seed)), 4)
    best = max(scores, key=scores.get)  # max keeps the first of equal scores: the earlier candidate
    logger.debug("read-out choice: %s", scores)
    return ReadoutChoice(best, scores, "best validation accuracy of an MLP trained on each candidate")


def readout_line(info: dict) -> str:
    """One line for the CLI and the Select page: the read-out kept and each candidate's score.

    For a run whose info holds ``readout_val_accuracy`` (the callers check, so that runs
    without a choice do not import this module, which loads torch through ``core.selection``).
    """
    parts = ", ".join(f"{name} {acc:.1%}" for name, acc in info["readout_val_accuracy"].items())
    return f"read-out: {info['readout']} (validation accuracy of an MLP trained on each: {parts})"
