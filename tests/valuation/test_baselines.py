"""Baselines and the registry: exactly k, stratification, flags, references, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import core.valuation.facility_location as fl_module
from core.errors import ConfigError, DataError, NotFittedError
from core.valuation import SelectionTask, available_methods, get_method
from core.valuation.base import stratified_quotas, top_k_mask
from core.valuation.data_oob import data_oob_values
from core.valuation.facility_location import (
    facility_location_greedy,
    facility_location_joint,
    facility_location_per_class,
    facility_location_sparse,
    graph_neighbours,
)
from core.valuation.kcenter import kcenter_greedy
from core.valuation.knn_shapley import knn_shapley_values

BASELINES = ["random", "clean_random", "kcenter", "facility_location", "knn_shapley", "data_oob"]


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    y = np.array([0] * 60 + [1] * 30 + [2] * 30)
    centers = rng.normal(size=(3, 4)) * 3
    x = (centers[y] + rng.normal(size=(len(y), 4))).astype(np.float32)
    yv = np.repeat(np.arange(3), 8)
    xv = (centers[yv] + rng.normal(size=(len(yv), 4))).astype(np.float32)
    flagged = np.zeros(len(y), bool)
    flagged[::6] = True
    return SelectionTask(x, y, xv, yv, n_classes=3, budget=0.2, seed=1, flagged=flagged,
                         suspect=flagged * 0.9)


def test_registry_lists_all_methods_hostcp_first():
    names = list(available_methods())
    assert names[0] == "hostcp"
    assert set(names) == {"hostcp", *BASELINES}
    with pytest.raises(ConfigError):
        get_method("nope")
    with pytest.raises(ConfigError):
        get_method("knn_shapley", bogus=3)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_returns_exactly_k_and_scores_for_all(name, task):
    res = get_method(name).fit(task).result
    assert res.method == name
    assert res.selected.dtype == bool and res.selected.sum() == task.k
    assert res.scores.shape == (task.n,) and np.isfinite(res.scores).all()


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_is_deterministic_for_a_seed(name, task):
    a = get_method(name).fit(task).result
    b = get_method(name).fit(task).result
    np.testing.assert_array_equal(a.selected, b.selected)


@pytest.mark.parametrize("name", BASELINES)
def test_not_fitted(name):
    with pytest.raises(NotFittedError):
        _ = get_method(name).result


def test_random_is_stratified(task):
    res = get_method("random").fit(task).result
    counts = np.bincount(task.y_train[res.selected], minlength=3)
    np.testing.assert_array_equal(counts, [12, 6, 6])


def test_clean_random_respects_flags_and_strata(task):
    res = get_method("clean_random").fit(task).result
    assert not (res.selected & task.flagged).any()
    np.testing.assert_array_equal(np.bincount(task.y_train[res.selected], minlength=3), [12, 6, 6])


def test_facility_location_is_stratified(task):
    res = get_method("facility_location").fit(task).result
    np.testing.assert_array_equal(np.bincount(task.y_train[res.selected], minlength=3), [12, 6, 6])


def test_stratified_quotas_sum_and_caps():
    y = np.array([0] * 10 + [1] * 5)
    allowed = np.ones(15, bool)
    allowed[:9] = False  # class 0 has one allowed point
    q = stratified_quotas(y, 6, 2, allowed=allowed)
    assert q.sum() == 6 and q[0] == 1
    assert top_k_mask(np.array([3.0, 1.0, 2.0]), 2, allowed=np.array([False, True, True])).tolist() == [
        False, True, True,
    ]


def test_kcenter_matches_brute_force_greedy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    order = kcenter_greedy(x, 5, seed=0)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    ref = [order[0]]
    for _ in range(4):
        ref.append(int(np.argmax(d[:, ref].min(1))))
    assert order.tolist() == ref


def test_facility_location_greedy_matches_brute_force():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 2)).astype(np.float32)
    order, _ = facility_location_greedy(x, 3)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    sim = d.max() - d

    def f(s):
        return sim[:, list(s)].max(1).sum()

    greedy = []
    for _ in range(3):
        greedy.append(max((j for j in range(9) if j not in greedy), key=lambda j: f(greedy + [j])))
    assert order.tolist() == greedy
    best = max(f(c) for c in itertools.combinations(range(9), 3))
    assert f(order) >= (1 - 1 / np.e) * best  # the greedy guarantee


def test_facility_location_joint_matches_brute_force_and_gives_spread_classes_more():
    rng = np.random.default_rng(4)
    # class 0: one tight blob; class 1 (same size): three far-apart blobs
    x0 = rng.normal(size=(12, 2)) * 0.1
    x1 = np.concatenate([rng.normal(size=(4, 2)) * 0.1 + c for c in ([8, 0], [0, 8], [8, 8])])
    x = np.concatenate([x0, x1]).astype(np.float32)
    y = np.array([0] * 12 + [1] * 12)
    order = facility_location_joint(x, y, 4)
    assert np.bincount(y[order], minlength=2).tolist() == [1, 3]  # quotas by size would give 2 and 2
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    sim = np.where(y[:, None] == y[None], d.max() - d, 0.0)  # represented only inside the class

    def f(s):
        return sim[:, list(s)].max(1).sum()

    greedy = []
    for _ in range(4):
        greedy.append(max((j for j in range(24) if j not in greedy), key=lambda j: f(greedy + [j])))
    assert f(order) == pytest.approx(f(greedy), rel=1e-5)
    allowed = np.ones(24, dtype=bool)
    allowed[12:16] = False  # one whole blob may not be opened
    order = facility_location_joint(x, y, 4, allowed=allowed)
    assert not np.isin(order, np.arange(12, 16)).any()


def test_without_its_own_gain_a_point_gains_only_for_the_others_it_represents():
    """``own_gain=0``: the exact greedy of the others' coverage, dense and sparse; a point far
    from the rest of its class (a mislabel the detector missed) is left for last."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(30, 2)), [[9.0, 9.0]]]).astype(np.float32)
    none, far_only = np.zeros(31), np.r_[np.ones(30), 0.0]

    def brute(sim, k):
        greedy, cur = [], np.zeros(31)
        for _ in range(k):
            gain = np.maximum(sim - cur[:, None], 0).sum(0) - np.maximum(np.diag(sim) - cur, 0)
            gain[greedy] = -np.inf
            greedy.append(int(np.argmax(gain)))
            cur = np.maximum(cur, sim[:, greedy[-1]])
        return greedy

    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    assert facility_location_greedy(x, 6, own_gain=none)[0].tolist() == brute(d.max() - d, 6)
    nbr, gsim = fl_module._graph(x, 5, 1.0)
    full = np.zeros((31, 31))
    full[np.arange(31)[:, None], nbr] = gsim
    assert facility_location_sparse(x, 6, n_neighbors=5, own_gain=none)[0].tolist() == brute(full, 6)
    assert 30 in facility_location_greedy(x, 6)[0]  # with its own gain the far point is picked
    assert 30 not in facility_location_greedy(x, 6, own_gain=far_only)[0]
    for m in (5, 30):
        assert 30 in facility_location_sparse(x, 6, n_neighbors=m)[0]
        assert 30 not in facility_location_sparse(x, 6, n_neighbors=m, own_gain=far_only)[0]
    y = np.zeros(31, dtype=int)  # per class: the weights follow each class's members
    assert 30 not in np.flatnonzero(facility_location_per_class(x, y, np.array([6]), own_gain=far_only)[0])


