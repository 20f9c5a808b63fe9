"""The target check (core.selection.target) and the read-out that represents the target."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.selection.config import HostCPConfig
from core.selection.target import detect_shift, target_shares
from core.valuation import SelectionTask, get_method
from core.valuation.base import stratified_quotas
from core.valuation.facility_location import (
    facility_location_greedy,
    facility_location_per_class,
    facility_location_sparse,
)

FAST = {"epochs": 1, "batch_size": 16, "n_existing": 4, "proj_dim": 8}


def _blobs(
    centres: np.ndarray, n_per: np.ndarray, seed: int, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``n_per[j]`` points around ``centres[j]``, labelled ``classes[j]``."""
    rng = np.random.default_rng(seed)
    pairs = zip(centres, n_per, strict=True)
    x = np.concatenate([c + rng.normal(size=(k, centres.shape[1])) for c, k in pairs])
    y = np.concatenate([np.full(k, c) for c, k in zip(classes, n_per, strict=True)])
    return x.astype(np.float32), y.astype(np.int64)


# two classes, two styles each (blobs 0, 1 of class 0; blobs 2, 3 of class 1), 8-d
CENTRES = np.array([[6, 0, 0, 0, 0, 0, 0, 0], [0, 6, 0, 0, 0, 0, 0, 0], [-6, 0, 0, 0, 0, 0, 0, 0],
                    [0, -6, 0, 0, 0, 0, 0, 0]], dtype=float)
CLASSES = np.array([0, 0, 1, 1])


def test_a_validation_set_drawn_like_the_pool_is_not_a_shift():
    x, y = _blobs(CENTRES, np.array([150, 150, 150, 150]), 0, CLASSES)
    xv, yv = _blobs(CENTRES, np.array([40, 40, 40, 40]), 1, CLASSES)
    found = [detect_shift(x, y, xv, yv, 2, seed=s) for s in range(3)]
    assert not any(f.detected for f in found)
    assert all(f.weights is None and f.shares is None for f in found)
    assert all(f.p_covariate > 0.05 and f.p_prior > 0.05 for f in found)
    assert "no shift" in found[0].note


def test_off_target_styles_get_low_weights_and_are_reported():
    # the pool has all four styles; the target only styles 0 and 2 (one of each class)
    x, y = _blobs(CENTRES, np.array([150, 150, 150, 150]), 0, CLASSES)
    xv, yv = _blobs(CENTRES, np.array([60, 0, 60, 0]), 1, CLASSES)
    shift = detect_shift(x, y, xv, yv, 2, seed=0)
    assert shift.detected and shift.p_covariate < 0.01 and shift.auroc > 0.7
    on = np.isin(np.repeat(np.arange(4), 150), [0, 2])
    assert shift.weights.mean() == pytest.approx(1.0)
    assert shift.weights[on].mean() > 5 * shift.weights[~on].mean()
    assert "shift detected" in shift.note and shift.info()["shift_detected"] is True


def test_a_skewed_class_prior_sets_the_shares_from_the_validation_set():
    x, y = _blobs(CENTRES, np.array([270, 270, 30, 30]), 0, CLASSES)  # 90 % class 0
    xv, yv = _blobs(CENTRES, np.array([40, 40, 40, 40]), 1, CLASSES)  # balanced
    shift = detect_shift(x, y, xv, yv, 2, seed=0)
    assert shift.detected and shift.p_prior < 1e-6
    np.testing.assert_allclose(shift.shares, [0.5, 0.5], atol=0.01)  # 160 validation points decide
    q = stratified_quotas(y, 40, 2, shares=shift.shares)
    np.testing.assert_array_equal(q, [20, 20])
    np.testing.assert_array_equal(stratified_quotas(y, 40, 2), [36, 4])  # without: by class sizes
    forced = detect_shift(x, y, x, y, 2, seed=0, force=True)  # target="on": weights even without a shift
    assert not forced.detected and forced.weights is not None


def test_weighted_facility_location_matches_the_unweighted_one_at_unit_weights_and_follows_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4)).astype(np.float32)
    for greedy in (facility_location_greedy, facility_location_sparse):
        plain, _ = greedy(x, 10)
        ones, _ = greedy(x, 10, weights=np.ones(120))
        np.testing.assert_array_equal(plain, ones)
    x, y = _blobs(CENTRES[:2], np.array([60, 60]), 0, np.array([0, 0]))
    w = np.r_[np.zeros(60), np.ones(60)]  # only the second blob counts
    for sparse in (False, True):
        chosen, _ = facility_location_per_class(x, y, np.array([5]), weights=w, sparse=sparse)
        assert chosen[60:].sum() == 5, sparse  # every pick serves the points that count


