"""HOST-CP's read-out: the set at the budget, from greedy facility location, refined.

The online set alone covered worse than offline greedy (each online batch sees 32
points and 8 existing ones; tuning folds: 2-6 points behind it at every budget),
so the read-out starts from per-class greedy facility location in the learned f_phi
space among the unflagged points (class quotas by size: allocating them by coverage
was + on digits and - on the mixture, README "How the read-out was chosen"); swap
passes (:mod:`core.selection.refine`) then let the convex layer re-decide each
cluster against the rest of the set. Of that set, the greedy start and greedy k-center,
the validation set keeps one (:mod:`core.selection.readout_choice`).
"""

from __future__ import annotations

import numpy as np
import torch

from core.progress import Reporter
from core.selection.batch import MISSING_COST, batch_inputs, nearest_existing, round_opened, solve
from core.selection.config import HostCPConfig
from core.selection.layer import SelectionLayer
from core.selection.model import SelectionModel
from core.valuation.base import top_k_mask

__all__ = ["OWN_GAIN_SHARE", "greedy_start", "own_gain_weights", "swap_pass", "respect_quota"]

#: Of the unflagged points, the top ``OWN_GAIN_SHARE * (flagged share)`` by suspect score gain
#: nothing for covering themselves in the greedy start (:func:`own_gain_weights`). Per-class
#: facility location otherwise prefers points far from the rest of their class, which is what a
#: mislabel the detector missed is: on digits 30 % it drew them in at about twice their rate in
#: the unflagged pool at 20-30 % budgets. Tuning folds (3 folds, 7 sets, 5-30 %; README, "Why
#: drop flagged, then random wins"): +3.1 points summed over 28 cells, +5.6 on digits 30 %; a
#: fixed 5 % or 15 % of the suspects, or every point, cost 2-6 points on clean non-linear data.
OWN_GAIN_SHARE = 0.2


