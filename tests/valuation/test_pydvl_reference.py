"""Our KNN-Shapley and Data-OOB baselines against pyDVL 0.10, the field's reference code.

The app and the README put these baselines side by side with HOST-CP, so their
values must be the published methods' values, not a look-alike. Each check runs
the project's own method (``get_method(...).fit(task).result.scores``) and pyDVL
on the same small, noisy case and compares the per-point values:

* KNN-Shapley is closed form, so the two must agree to rounding. Conventions
  match without any adjustment: both use the Euclidean distance, the recursion
  of Jia et al. (2019, Thm. 1) with the same k, and the mean over validation
  points (pyDVL divides the sum by the number of test points, as we do). The
  data are continuous Gaussians, so no two distances tie and the neighbour
  order (our stable argsort vs scikit-learn's ``kneighbors``) is the same.
  Tolerance: ``max |ours - pyDVL| <= 1e-8 * max |pyDVL|`` (measured: <= 7e-18
  absolute, <= 4e-16 relative, over 5 seeds and k in 1, 5, 10).
* Data-OOB: pyDVL values an already fitted bagging model, so we hand it a
  ``BaggingClassifier`` built exactly as ``core.valuation.data_oob`` builds its
  own (same trees, estimators and seed): the bootstrap draws are then identical
  and so must be the values (tolerance 1e-12; measured <= 4e-16). A second check
  uses independent draws (another seed), where only the method, not the draws,
  is shared: Spearman >= 0.9 and the mean value within 0.03 (measured over 8
  seeds with 200 trees: Spearman 0.954-0.976, mean difference <= 0.017; each
  value averages about 73 out-of-bag trees, so per-point noise is ~0.05).

Known differences, outside these cases: a point that is in every bootstrap
sample gets 0.5 from us and no value (count 0) from pyDVL; and pyDVL compares the
trees' *encoded* predictions with the raw labels, which is right only when the
labels present are exactly 0..C-1 (here they are; with a class missing from
``y_train`` pyDVL's values are wrong and ours are not, see ``data_oob_values``).

The sharpness checks show the comparisons can fail: k off by one, or another
bootstrap seed, moves the values far outside the tolerances.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.ensemble import BaggingClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier

from core.processes import ENGINE_N_JOBS
from core.valuation import SelectionTask, get_method

with warnings.catch_warnings():  # pyDeprecate >= 0.8 warns about pyDVL's own decorators at import
    warnings.simplefilter("ignore", FutureWarning)
    from pydvl.valuation.dataset import Dataset
    from pydvl.valuation.methods.data_oob import DataOOBValuation
    from pydvl.valuation.methods.knn_shapley import KNNShapleyValuation

KNN_RTOL = 1e-8  # relative to the largest |value|: closed form, only rounding differs
OOB_SAME_DRAWS_ATOL = 1e-12  # means of 0/1 hits over identical trees
OOB_MIN_SPEARMAN = 0.9  # independent draws: measured 0.954-0.976
OOB_MEAN_ATOL = 0.03  # independent draws: measured <= 0.017
N_ESTIMATORS = 200  # the project's default


def _noisy_task(seed: int, n: int = 120, m: int = 40, c: int = 3, d: int = 4) -> SelectionTask:
    """Gaussian classes in ``d`` dimensions, 15 percent of the training labels flipped."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * 2.0
    y = rng.integers(0, c, n)
    x = centers[y] + rng.normal(size=(n, d))
    yv = rng.integers(0, c, m)
    xv = centers[yv] + rng.normal(size=(m, d))
    flip = rng.choice(n, int(0.15 * n), replace=False)
    y[flip] = (y[flip] + rng.integers(1, c, len(flip))) % c
    assert set(np.unique(y)) == set(range(c))  # pyDVL's Data-OOB needs labels 0..C-1 present
    return SelectionTask(x, y, xv, yv, n_classes=c, budget=0.3, seed=seed)


def _by_index(result, n: int) -> np.ndarray:
    """pyDVL's ``ValuationResult`` as an ``(n,)`` array in data-index order."""
    out = np.full(n, np.nan)
    out[result.indices] = result.values
    return out


def _pydvl_knn(task: SelectionTask, k: int) -> np.ndarray:
    valuation = KNNShapleyValuation(
        KNeighborsClassifier(n_neighbors=k), Dataset(task.x_val, task.y_val), progress=False
    )
    return _by_index(valuation.fit(Dataset(task.x_train, task.y_train)).result, task.n)


def _pydvl_oob(task: SelectionTask, seed: int) -> np.ndarray:
    """pyDVL's Data-OOB of a bag built as ``core.valuation.data_oob`` builds its own."""
    bag = BaggingClassifier(
        estimator=DecisionTreeClassifier(), n_estimators=N_ESTIMATORS, bootstrap=True,
        random_state=seed, n_jobs=ENGINE_N_JOBS,
    ).fit(task.x_train, task.y_train)
    result = DataOOBValuation(bag).fit(Dataset(task.x_train, task.y_train)).result
    assert result.counts.min() > 0  # every point out of bag at least once: no 0.5/empty convention
    return _by_index(result, task.n)


def _ours(name: str, task: SelectionTask, **config) -> np.ndarray:
    return get_method(name, **config).fit(task).result.scores


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_knn_shapley_matches_pydvl(seed, k):
    task = _noisy_task(seed)
    ours, ref = _ours("knn_shapley", task, n_neighbors=k), _pydvl_knn(task, k)
    scale = np.abs(ref).max()
    assert scale > 0
    assert np.abs(ours - ref).max() <= KNN_RTOL * scale


def test_knn_shapley_comparison_is_sharp():
    """k off by one, or the values negated, lands far outside the tolerance."""
    task = _noisy_task(0)
    ours = _ours("knn_shapley", task, n_neighbors=5)
    scale = np.abs(ours).max()
    for k in (4, 6):
        assert np.abs(ours - _pydvl_knn(task, k)).max() > 1e4 * KNN_RTOL * scale
    assert np.abs(-ours - _pydvl_knn(task, 5)).max() > 1e4 * KNN_RTOL * scale


def test_data_oob_matches_pydvl_on_identical_bootstrap_draws():
    task = _noisy_task(0)
    ours = _ours("data_oob", task, n_estimators=N_ESTIMATORS)
    ref = _pydvl_oob(task, seed=task.seed)
    assert np.abs(ours - ref).max() <= OOB_SAME_DRAWS_ATOL
    # another seed draws other bootstraps: far outside the tolerance, so the check above is sharp
    assert np.abs(ours - _pydvl_oob(task, seed=task.seed + 1)).max() > 0.05


def test_data_oob_agrees_with_pydvl_on_independent_draws():
    task = _noisy_task(1)
    ours = _ours("data_oob", task, n_estimators=N_ESTIMATORS)
    ref = _pydvl_oob(task, seed=1000 + task.seed)
    assert spearmanr(ours, ref).statistic >= OOB_MIN_SPEARMAN
    assert abs(ours.mean() - ref.mean()) <= OOB_MEAN_ATOL