def _truncated_cost(x, order, m):
    """Brute force of the sparse greedy's objective: sum_i min(d(i, S), r_i), r_i the m-th distance."""
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    r = np.sort(d + np.diag(np.full(len(x), np.inf)), axis=1)[:, m - 1]
    return np.minimum(d[:, list(order)].min(1), r).sum() if len(order) else r.sum()


def test_sparse_greedy_is_the_exact_greedy_of_the_truncated_cost():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 3))
    m = 6
    order, gains = facility_location_sparse(x, 8, n_neighbors=m)
    greedy = []
    for _ in range(8):
        greedy.append(min((j for j in range(40) if j not in greedy),
                          key=lambda j: _truncated_cost(x, greedy + [j], m)))
    assert order.tolist() == greedy
    costs = [_truncated_cost(x, greedy[:t], m) for t in range(9)]
    np.testing.assert_allclose(gains, -np.diff(costs), rtol=1e-5, atol=1e-6)  # the marginal gains


def _kmedian(x, idx):
    return np.linalg.norm(x[:, None] - x[idx][None], axis=-1).min(1).sum()


@pytest.mark.parametrize("budget", [0.05, 0.3])
def test_sparse_greedy_covers_as_well_as_the_dense_greedy(budget):
    """k-median cost of the sparse set within 2 % of the dense set's (measured 0.998-1.002)."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(8, 10)) * 3
    x = (centres[rng.integers(0, 8, 400)] + rng.normal(size=(400, 10))).astype(np.float32)
    k = int(budget * len(x))
    dense, _ = facility_location_greedy(x, k)
    sparse, _ = facility_location_sparse(x, k)
    assert len(set(sparse.tolist())) == k
    assert _kmedian(x, sparse) <= 1.02 * _kmedian(x, dense)
    assert graph_neighbours(400, k) == (60 if budget == 0.05 else 10)  # 3 x n / k within [10, 64]


def test_per_class_picks_dense_or_sparse_by_class_size(monkeypatch):
    rng = np.random.default_rng(8)
    y = np.repeat([0, 1], [300, 40])
    x = rng.normal(size=(340, 4)).astype(np.float32)
    calls = []
    real_sparse, real_dense = fl_module.facility_location_sparse, fl_module.facility_location_greedy
    monkeypatch.setattr(fl_module, "facility_location_sparse",
                        lambda xx, k, **kw: calls.append(("sparse", len(xx))) or real_sparse(xx, k, **kw))
    monkeypatch.setattr(fl_module, "facility_location_greedy",
                        lambda xx, k, **kw: calls.append(("dense", len(xx))) or real_dense(xx, k, **kw))
    monkeypatch.setattr(fl_module, "DENSE_MAX_CLASS", 100)
    sel, scores = facility_location_per_class(x, y, np.array([30, 4]), max_class=50)
    assert calls == [("sparse", 300), ("dense", 40)]  # the sparse class is not subsampled to 50
    assert np.bincount(y[sel], minlength=2).tolist() == [30, 4]
    assert (scores[sel] > 1).all() and (scores[~sel] == 0).all()
    first = np.flatnonzero(sel & (y == 0))[np.argmax(scores[sel & (y == 0)])]
    assert first == real_sparse(x[y == 0], 30)[0][0]  # the highest score is the first pick
    allowed = np.ones(340, dtype=bool)
    allowed[:150] = False
    sel, _ = facility_location_per_class(x, y, np.array([30, 4]), allowed=allowed, sparse=True)
    assert not sel[:150].any() and sel.sum() == 34


def test_sparse_joint_greedy_gives_spread_classes_more_and_respects_allowed():
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=(40, 2)) * 0.1
    x1 = np.concatenate([rng.normal(size=(14, 2)) * 0.1 + c for c in ([8, 0], [0, 8], [8, 8])])
    x = np.concatenate([x0, x1]).astype(np.float32)
    y = np.array([0] * 40 + [1] * 42)
    order = facility_location_joint(x, y, 4, sparse=True, n_neighbors=12)
    assert len(set(order.tolist())) == 4
    assert np.bincount(y[order], minlength=2)[1] >= 3  # one pick per far blob of class 1
    allowed = np.ones(len(y), dtype=bool)
    allowed[40:54] = False
    order = facility_location_joint(x, y, 6, allowed=allowed, sparse=True)
    assert len(order) == 6 and not np.isin(order, np.arange(40, 54)).any()


def test_knn_shapley_matches_brute_force_shapley():
    rng = np.random.default_rng(4)
    xt = rng.normal(size=(5, 2)).astype(np.float32)
    yt = np.array([0, 1, 0, 1, 1])
    xv = rng.normal(size=(2, 2)).astype(np.float32)
    yv = np.array([0, 1])
    k = 2
    vals = knn_shapley_values(xt, yt, xv, yv, k=k)

    def utility(s, j):
        if not s:
            return 0.0
        d = np.linalg.norm(xt[list(s)] - xv[j], axis=1)
        near = np.array(list(s))[np.argsort(d, kind="stable")[:k]]
        return float((yt[near] == yv[j]).sum()) / k

    from math import factorial

    n = 5
    ref = np.zeros(n)
    for j in range(2):
        for i in range(n):
            others = [t for t in range(n) if t != i]
            for r in range(n):
                for s in itertools.combinations(others, r):
                    w = factorial(r) * factorial(n - r - 1) / factorial(n)
                    ref[i] += w * (utility(set(s) | {i}, j) - utility(set(s), j))
    np.testing.assert_allclose(vals, ref / 2, atol=1e-9)


def test_data_oob_ranks_flipped_points_low():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1], 60)
    x = (np.where(y[:, None] == 0, -2.0, 2.0) + rng.normal(size=(120, 2))).astype(np.float32)
    noisy = y.copy()
    noisy[:6] = 1  # six class-0 points labelled 1
    vals = data_oob_values(x, noisy, n_estimators=50, seed=0)
    assert vals[:6].mean() < vals[6:].mean() - 0.3


def test_task_validation():
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(DataError):
        SelectionTask(x, y[:3], x, y, n_classes=2, budget=0.5)
    with pytest.raises(ConfigError):
        SelectionTask(x, y, x, y, n_classes=2, budget=1.5)
    with pytest.raises(DataError):
        SelectionTask(x, np.array([0, 1, 2, 1]), x, y, n_classes=2, budget=0.5)
    with pytest.raises(DataError):
        SelectionTask(x, y, np.zeros((4, 3), np.float32), y, n_classes=2, budget=0.5)
    with pytest.raises(DataError):
        SelectionTask(x, y, x, y, n_classes=2, budget=0.5, flagged=np.zeros(3, bool))
    with pytest.raises(TypeError):
        get_method("random").fit("not a task")
    assert SelectionTask(x, y, x, y, n_classes=2, budget=0.01).k == 1
