"""The online passes in shards and rounds (core.selection.online), without a cluster.

A pickling executor stands in for Ray: every round's inputs and outputs go through
pickle, as they do between a Ray driver and its workers, so what a shard forgets to
carry from round to round shows up as a different subset.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from core.cluster import LocalExecutor
from core.errors import ConfigError
from core.selection import HostCPConfig, HostCPSelector
from core.selection.online import plan_shards
from core.valuation import SelectionTask


class PicklingExecutor(LocalExecutor):
    """The pieces here, one after another, each through pickle both ways (as on Ray)."""

    def __init__(self) -> None:
        self.rounds = 0

    def map(self, fn, items, *, shared=None, **_):
        self.rounds += 1
        again = lambda v: pickle.loads(pickle.dumps(v))  # noqa: E731
        return [again(fn(again(shared), again(item))) for item in items]


@pytest.fixture(scope="module")
def task() -> SelectionTask:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, (4, 12))
    y = rng.integers(0, 4, 700)
    x = (centers[y] + rng.normal(0, 1, (700, 12))).astype(np.float32)
    yv = rng.integers(0, 4, 150)
    xv = (centers[yv] + rng.normal(0, 1, (150, 12))).astype(np.float32)
    flip = rng.random(700) < 0.1
    return SelectionTask(x_train=x, y_train=np.where(flip, (y + 1) % 4, y), x_val=xv, y_val=yv, n_classes=4,
                         budget=0.1, seed=5, flagged=flip & (rng.random(700) < 0.8), suspect=flip * 0.8 + 0.1)


CFG = HostCPConfig(epochs=1, swap_passes=1, learn_phi=True, scale={"swap_batches": 20})


def _fit(task, selector):
    return selector.fit(task).result


def test_one_shard_in_many_rounds_is_the_run_in_this_process(task):
    here = _fit(task, HostCPSelector(CFG))
    executor = PicklingExecutor()
    rounds = _fit(task, HostCPSelector(CFG).distribute(executor, shards=1, exchange_every=1))
    assert executor.rounds == 6  # two passes of three solver calls, one call a round
    np.testing.assert_array_equal(rounds.selected, here.selected)
    np.testing.assert_array_equal(rounds.scores, here.scores)
    assert rounds.info["val_loss_last"] == here.info["val_loss_last"]


def test_two_shards_give_the_same_subset_wherever_their_rounds_run(task):
    a = _fit(task, HostCPSelector(CFG).distribute(PicklingExecutor(), shards=2, exchange_every=3))
    b = _fit(task, HostCPSelector(CFG).distribute(LocalExecutor(), shards=2, exchange_every=3))
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.selected.sum() == task.k and a.info["shards"] == 2


def test_shards_share_the_budget_and_the_classes():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 1000)
    allowed = rng.random(1000) > 0.1
    order = rng.permutation(1000)
    shards = plan_shards(order, 100, y, allowed, 3, rng, 3, learning=False)
    assert [len(s.order) for s in shards] == [334, 333, 333]
    np.testing.assert_array_equal(np.concatenate([s.order for s in shards]), order)  # slices of the order
    assert abs(sum(s.k for s in shards) - 100) <= 1
    for s in shards:  # each shard's quotas are its own slice's share of its budget
        assert s.quota_left.sum() == pytest.approx(s.k, abs=1)
        assert s.left.sum() == allowed[s.order].sum()


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_shards_must_be_a_positive_integer(bad):
    with pytest.raises(ConfigError, match="shards"):
        HostCPSelector(CFG).distribute(LocalExecutor(), shards=bad)
