"""The read-out's choice on the validation set: the winner, ties, samples, k-center, the run's info."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.selection import readout_choice
from core.selection.config import ScaleConfig
from core.selection.readout_choice import CHOICE_MIN_VAL, CHOICE_SEED_OFFSET, choose_readout, kcenter_allowed
from core.valuation import SelectionTask, get_method

FAST = {"epochs": 1, "batch_size": 16, "n_existing": 4, "proj_dim": 8}


def _task(n=200, n_val=CHOICE_MIN_VAL, seed=0, budget=0.2):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, 5)) * 4
    y, yv = np.arange(n) % 3, np.arange(n_val) % 3
    x = (centers[y] + rng.normal(size=(n, 5))).astype(np.float32)
    xv = (centers[yv] + rng.normal(size=(n_val, 5))).astype(np.float32)
    return SelectionTask(x, y, xv, yv, n_classes=3, budget=budget, seed=seed)


def _masks(n, *rows):
    out = []
    for r in rows:
        m = np.zeros(n, dtype=bool)
        m[list(r)] = True
        out.append(m)
    return out


def test_the_candidate_whose_model_scores_best_on_validation_is_kept():
    task = _task()
    a, b, c = _masks(task.n, range(0, 10), range(10, 20), range(20, 30))
    score = {0: 0.5, 10: 0.9, 20: 0.7}  # the candidate's first row says which it is

    def value(x, y, xv, yv, **kw):
        return score[int(np.flatnonzero((task.x_train == x[0]).all(1))[0])]

    choice = choose_readout({"a": a, "b": b, "c": c}, task, sample=100, value=value)
    assert choice.name == "b"
    assert choice.scores == {"a": 0.5, "b": 0.9, "c": 0.7}
    assert choice.info()["readout"] == "b"


def test_a_tie_keeps_the_earlier_candidate_and_a_small_validation_set_keeps_the_first_unscored():
    task = _task()
    a, b = _masks(task.n, range(0, 10), range(10, 20))
    assert choose_readout({"a": a, "b": b}, task, sample=100, value=lambda *a, **k: 0.8).name == "a"
    assert choose_readout({"b": b, "a": a}, task, sample=100, value=lambda *a, **k: 0.8).name == "b"
    small = _task(n_val=CHOICE_MIN_VAL - 1)

    def never(*a, **k):
        raise AssertionError("a validation set this small must not be scored")

    choice = choose_readout({"a": a, "b": b}, small, sample=100, value=never)
    assert choice.name == "a" and choice.scores == {}
    assert str(CHOICE_MIN_VAL) in choice.reason


def test_a_large_candidate_is_judged_on_a_seeded_sample_of_its_own_rows():
    task = _task(n=400)
    big, = _masks(task.n, range(0, 300))
    seen = []

    def value(x, y, xv, yv, **kw):
        seen.append(x.copy())
        seeds.append(kw["seed"])
        return 0.5

    seeds = []

    choose_readout({"big": big}, task, sample=40, value=value)
    choose_readout({"big": big}, task, sample=40, value=value)
    assert len(seen[0]) == 40
    rows = {tuple(r) for r in task.x_train[:300]}
    assert all(tuple(r) in rows for r in seen[0])  # only the candidate's own points
    np.testing.assert_array_equal(seen[0], seen[1])  # the same sample for the same seed
    assert seeds == [task.seed + CHOICE_SEED_OFFSET] * 2  # a model of its own, not the run seed's


def test_kcenter_among_the_allowed_points_leaves_the_flagged_out_and_ranks_picks_in_order():
    task = _task()
    allowed = np.ones(task.n, dtype=bool)
    far = np.argmax(np.linalg.norm(task.x_train - task.x_train.mean(0), axis=1))
    allowed[far] = False  # the farthest point is what k-center would want most
    chosen, rank = kcenter_allowed(task.x_train, allowed, 30, seed=0)
    assert chosen.sum() == 30 and not chosen[far]
    assert rank[chosen].max() == 1.0 and (rank[~chosen] == 0).all()
    assert len(np.unique(rank[chosen])) == 30
    # too few allowed points: every allowed one, then flagged ones fill the budget
    few = np.zeros(task.n, dtype=bool)
    few[:10] = True
    chosen, _ = kcenter_allowed(task.x_train, few, 30, seed=0)
    assert chosen.sum() == 30 and chosen[:10].all()


def test_kcenter_is_left_out_where_points_x_picks_is_too_much_work(monkeypatch):
    task = _task(n=240, n_val=90)
    monkeypatch.setattr(readout_choice, "KCENTER_MAX_WORK", 240 * task.k * 5 - 1)  # 5-d points
    assert kcenter_allowed(task.x_train, np.ones(task.n, dtype=bool), task.k, seed=0) is None
    res = get_method("hostcp", **FAST).fit(task).result
    assert "k-center" not in res.info["readout_val_accuracy"]
    assert "k-center left out (240 points x 48 picks x 5 dimensions: too slow)" in res.info["readout_reason"]
    assert res.selected.sum() == task.k


def test_a_hostcp_run_says_which_read_out_it_kept_and_choice_sample_0_keeps_the_swap_passes_set():
    task = _task(n=240, n_val=90)
    res = get_method("hostcp", **FAST).fit(task).result
    assert res.info["readout"] in {"swap passes", "greedy start", "k-center"}
    assert set(res.info["readout_val_accuracy"]) >= {"swap passes", "k-center"}
    best = max(res.info["readout_val_accuracy"].values())
    assert res.info["readout_val_accuracy"][res.info["readout"]] == best
    assert res.selected.sum() == task.k
    off = get_method("hostcp", **FAST, scale=ScaleConfig(choice_sample=0)).fit(task).result
    assert off.info["readout"] == "swap passes" and off.info["readout_val_accuracy"] == {}
    if res.info["readout"] == "swap passes":
        np.testing.assert_array_equal(res.selected, off.selected)


def test_choice_sample_below_zero_is_refused():
    assert ScaleConfig(choice_sample=0).choice_sample == 0
    with pytest.raises(ConfigError, match="choice_sample must be 0 or more"):
        ScaleConfig(choice_sample=-1)


def test_a_kept_kcenter_set_holds_k_unflagged_points_and_ranks_them_first(monkeypatch):
    import core.evaluate

    task = _task(n=240, n_val=90)
    flagged = np.zeros(task.n, dtype=bool)
    flagged[::10] = True
    task = SelectionTask(task.x_train, task.y_train, task.x_val, task.y_val, n_classes=3, budget=0.2,
                         seed=0, flagged=flagged, suspect=flagged.astype(float))
    spread = {}

    def value(x, y, xv, yv, **kw):  # k-center's set is the most spread out: let it win
        key = float(np.linalg.norm(x - x.mean(0), axis=1).mean())
        spread[key] = len(x)
        return key

    monkeypatch.setattr(core.evaluate, "subset_value", value)
    res = get_method("hostcp", **FAST).fit(task).result
    assert res.info["readout"] == "k-center", res.info["readout_val_accuracy"]
    sel = res.selected
    assert sel.sum() == task.k and not (sel & flagged).any()
    assert res.scores[sel].min() > res.scores[~sel].max()  # the chosen set ranks first
    assert set(spread.values()) == {task.k}  # every candidate judged on all of its k points


def test_kcenter_is_left_out_where_the_target_sets_class_quotas():
    task = _task(n=240, n_val=90)
    res = get_method("hostcp", **FAST, target="on").fit(task).result
    assert "k-center" not in res.info["readout_val_accuracy"]
    assert "the target sets the class quotas" in res.info["readout_reason"]
    small_task = _task(n=240, n_val=CHOICE_MIN_VAL - 2)
    small = get_method("hostcp", **FAST).fit(small_task).result
    assert small.info["readout_val_accuracy"] == {} and small.selected.sum() == small_task.k


def test_kcenter_never_picks_a_point_twice_among_exact_duplicates():
    from core.valuation.kcenter import kcenter_greedy

    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 distinct rows, 4 copies each
    for seed in range(5):
        order = kcenter_greedy(x, 8, seed=seed)
        assert len(order) == 8 and len(set(order.tolist())) == 8  # the first pick came back before