def _shifted_task(seed: int = 0, target_blobs=(0, 2)) -> tuple[SelectionTask, np.ndarray]:
    x, y = _blobs(CENTRES, np.array([100, 100, 100, 100]), seed, CLASSES)
    n_val = np.array([40 if j in target_blobs else 0 for j in range(4)])
    xv, yv = _blobs(CENTRES, n_val, seed + 1, CLASSES)
    on = np.isin(np.repeat(np.arange(4), 100), target_blobs)
    task = SelectionTask(x, y, xv, yv, n_classes=2, budget=0.05, seed=seed, flagged=np.zeros(len(y), bool))
    return task, on


def test_hostcp_spends_its_budget_on_the_target_when_the_pool_is_shifted():
    task, on = _shifted_task()
    auto = get_method("hostcp", **FAST).fit(task).result
    off = get_method("hostcp", **FAST, target="off").fit(task).result
    assert auto.info["shift_detected"] is True and "shift detected" in auto.info["target"]
    assert off.info["shift_detected"] is False and off.info["shift_auroc"] is None
    assert auto.selected.sum() == off.selected.sum() == task.k
    # the pool is half off-target: represented alike, about half the set lands there
    assert (auto.selected & on).sum() >= 0.8 * task.k > (off.selected & on).sum()


def test_without_a_shift_the_run_is_the_one_with_the_check_off():
    x, y = _blobs(CENTRES, np.array([100, 100, 100, 100]), 3, CLASSES)
    xv, yv = _blobs(CENTRES, np.array([25, 25, 25, 25]), 4, CLASSES)
    task = SelectionTask(x, y, xv, yv, n_classes=2, budget=0.1, seed=0)
    auto = get_method("hostcp", **FAST).fit(task).result
    off = get_method("hostcp", **FAST, target="off").fit(task).result
    assert auto.info["shift_detected"] is False and auto.info["shift_auroc"] is not None
    np.testing.assert_array_equal(auto.selected, off.selected)
    np.testing.assert_array_equal(auto.scores, off.scores)


def test_target_setting_is_checked():
    with pytest.raises(ConfigError, match="target must be one of"):
        HostCPConfig(target="yes")
    with pytest.raises(ConfigError, match="text"):
        HostCPConfig(target=True)


def test_above_the_reference_size_the_check_samples_and_still_weighs_every_point(monkeypatch):
    import core.selection.target as target

    monkeypatch.setattr(target, "REFERENCE", 150)  # 600 pool points sampled (120 validation ones fit)
    x, y = _blobs(CENTRES, np.array([150, 150, 150, 150]), 0, CLASSES)
    xv, yv = _blobs(CENTRES, np.array([60, 0, 60, 0]), 1, CLASSES)
    shift = detect_shift(x, y, xv, yv, 2, seed=0)
    assert shift.detected and shift.weights.shape == (600,)
    on = np.isin(np.repeat(np.arange(4), 150), [0, 2])
    assert shift.weights[on].mean() > 5 * shift.weights[~on].mean()
    xv, yv = _blobs(CENTRES, np.array([40, 40, 40, 40]), 1, CLASSES)
    assert not detect_shift(x, y, xv, yv, 2, seed=0).detected


def test_forced_weights_without_a_detected_shift_say_so():
    # target="on" weighs the pool even when no test fires; the note must not say "represents the pool"
    x, y = _blobs(CENTRES, np.array([150, 150, 150, 150]), 0, CLASSES)
    xv, yv = _blobs(CENTRES, np.array([40, 40, 40, 40]), 1, CLASSES)
    forced = detect_shift(x, y, xv, yv, 2, seed=0, force=True)
    assert not forced.detected and forced.weights is not None
    assert forced.note.startswith("target=on (no shift detected)")
    assert "represents the validation set" in forced.note


