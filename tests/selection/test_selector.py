"""HOST-CP selector: subset-awareness, learning signal, read-out, determinism, validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.errors import ConfigError, JobCancelled, NotFittedError
from core.selection.batch import (
    MISSING_COST,
    batch_inputs,
    lookahead_val_loss,
    nearest_existing,
    round_opened,
    solve,
)
from core.selection.config import ScaleConfig
from core.selection.layer import SelectionLayer
from core.selection.selector import HostCPConfig, HostCPSelector, SelectionModel
from core.valuation import SelectionTask, get_method

FAST = {"epochs": 1, "batch_size": 16, "n_existing": 4, "proj_dim": 8}


def _blobs(n_per=40, n_classes=3, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)) * 4
    y = np.repeat(np.arange(n_classes), n_per)
    x = (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32)
    yv = np.repeat(np.arange(n_classes), 10)
    xv = (centers[yv] + rng.normal(size=(len(yv), dim))).astype(np.float32)
    return x, y, xv, yv


def _duplicates(groups=12, copies=8, dim=5, seed=0):
    """Many exact duplicates: ``groups`` distinct points, each repeated ``copies`` times."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(groups, dim)).astype(np.float32) * 3
    yb = np.arange(groups) % 3
    x = np.repeat(base, copies, axis=0)
    y = np.repeat(yb, copies)
    return x, y, base, yb


def test_round_opens_one_copy_of_duplicates():
    # 4 exact duplicates share u evenly (1/4 each); rounding opens exactly one
    zn = np.full((4, 4), 0.25)
    u = np.full(4, 0.25)
    opened = round_opened(zn, u, np.ones(4), limit=1)
    assert opened.sum() == 1
    opened = round_opened(zn, u, np.ones(4), limit=3)
    assert opened.sum() == 1  # the others are represented by the opened copy


def test_hostcp_does_not_spend_budget_on_second_copies():
    x, y, base, yb = _duplicates()
    rng = np.random.default_rng(1)
    perm = rng.permutation(len(y))
    x, y = x[perm], y[perm]
    task = SelectionTask(x, y, base, yb, n_classes=3, budget=12 / len(y), seed=0)
    res = get_method("hostcp", **FAST, exclude_flagged=False, learn_cost=False).fit(task).result
    groups = np.unique(x[res.selected], axis=0)
    assert res.selected.sum() == 12
    assert len(groups) >= 11  # (almost) one copy per group: no budget wasted on copies
    # a per-point top-k spends the budget on copies of a few groups
    knn = get_method("knn_shapley").fit(task).result
    assert len(np.unique(x[knn.selected], axis=0)) < len(groups)


