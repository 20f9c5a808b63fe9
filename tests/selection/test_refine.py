"""Swap passes: the incremental nearest-chosen bookkeeping and the outside gain are exact,
and a pass keeps the size and class counts while it lowers the facility-location cost."""

from __future__ import annotations

import numpy as np
import torch

from core.progress import NullReporter
from core.selection.layer import SelectionLayer
from core.selection.readout import swap_pass as _swap_pass
from core.selection.refine import NearestChosen, cluster_batches, outside_gain
from core.selection.selector import HostCPConfig, SelectionModel


def _points(n=120, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g)


def _brute_top2(f, chosen):
    d = torch.cdist(f, f[torch.as_tensor(np.flatnonzero(chosen))])
    return torch.topk(d, 2, dim=1, largest=False).values


def test_nearest_chosen_stays_exact_through_swaps():
    f = _points()
    rng = np.random.default_rng(0)
    chosen = np.zeros(len(f), dtype=bool)
    chosen[rng.choice(len(f), 15, replace=False)] = True
    near = NearestChosen(f, chosen, chunk=32)  # several chunks
    for _ in range(6):
        on, off = np.flatnonzero(near.chosen), np.flatnonzero(~near.chosen)
        removed = rng.choice(on, 3, replace=False)
        added = rng.choice(off, 3, replace=False)
        near.update(added, removed)
        # cdist's matrix-product path leaves ~1e-3 on self-distances
        torch.testing.assert_close(near.d, _brute_top2(f, near.chosen), atol=2e-3, rtol=1e-5)
    assert near.chosen.sum() == 15


def test_rest_distance_and_outside_gain_match_brute_force():
    f = _points(60)
    chosen = np.zeros(60, dtype=bool)
    chosen[[0, 5, 9, 20, 33, 41]] = True
    near = NearestChosen(f, chosen)
    batch = np.array([0, 5, 7, 8])  # holds two chosen points: rows whose top-2 are both inside look further
    rest_ids = np.array([9, 20, 33, 41])
    expect_rest = torch.cdist(f, f[rest_ids]).min(1).values
    torch.testing.assert_close(near.rest_distance(batch), expect_rest)
    w = torch.rand(60, generator=torch.Generator().manual_seed(1))
    gain = outside_gain(near, batch, w, cap=1e9)
    out = np.setdiff1d(np.arange(60), batch)
    brute = [
        float(((expect_rest[out] - torch.cdist(f[out], f[[j]])[:, 0]).clamp_min(0) * w[out]).sum())
        for j in batch
    ]
    np.testing.assert_allclose(gain.numpy(), brute, rtol=1e-5)


def test_cluster_batches_cover_every_chosen_point_once():
    f = _points(200)
    chosen = np.zeros(200, dtype=bool)
    chosen[::10] = True
    near = NearestChosen(f, chosen)
    batches = cluster_batches(near, 16, np.random.default_rng(0))
    flat = np.concatenate(batches)
    assert all(len(b) <= 16 for b in batches)
    assert len(flat) == len(set(flat.tolist()))  # no point twice
    assert set(flat[chosen[flat]].tolist()) == set(np.flatnonzero(chosen).tolist())


def test_swap_pass_keeps_class_counts_and_lowers_the_cost_of_a_bad_start():
    # three tight blobs per class; the start set takes the point farthest from its blob centre
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 2)) * 10
    blob = np.repeat(np.arange(6), 20)
    x = (centres[blob] + rng.normal(size=(120, 2))).astype(np.float32)
    y = blob % 2
    chosen = np.zeros(120, dtype=bool)
    for b in range(6):
        m = np.flatnonzero(blob == b)
        chosen[m[np.argmax(np.linalg.norm(x[m] - centres[b], axis=1))]] = True
    cfg = HostCPConfig(batch_size=16, n_existing=4, proj_dim=2, use_labels=False, quality_weight=False,
                       exclude_flagged=False, learn_cost=False)
    model = SelectionModel(2, 2, cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.proj.copy_(torch.eye(2))  # distances in x itself
    data = {"x": torch.as_tensor(x), "y": torch.as_tensor(y), "q": torch.zeros(120),
            "flagged_np": np.zeros(120, dtype=bool)}
    layer = SelectionLayer(16, 4, gamma=cfg.gamma, n_classes=2)

    def cost(sel):
        centres_now = data["x"][torch.as_tensor(np.flatnonzero(sel))]
        return float(torch.cdist(data["x"], centres_now).min(1).values.sum())

    before = cost(chosen)
    after_set, changed = _swap_pass(model, layer, data, chosen, y, cfg, np.random.default_rng(0),
                                    NullReporter())
    assert changed > 0
    assert after_set.sum() == 6
    np.testing.assert_array_equal(np.bincount(y[after_set], minlength=2), np.bincount(y[chosen], minlength=2))
    assert cost(after_set) < 0.8 * before