def test_a_class_a_small_validation_set_misses_keeps_part_of_its_quota():
    pool = np.full(10, 300.0)  # ten classes alike in the pool
    small = np.r_[np.full(9, 20 / 9), 0.0]  # 20 validation points, none of class 9 (a skewed prior)
    shares = target_shares(small, pool)
    assert shares.sum() == pytest.approx(1.0)
    assert shares[9] == pytest.approx(0.1 / 3)  # a third of its pool share: 10 pseudo-counts against 20
    quotas = stratified_quotas(np.repeat(np.arange(10), 300), 100, 10, shares=shares)
    assert quotas[9] == 3 and quotas.sum() == 100  # the validation shares alone gave it 0
    assert stratified_quotas(np.repeat(np.arange(10), 300), 100, 10, shares=small / 20)[9] == 0
    large = np.r_[np.full(9, 2000 / 9), 0.0]  # a large validation set without class 9 decides alone
    assert target_shares(large, pool)[9] < 0.001


def test_validation_classes_the_pool_lacks_are_a_prior_shift_even_with_one_pool_class():
    x, y = _blobs(CENTRES[:2], np.array([150, 150]), 0, CLASSES[:2])  # the pool holds class 0 only
    xv, yv = _blobs(CENTRES[1:3], np.array([30, 30]), 1, CLASSES[1:3])  # the target has class 1 too
    shift = detect_shift(x, y, xv, yv, 2, seed=0)
    assert shift.p_prior == 0.0 and shift.detected


def test_the_prior_test_keeps_its_false_alarm_rate_on_small_validation_sets():
    from core.selection.target import _prior_test

    # 10 classes, imbalanced pool prior, validation sets of 20 drawn from that very prior (seeded):
    # the chi-square approximation false-alarms in 1.8 % of these draws at alpha 1 %, this test 1.1 %
    pool = np.round(np.linspace(1.0, 0.08, 10) * 1000)
    rng = np.random.default_rng(0)
    alarms = [_prior_test(rng.multinomial(20, pool / pool.sum()).astype(float), pool, seed=t) < 0.01
              for t in range(1000)]
    assert np.mean(alarms) <= 0.014
    # and it still sees a real shift of a small set: 20 points all of the rarest class
    skewed = np.zeros(10)
    skewed[-1] = 20
    assert _prior_test(skewed, pool, seed=0) < 0.01
    # large expected counts: the chi-square p-value itself
    from scipy.stats import chisquare

    big = rng.multinomial(5000, pool / pool.sum()).astype(float)
    assert _prior_test(big, pool, seed=0) == pytest.approx(chisquare(big, pool / pool.sum() * 5000).pvalue)


def test_the_validation_half_survives_the_clip_when_the_pool_is_many_times_the_validation_set():
    from core.selection.target import MAX_WEIGHT, VAL_SHARE, _attach

    # 4,000 pool points against 20 validation points of one class: on its nearest pool point,
    # each one's mass (200 pool units) would be clipped to a tenth of what it should hold
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 4)).astype(np.float32)
    y = np.zeros(4000, dtype=np.int64)
    xv = rng.normal(size=(20, 4)).astype(np.float32)
    ratio = np.ones(4000)
    w = _attach(ratio, x, y, xv, np.zeros(20, dtype=np.int64), 1, np.ones(4000, dtype=bool))
    w = np.minimum(w / w.mean(), MAX_WEIGHT)
    w = w / w.mean()
    held = (w - ratio / ratio.sum() * w.sum())[w > 1.5].sum() / w.sum()  # what the validation points hold
    assert held == pytest.approx(VAL_SHARE, abs=0.05)
    assert w.max() <= 1.1 * MAX_WEIGHT  # shared mass overlaps a little; renormalised after the clip


def test_a_shift_in_the_class_prior_alone_sets_the_quotas_but_not_the_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)  # both classes drawn alike: x says nothing of y
    y = np.r_[np.zeros(300), np.ones(300)].astype(np.int64)
    xv = rng.normal(size=(100, 8)).astype(np.float32)
    yv = np.r_[np.zeros(90), np.ones(10)].astype(np.int64)  # the target: 90 % class 0
    shift = detect_shift(x, y, xv, yv, 2, seed=0)
    assert shift.detected and shift.p_prior < 1e-6 and shift.p_covariate >= 0.01
    assert shift.weights is None and shift.shares[0] > 0.85  # the ratios were noise the test saw as such
    assert "class prior only" in shift.note and "points count alike" in shift.note
    forced = detect_shift(x, y, xv, yv, 2, seed=0, force=True)  # target="on" still weighs the points
    assert forced.weights is not None