def test_lookahead_gradient_reaches_phi_and_is_not_zero():
    x, y, xv, yv = _blobs()
    cfg = HostCPConfig(**FAST)
    gen = torch.Generator().manual_seed(0)
    model = SelectionModel(x.shape[1], 3, cfg, gen).double()
    layer = SelectionLayer(16, 4)
    data = {"x": torch.tensor(x, dtype=torch.float64), "y": torch.tensor(y),
            "q": torch.zeros(len(y), dtype=torch.float64), "flagged_np": np.zeros(len(y), bool)}
    theta = [torch.zeros(x.shape[1], 3, dtype=torch.float64, requires_grad=True),
             torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    idx = np.random.default_rng(0).permutation(len(y))[:16]
    existing = np.random.default_rng(1).permutation(len(y))[:6]
    batch = batch_inputs(model, layer, data, idx, existing, 3.0, None, cfg)
    [(_, u)] = solve(layer, [batch])
    loss, _ = lookahead_val_loss(theta, batch, u, data, torch.tensor(xv, dtype=torch.float64),
                                 torch.tensor(yv), 0.5)
    loss.backward()
    assert model.proj.grad is not None and model.proj.grad.abs().sum() > 0
    assert model.label_emb.grad.abs().sum() > 0
    assert model.cost_y.grad.abs().sum() > 0


def test_learning_phi_lowers_validation_loss_against_frozen_phi():
    x, y, xv, yv = _blobs(seed=3)
    y = y.copy()
    y[::5] = (y[::5] + 1) % 3  # noisy labels: which points are opened matters for val loss
    cfg = HostCPConfig(**FAST)
    layer = SelectionLayer(16, 4)
    data = {"x": torch.tensor(x, dtype=torch.float64), "y": torch.tensor(y),
            "q": torch.zeros(len(y), dtype=torch.float64), "flagged_np": np.zeros(len(y), bool)}
    theta = [torch.zeros(x.shape[1], 3, dtype=torch.float64, requires_grad=True),
             torch.zeros(3, dtype=torch.float64, requires_grad=True)]
    idx = np.arange(0, len(y), len(y) // 16)[:16]
    xv_t, yv_t = torch.tensor(xv, dtype=torch.float64), torch.tensor(yv)

    def val_loss(model):
        batch = batch_inputs(model, layer, data, idx, np.zeros(0, int), 3.0, None, cfg)
        [(_, u)] = solve(layer, [batch])
        return lookahead_val_loss(theta, batch, u, data, xv_t, yv_t, 0.5)[0]

    model = SelectionModel(x.shape[1], 3, cfg, torch.Generator().manual_seed(0)).double()
    frozen = float(val_loss(model).detach())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(15):
        opt.zero_grad()
        loss = val_loss(model)
        loss.backward()
        opt.step()
    learned = float(val_loss(model).detach())
    assert learned < frozen - 1e-3


def test_fit_returns_exactly_k_excludes_flagged_and_is_deterministic():
    x, y, xv, yv = _blobs()
    flagged = np.zeros(len(y), bool)
    flagged[::7] = True
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.15, seed=5, flagged=flagged,
                         suspect=flagged.astype(float))
    a = get_method("hostcp", **FAST).fit(task).result
    b = get_method("hostcp", **FAST).fit(task).result
    assert a.selected.sum() == task.k
    assert not (a.selected & flagged).any()
    np.testing.assert_array_equal(a.selected, b.selected)
    np.testing.assert_allclose(a.scores, b.scores)
    assert np.isfinite(a.scores).all()
    # the chosen set ranks first, so a preview at the run's budget is the set
    top = np.argsort(-a.scores, kind="stable")[: task.k]
    assert a.selected[top].all()


def test_reports_progress_and_can_be_cancelled():
    x, y, xv, yv = _blobs()
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.1, flagged=np.zeros(len(y), bool))

    class Rec:
        def __init__(self, stop_after):
            self.events, self.stop_after = [], stop_after

        def report(self, stage, fraction, message=""):
            self.events.append((stage, fraction, message))

        def check_cancelled(self):
            if len(self.events) >= self.stop_after:
                raise JobCancelled()

    rec = Rec(10**6)
    get_method("hostcp", **FAST, learn_phi=True).fit(task, reporter=rec)
    assert any("epoch 1/2" in m for _, _, m in rec.events)  # one learning pass, then the read-out
    assert rec.events[-1][1] == pytest.approx(1.0)
    frozen = Rec(10**6)
    get_method("hostcp", **FAST).fit(task, reporter=frozen)  # phi frozen (default): the read-out pass only
    assert any("epoch 1/1 (read-out)" in m for _, _, m in frozen.events)
    assert not any("epoch 1/2" in m for _, _, m in frozen.events)
    with pytest.raises(JobCancelled):
        get_method("hostcp", **FAST).fit(task, reporter=Rec(3))


def test_config_validation_and_not_fitted():
    with pytest.raises(ConfigError):
        HostCPConfig(gamma=0.0)
    with pytest.raises(ConfigError):
        HostCPConfig(batch_size=1000)
    with pytest.raises(ConfigError):
        HostCPConfig(solver="ECOS")
    with pytest.raises(ConfigError, match="proj_dim must be positive"):
        HostCPConfig(proj_dim=0)
    with pytest.raises(ConfigError, match="ScaleConfig.learn_sample must be positive"):
        HostCPConfig(scale={"learn_sample": 0})
    for removed in ("not_a_setting", "start", "dist_power", "quality_weight", "solve_group"):
        with pytest.raises(ConfigError, match=removed):
            get_method("hostcp", **{removed: 1})
    with pytest.raises(TypeError):
        HostCPSelector(config={"epochs": 1})
    with pytest.raises(NotFittedError):
        _ = HostCPSelector().result


def test_class_quotas_return_exactly_k_and_balance_the_classes():
    x, y, xv, yv = _blobs(seed=2)
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.2, seed=0, flagged=np.zeros(len(y), bool))
    res = get_method("hostcp", **FAST, class_quotas=True).fit(task).result
    assert res.selected.sum() == task.k
    counts = np.bincount(y[res.selected], minlength=3)
    assert counts.min() >= 6  # 8 per class at 20 percent; quotas keep classes balanced


