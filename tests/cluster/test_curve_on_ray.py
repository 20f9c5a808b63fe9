"""Value curves on a real Ray cluster: the same table as in this process, Cancel, a killed worker."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from core.cluster import LocalExecutor
from core.errors import JobCancelled
from core.evaluate import value_curve
from tests.cluster.faults import CancelAfter, kill_one_worker_during, no_task_left_running


def _mixture(n: int, seed: int, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(centers), n)
    flip = rng.random(n) < 0.1
    return (centers[y] + rng.normal(0, 1.5, (n, centers.shape[1]))).astype(np.float32), np.where(
        flip, (y + 1) % len(centers), y)


@pytest.fixture(scope="module")
def splits():
    centers = np.random.default_rng(42).normal(0, 2.5, (4, 8))
    xt, yt = _mixture(600, 1, centers)
    xv, yv = _mixture(120, 2, centers)
    xs, ys = _mixture(300, 3, centers)
    return xt, yt, xv, yv, xs, ys


def _curve(splits, executor=None, *, methods=("random", "hostcp", "kcenter"), budgets=(0.1, 0.3), seeds=2,
           reporter=None) -> pd.DataFrame:
    xt, yt, xv, yv, xs, ys = splits
    return value_curve(xt, yt, xv, yv, xs, ys, n_classes=4, budgets=list(budgets), methods=list(methods),
                       seeds=seeds, executor=executor, reporter=reporter)


@pytest.fixture(scope="module")
def in_process(splits) -> pd.DataFrame:
    return _curve(splits)


def test_a_curve_on_ray_is_the_curve_in_this_process(splits, in_process, ray_executor):
    on_ray = _curve(splits, ray_executor)
    pd.testing.assert_frame_equal(on_ray, in_process)
    assert in_process["accuracy"].max() > 0.5  # a real curve: the evaluator learnt something
    assert _curve(splits, LocalExecutor()).equals(in_process)


def test_cancel_stops_the_outstanding_tasks(splits, ray_executor):
    reporter = CancelAfter(1)
    t0 = time.monotonic()
    with pytest.raises(JobCancelled):
        _curve(splits, ray_executor, methods=("hostcp",), budgets=(0.1, 0.2, 0.3), seeds=3, reporter=reporter)
    assert reporter.reports < 12  # stopped well before the 12 pieces were done
    assert no_task_left_running(), "cancelled tasks still running"
    assert time.monotonic() - t0 < 60


def test_a_killed_worker_is_retried_and_the_curve_is_unchanged(splits, in_process, ray_executor):
    table, killed = kill_one_worker_during(lambda: _curve(splits, ray_executor))
    assert killed > 0
    pd.testing.assert_frame_equal(table, in_process)
