"""Swap passes: the incremental nearest-chosen bookkeeping and the outside gain are exact,
and a pass keeps the size and class counts while it lowers the facility-location cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import core.selection.refine as refine_module
from core.progress import NullReporter
from core.selection.layer import SelectionLayer
from core.selection.readout import swap_pass as _swap_pass
from core.selection.refine import NearestChosen, outside_gain
from core.selection.selector import HostCPConfig, SelectionModel
from core.selection.swap_batches import cluster_batches


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
    cfg = HostCPConfig(batch_size=16, n_existing=4, proj_dim=2, exclude_flagged=False,
                       learn_cost=False)
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


# --- the graph path (large N) against the dense one ----------------------------------------------


@pytest.fixture
def one_thread():
    """Torch at one thread, as HOST-CP runs (float64 cdist at 2 threads on a busy machine: 20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _medium(n=1200, frac=0.08, seed=0):
    """Clustered float64 points (exact distances on both paths) and a random start set."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, 6, generator=g, dtype=torch.float64) * 3
    lab = torch.randint(0, 12, (n,), generator=g)
    f = centres[lab] + torch.randn(n, 6, generator=g, dtype=torch.float64)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).choice(n, int(frac * n), replace=False)] = True
    return f, chosen


@pytest.mark.parametrize(("n_neighbors", "ivf"), [
    (None, False),
    (4, False),  # many poorly covered rows take the direct check
    (None, True),  # an IVF-SQ8 graph: lists ranked on 8-bit codes, slightly off; checked rows cover it
])
def test_graph_path_matches_the_dense_path_through_swaps(n_neighbors, ivf, one_thread, monkeypatch):
    if ivf:
        monkeypatch.setattr(refine_module, "GRAPH_EXACT_MAX_PAIRS", 0)
    f, chosen = _medium()
    dense = NearestChosen(f, chosen, graph=False)
    graph = NearestChosen(f, chosen, graph=True, n_neighbors=n_neighbors)
    assert graph.uses_graph and not dense.uses_graph and graph.graph_exact == (not ivf)
    if n_neighbors == 4:
        assert graph._poor.float().mean() > 0.3  # the direct check is exercised
    w = torch.rand(len(f), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rng = np.random.default_rng(0)
    for step in range(8):
        b_dense = cluster_batches(dense, 16, np.random.default_rng(step))
        b_graph = cluster_batches(graph, 16, np.random.default_rng(step))
        assert len(b_dense) == len(b_graph)
        assert all(np.array_equal(a, b) for a, b in zip(b_dense, b_graph, strict=True))
        idx = b_dense[int(rng.integers(len(b_dense)))]
        # cdist's matrix-product path leaves ~2e-7 on float64 self-distances; the graph path has 0
        torch.testing.assert_close(graph.rest_distance(idx), dense.rest_distance(idx), atol=1e-6, rtol=1e-9)
        for cap in (1e9, 2.0):
            torch.testing.assert_close(outside_gain(graph, idx, w, cap, unit=0.8),
                                       outside_gain(dense, idx, w, cap, unit=0.8),
                                       atol=1e-5, rtol=1e-7)
        was = dense.chosen[idx]
        removed = idx[was][: max(1, int(was.sum()) // 2)]
        added = idx[~was][: len(removed)]
        dense.update(added, removed)
        graph.update(added, removed)
        np.testing.assert_array_equal(graph.chosen, dense.chosen)
        torch.testing.assert_close(graph.d, dense.d, atol=1e-6, rtol=1e-9)
        np.testing.assert_array_equal(graph.i.numpy(), dense.i.numpy())
    torch.testing.assert_close(graph.d, _brute_top2(f, graph.chosen), atol=1e-6, rtol=1e-9)
    listed = graph.nbr.numpy()
    in_list = [(listed == graph.i[:, t:t + 1].numpy()).any(1) for t in (0, 1)]
    poor = ~(in_list[0] & in_list[1])
    d2, radius = graph.d[:, 1].numpy(), graph.radius.numpy()
    assert (d2[~poor] <= radius[~poor]).all()
    if not ivf:  # on an exact graph a top-2 point outside the list is at least as far as the radius
        assert (d2[poor] >= radius[poor]).all()
    np.testing.assert_array_equal(graph._poor.numpy(), poor)  # the index list stays in step
    assert sorted(graph._poor_idx.tolist()) == np.flatnonzero(poor).tolist()


def test_graph_path_reuses_a_given_graph_and_handles_a_set_of_one(one_thread):
    f, _ = _medium(300)
    chosen = np.zeros(300, dtype=bool)
    chosen[5] = True
    first = NearestChosen(f, chosen, graph=True)
    again = NearestChosen(f, chosen, graph=True, knn_graph=first.knn_graph)
    assert again.knn_graph is not None and torch.equal(again.d, first.d)
    assert torch.isinf(first.d[:, 1]).all() and (first.i[:, 0] == 5).all()
    rest = first.rest_distance(np.array([5, 6]))
    assert torch.isinf(rest).all()  # nothing chosen outside the batch
    gain = outside_gain(first, np.array([5, 6]), torch.ones(300, dtype=f.dtype), cap=3.0)
    dense = NearestChosen(f, chosen, graph=False)
    expect = outside_gain(dense, np.array([5, 6]), torch.ones(300, dtype=f.dtype), cap=3.0)
    torch.testing.assert_close(gain, expect, atol=1e-5, rtol=1e-7)


def test_own_gain_is_dropped_for_the_top_suspects_in_proportion_to_the_flagged_share():
    from core.selection.readout import OWN_GAIN_SHARE, own_gain_weights

    rng = np.random.default_rng(0)
    suspect = rng.random(1000)
    allowed = np.ones(1000, dtype=bool)
    assert own_gain_weights(suspect, allowed) is None  # nothing flagged: the plain greedy
    assert own_gain_weights(None, allowed) is None
    allowed[:4] = False  # 4 flagged of 1000: under one point's worth
    assert own_gain_weights(suspect, allowed) is None
    allowed[:4] = True
    allowed[np.argsort(suspect)[-300:]] = False  # 30 % flagged
    w = own_gain_weights(suspect, allowed)
    dropped = np.flatnonzero(w == 0)
    assert allowed[dropped].all()  # only candidates; the flagged are not opened anyway
    assert len(dropped) == pytest.approx(OWN_GAIN_SHARE * 0.3 * 700, abs=2)
    assert suspect[dropped].min() > suspect[allowed & (w == 1)].max()  # the most suspect of them