def test_pca_projection_keeps_the_encoders_distances():
    from core.selection.selector import pca_projection

    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)).astype(np.float32)
    w = pca_projection(x, 8)  # D <= p: exact, padded with zero columns
    xt = torch.as_tensor(x)
    torch.testing.assert_close(torch.cdist(xt @ w, xt @ w), torch.cdist(xt, xt), atol=3e-3, rtol=1e-4)
    x = (rng.normal(size=(200, 10)) * np.array([5, 4, 3] + [0.1] * 7)).astype(np.float32)
    w = pca_projection(x, 3)  # D > p: orthonormal axes of the three large directions
    torch.testing.assert_close(w.T @ w, torch.eye(3), atol=1e-5, rtol=0)
    xt = torch.as_tensor(x)
    ratio = torch.cdist(xt @ w, xt @ w).sum() / torch.cdist(xt, xt).sum()
    assert ratio > 0.98


@pytest.mark.parametrize("settings", [
    {"swap_passes": 0},
    {"swap_passes": 1},
    {"swap_passes": 1, "learn_phi": False, "class_quotas": False},
])
def test_every_read_out_returns_exactly_k_unflagged_and_ranks_the_set_first(settings):
    x, y, xv, yv = _blobs(seed=3)
    flagged = np.zeros(len(y), bool)
    flagged[::7] = True
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.25, seed=0, flagged=flagged)
    res = get_method("hostcp", **{**FAST, **settings}).fit(task).result
    assert res.selected.sum() == task.k
    assert not (res.selected & flagged).any()
    top = np.argsort(-res.scores, kind="stable")[: task.k]
    assert res.selected[top].all()  # previews at smaller budgets are subsets of the chosen set


def test_a_broken_detector_import_fails_the_selection_instead_of_dropping_flags(monkeypatch):
    """It used to log a warning and select without mislabel flags: a bug hidden as a setting."""
    import sys

    from core.selection.selector import _flags

    x, y, xv, yv = _blobs()
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.1, seed=0)
    monkeypatch.setitem(sys.modules, "core.mislabel", None)  # any import of it raises ImportError
    with pytest.raises(ImportError):
        _flags(task, HostCPConfig(**FAST))


def _small_problem(x, y):
    """A float64 model, a 16-point layer and the selector's data dict for ``(x, y)``."""
    cfg = HostCPConfig(**FAST)
    model = SelectionModel(x.shape[1], 3, cfg, torch.Generator().manual_seed(0)).double()
    data = {"x": torch.tensor(x, dtype=torch.float64), "y": torch.tensor(y),
            "q": torch.zeros(len(y), dtype=torch.float64), "flagged_np": np.zeros(len(y), bool)}
    return cfg, model, SelectionLayer(16, 4), data


def test_a_stacked_solve_gives_each_batch_its_own_solution_and_gradient():
    x, y, _, _ = _blobs()
    cfg, model, layer, data = _small_problem(x, y)
    perm = np.random.default_rng(0).permutation(len(y))
    batches = [batch_inputs(model, layer, data, perm[s:s + 16], perm[100:106], 3.0, None, cfg)
               for s in (0, 16, 32)]
    batches[2] = batch_inputs(model, layer, data, perm[32:42], perm[100:106], 2.0, None, cfg)  # padded
    alone = [solve(layer, [b])[0] for b in batches]
    stacked = solve(layer, batches)
    for (zn_a, u_a), (zn_s, u_s) in zip(alone, stacked, strict=True):
        torch.testing.assert_close(u_s, u_a, atol=2e-4, rtol=0)
        torch.testing.assert_close(zn_s, zn_a, atol=2e-4, rtol=0)
    assert stacked[2][1].shape == (10,)
    (stacked[1][1] * torch.arange(16.0, dtype=torch.float64)).sum().backward()
    assert model.proj.grad is not None and model.proj.grad.abs().sum() > 0


