"""Data-OOB (Kwon & Zou 2023): a point's out-of-bag correctness over bagged weak learners; top-k."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import BaggingClassifier
from sklearn.tree import DecisionTreeClassifier

from core.processes import ENGINE_N_JOBS
from core.progress import Reporter
from core.valuation.base import SelectionMethod, SelectionTask, SelectOutput, register, top_k_mask

__all__ = ["DataOOBSelector", "data_oob_values"]


def data_oob_values(
    x: np.ndarray, y: np.ndarray, *, n_estimators: int = 200, seed: int = 0
) -> np.ndarray:
    """``(N,)`` mean out-of-bag correctness of each point (NaN-free; never-OOB points get 0.5).

    Bagged decision trees (sklearn ``BaggingClassifier``, bootstrap samples); for
    each tree, the points outside its bootstrap sample score 1 if the tree predicts
    their given label.

    Equal to pyDVL 0.10's ``DataOOBValuation`` of the same bag when the labels present
    are 0..C-1 (``tests/valuation/test_pydvl_reference.py``). Deliberate differences:
    predictions go back through ``classes_`` (pyDVL compares the trees' encoded
    predictions with the raw labels, wrong when a class is missing from ``y``), and a
    point that is never out of bag gets 0.5 here, no value in pyDVL.
    """
    bag = BaggingClassifier(
        estimator=DecisionTreeClassifier(),
        n_estimators=n_estimators,
        bootstrap=True,
        random_state=seed,
        n_jobs=ENGINE_N_JOBS,  # no worker processes (core.processes)
    ).fit(x, y)
    n = len(y)
    hits, counts = np.zeros(n), np.zeros(n)
    for est, in_bag in zip(bag.estimators_, bag.estimators_samples_, strict=True):
        oob = np.ones(n, dtype=bool)
        oob[in_bag] = False
        pred = bag.classes_[est.predict(x[oob])] if len(bag.classes_) else est.predict(x[oob])
        hits[oob] += pred == y[oob]
        counts[oob] += 1
    return np.where(counts > 0, hits / np.maximum(counts, 1), 0.5)


@register("data_oob", "Data-OOB (top-k)")
class DataOOBSelector(SelectionMethod):
    """Top-k of Data-OOB values (per point, not subset-aware)."""

    def __init__(self, *, n_estimators: int = 200) -> None:
        super().__init__()
        self.n_estimators = int(n_estimators)

    def _select(self, task: SelectionTask, reporter: Reporter) -> SelectOutput:
        vals = data_oob_values(task.x_train, task.y_train, n_estimators=self.n_estimators, seed=task.seed)
        # ties (many points at 1.0) broken by a seeded random jitter, not by index
        jitter = np.random.default_rng(task.seed).random(task.n) * 1e-6
        return top_k_mask(vals + jitter, task.k), vals, {"n_estimators": self.n_estimators}