def greedy_start(
    model: SelectionModel, data: dict[str, torch.Tensor], y: np.ndarray, allowed: np.ndarray, k: int,
    ncls: int, rng: np.random.Generator, *, weights: np.ndarray | None = None,
    shares: np.ndarray | None = None, suspect: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy facility location per class in f_phi space among the allowed points.

    ``weights`` (how much each point counts as one to be represented) and ``shares``
    (class shares of the quotas) come from a detected shift (:mod:`core.selection.target`);
    ``None``: points count alike and quotas follow class sizes. ``suspect`` (mislabel scores)
    sets which points gain nothing for covering themselves (:func:`own_gain_weights`).

    Returns:
        ``(chosen (N,) bool with k True, rank (N,) in [0, 1]: 1 for the first pick, 0 if not picked)``.
    """
    from core.valuation.base import stratified_quotas
    from core.valuation.facility_location import facility_location_per_class

    with torch.no_grad():
        feats = model.features(data["x"], data["y"]).cpu().numpy()
    quotas = stratified_quotas(y, k, ncls, allowed=allowed, shares=shares)
    chosen, fl = facility_location_per_class(feats, y, quotas, allowed=allowed, rng=rng, weights=weights,
                                             own_gain=own_gain_weights(suspect, allowed))
    rank = np.where(chosen, fl - 1.0, 0.0)
    short = k - int(chosen.sum())
    if short > 0:  # sampled classes or too few allowed points: allowed ones first
        chosen[top_k_mask(allowed.astype(float) - chosen * 2.0, short)] = True
    return chosen, rank


def own_gain_weights(suspect: np.ndarray | None, allowed: np.ndarray) -> np.ndarray | None:
    """``(N,)`` 0 for the most suspect allowed points, 1 for the rest; ``None`` when none is dropped.

    The share dropped is :data:`OWN_GAIN_SHARE` times the share of points not allowed (the
    flagged ones): nothing on clean data (under one point's worth), where the top suspects are
    hard clean points, and about 6 % of the unflagged points where 30 % are flagged.
    """
    share = OWN_GAIN_SHARE * float((~allowed).mean())
    if suspect is None or share * allowed.sum() < 1:  # not one point's worth (clean data)
        return None
    cut = np.quantile(suspect[allowed], 1 - share)
    return np.where(allowed & (suspect >= cut), 0.0, 1.0)


def swap_pass(
    model: SelectionModel, layer: SelectionLayer, data: dict[str, torch.Tensor], chosen: np.ndarray,
    y: np.ndarray, cfg: HostCPConfig, rng: np.random.Generator, reporter: Reporter,
    *, span: tuple[float, float] = (1.0, 1.0), label: str = "swap pass", cache: dict | None = None,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """One swap pass (``core.selection.refine``): same size and class counts, a better cover.

    ``cfg.scale.solve_group`` cluster batches go to the solver together; they hold
    disjoint points, so each keeps its size and class counts exactly, and each
    sees the set as it was before the group (a Jacobi step of the block descent).
    ``cache`` (one dict for the passes of one read-out, where phi is fixed) keeps the
    kNN graph of the points from pass to pass: above 5,000 points it is built once.
    ``weights`` (``(N,)``, a detected shift's) scale each point's cost of being represented,
    inside its batch problem and outside it; ``None``: points count alike.

    Returns:
        ``(chosen (N,) bool, number of points swapped in)``.
    """
    from core.selection.refine import NearestChosen, outside_gain
    from core.selection.swap_batches import cluster_batches

    ncls = int(y.max()) + 1 if cfg.class_quotas else 0
    with torch.no_grad():
        feats = model.features(data["x"], data["y"])
        cache = {} if cache is None else cache
        near = NearestChosen(feats, chosen, knn_graph=cache.get("knn_graph"))
        cache["knn_graph"] = near.knn_graph
        rows_weighted = weights is not None
        weights = (torch.ones(len(y), dtype=feats.dtype, device=feats.device) if weights is None  # alike
                   else torch.as_tensor(weights, dtype=feats.dtype, device=feats.device))
        changed = 0
        batches = cluster_batches(near, layer.n, rng)
        group_size, most = cfg.scale.solve_group, cfg.scale.swap_batches
        if len(batches) > most:  # at scale: a random share of the clusters each pass
            keep = np.sort(rng.choice(len(batches), most, replace=False))
            batches = [batches[i] for i in keep]
        for g0 in range(0, len(batches), group_size):
            reporter.check_cancelled()
            group, meta = [], []
            part = batches[g0:g0 + group_size]
            # one snapshot of the set for the group; each batch's own points are excluded from it
            existing = np.flatnonzero(near.chosen)
            dists = nearest_existing(feats, part, existing, layer.m)
            for idx, d_near in zip(part, dists, strict=True):
                was = near.chosen[idx].copy()
                limit = int(was.sum())
                quota = np.bincount(y[idx][was], minlength=ncls).astype(float) if ncls else None
                batch = batch_inputs(model, layer, data, idx, existing, float(limit), quota, cfg,
                                     feats=feats, near=d_near)
                r = batch.r
                if rows_weighted:  # row i of [Dn Do] is the cost of representing point i
                    w_rows = weights[torch.as_tensor(idx, device=feats.device)].to(batch.dn.dtype)[:, None]
                    batch.dn[:r] = batch.dn[:r] * w_rows
                    batch.do[:r] = batch.do[:r] * w_rows
                # a point with no chosen point outside the batch is charged a missing Do column
                gain = outside_gain(near, idx, weights, MISSING_COST * batch.scale, unit=batch.scale)
                batch.cost[:r] = batch.cost[:r] - gain.to(batch.cost.dtype)
                ub = batch.ub_real.copy()
                ub[was] = 1.0  # a chosen point (even a topped-up flagged one) may stay
                batch.ub[:r] = torch.as_tensor(ub, dtype=batch.ub.dtype)
                group.append(batch)
                meta.append((idx, was, limit, quota, ub))
            for (zn, u), (idx, was, limit, quota, ub) in zip(solve(layer, group), meta, strict=True):
                u_np = u.cpu().double().numpy()
                opened = round_opened(zn.cpu().double().numpy(), u_np, ub, limit)
                if ncls:
                    opened = respect_quota(opened, u_np, y[idx], quota)
                opened = _top_up(opened, was, u_np, y[idx], quota, limit - int(opened.sum()))
                near.update(idx[opened & ~was], idx[was & ~opened])
                changed += int((opened & ~was).sum())
            done = min(g0 + group_size, len(batches))
            frac = span[0] + (span[1] - span[0]) * done / len(batches)
            reporter.report("selection", frac, f"{label}, batch {done}/{len(batches)}")
    return near.chosen.copy(), changed


def _top_up(
    opened: np.ndarray, was: np.ndarray, u: np.ndarray, y: np.ndarray, quota: np.ndarray | None, short: int
) -> np.ndarray:
    """Rounding opened ``short`` too few: keep the batch's chosen points by ``u`` (within quotas)."""
    for j in np.flatnonzero(was & ~opened)[np.argsort(-u[was & ~opened], kind="stable")]:
        if short <= 0:
            break
        if quota is None or np.sum(opened & (y == y[j])) < quota[y[j]]:
            opened[j], short = True, short - 1
    return opened


def respect_quota(opened: np.ndarray, u: np.ndarray, y: np.ndarray, quota_left: np.ndarray) -> np.ndarray:
    """The opened points by decreasing ``u`` while their class has quota left."""
    out = np.zeros_like(opened)
    left = quota_left.copy()
    for j in np.flatnonzero(opened)[np.argsort(-u[opened], kind="stable")]:
        if left[y[j]] >= 1:
            out[j] = True
            left[y[j]] -= 1
    return out