@pytest.mark.parametrize("settings", [
    {"solve_group": 4},
    {"solve_group": 3, "learn_sample": 50, "score_sample": 60, "swap_batches": 2},
])
def test_grouped_solves_and_a_learning_sample_keep_the_contract(settings):
    x, y, xv, yv = _blobs(seed=5)
    flagged = np.zeros(len(y), bool)
    flagged[::9] = True
    task = SelectionTask(x, y, xv, yv, n_classes=3, budget=0.2, seed=0, flagged=flagged)
    a = get_method("hostcp", **FAST, scale=settings).fit(task).result  # a dict, as in JSON settings
    b = get_method("hostcp", **FAST, scale=ScaleConfig(**settings)).fit(task).result
    assert a.selected.sum() == task.k
    assert not (a.selected & flagged).any()
    np.testing.assert_array_equal(a.selected, b.selected)
    assert a.info["learn_points"] == min(len(y), settings.get("learn_sample", 10**9))
    assert a.info["score_points"] == min(len(y), settings.get("score_sample", 10**9))
    assert np.isfinite(a.scores).all() and (a.scores > 0).sum() > task.k


@pytest.mark.parametrize(("settings", "message"), [
    ({"epochs": "2"}, "HostCPConfig.epochs must be an integer (int); got '2' (str)."),
    ({"epochs": 2.0}, "HostCPConfig.epochs must be an integer (int); got 2.0 (float)."),
    ({"epochs": True}, "HostCPConfig.epochs must be an integer (int); got True (bool)."),
    ({"learn_phi": 1}, "HostCPConfig.learn_phi must be true or false (bool); got 1 (int)."),
    ({"learn_phi": "false"}, "HostCPConfig.learn_phi must be true or false (bool); got 'false' (str)."),
    ({"gamma": True}, "HostCPConfig.gamma must be a number (float); got True (bool)."),
    ({"gamma": "0.1"}, "HostCPConfig.gamma must be a number (float); got '0.1' (str)."),
    ({"solver": 3}, "HostCPConfig.solver must be text (str); got 3 (int)."),
    ({"scale": 3}, "HostCPConfig.scale must be a ScaleConfig; got 3 (int)."),
    ({"scale": {"solve_group": True}}, "ScaleConfig.solve_group must be an integer (int); got True (bool)."),
    ({"scale": {"sample": 5}},
     "HostCPConfig.scale has no setting 'sample'; valid: choice_sample, learn_sample,"),
])
def test_config_fields_must_have_their_types(settings, message):
    with pytest.raises(ConfigError) as err:
        HostCPConfig(**settings)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_config_takes_an_int_for_a_float_and_numpy_numbers():
    cfg = HostCPConfig(gamma=1, lr_phi=np.float32(0.5), epochs=np.int64(3))
    assert (cfg.gamma, type(cfg.gamma)) == (1.0, float)
    assert (cfg.lr_phi, type(cfg.lr_phi)) == (0.5, float)
    assert (cfg.epochs, type(cfg.epochs)) == (3, int)


def test_config_has_at_most_15_settings_and_keeps_them_in_its_run_info():
    from dataclasses import asdict, fields

    assert len(fields(HostCPConfig)) <= 15
    cfg = HostCPConfig(epochs=1, scale={"learn_sample": 50})
    assert HostCPConfig(**asdict(cfg)) == cfg  # the stored settings build the same config


def test_read_out_distances_once_a_group_match_the_per_batch_ones():
    """nearest_existing (features once a pass, distances once a group, a batch's own points excluded)
    gives the batch problems the learning path computes batch by batch from the existing set."""
    x, y, _, _ = _blobs(n_per=60)
    cfg, model, layer, data = _small_problem(x, y)
    perm = np.random.default_rng(1).permutation(len(y))
    chosen = np.sort(perm[:40])  # the set; batches below hold some of its points, as in a swap pass
    parts = [perm[30:46], perm[46:62], perm[170:180], perm[0:16]]
    with torch.no_grad():
        feats = model.features(data["x"], data["y"])
        dists = nearest_existing(feats, parts, chosen, layer.m)
        for idx, d_near in zip(parts, dists, strict=True):
            outside = chosen[~np.isin(chosen, idx)]
            ref = batch_inputs(model, layer, data, idx, outside, 3.0, None, cfg)
            got = batch_inputs(model, layer, data, idx, chosen, 3.0, None, cfg, feats=feats, near=d_near)
            for a, b in zip(ref.params(), got.params(), strict=True):
                torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-9)
    # a batch that holds the whole set has no existing point: every Do column is the missing cost
    (lonely,) = nearest_existing(feats, [chosen[:16]], chosen[:16], layer.m)
    assert lonely.shape == (16, 0)
    got = batch_inputs(model, layer, data, chosen[:16], chosen[:16], 3.0, None, cfg, feats=feats, near=lonely)
    assert torch.all(got.do == MISSING_COST)
