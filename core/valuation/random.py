"""Stratified random selection: the baseline every method must beat."""

from __future__ import annotations

import numpy as np

from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register, stratified_quotas

__all__ = ["RandomSelector", "stratified_random"]


def stratified_random(
    labels: np.ndarray, k: int, *, n_classes: int, seed: int = 0, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` points drawn per class in proportion to class sizes.

    Args:
        labels: ``(N,)`` class of each candidate.
        k: Number of points to draw.
        n_classes: Number of classes.
        seed: Random seed.
        allowed: ``(N,)`` bool; only these are drawn unless there are fewer than ``k``.

    Returns:
        ``(selected (N,) bool with k True, scores (N,) random priority in [0, 1))``, where
        the selected points have the highest scores.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    allowed = np.ones(n, dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    pool = allowed if allowed.sum() >= k else np.ones(n, dtype=bool)
    quotas = stratified_quotas(labels, k, n_classes, allowed=pool)
    prio = rng.random(n)
    selected = np.zeros(n, dtype=bool)
    for c in range(n_classes):
        members = np.flatnonzero((labels == c) & pool)
        take = members[np.argsort(-prio[members], kind="stable")[: quotas[c]]]
        selected[take] = True
    scores = 0.5 * prio + 0.5 * selected  # selected first, then a random order
    scores = np.where(pool, scores, scores * 0.01)  # points outside the pool (flagged) last
    return selected, scores


@register("random", "Random (stratified)")
class RandomSelector(SelectionMethod):
    """Stratified random subset; ignores flags (the plain baseline)."""

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        sel, scores = stratified_random(task.y_train, task.k, n_classes=task.n_classes, seed=task.seed)
        return sel, scores, {}
