"""Swap passes: block-coordinate descent on the whole set's facility-location objective.

The online pass decides each batch once, against the points chosen before it:
early batches choose with no existing set at all, so its set covers worse than
offline greedy facility location (tuning folds: 6 points behind it at a 5
percent budget on digits). A swap pass revisits the chosen set in batches made
of whole clusters (a chosen point with the points it represents, neighbouring
clusters together) with the *rest of the current set* as the existing set
(method.md: "warm-starting the existing set"), and lets the convex layer
re-decide which of the batch's points to open, with the number opened per
class fixed. Closing a batch point also uncovers the points outside the batch
that it represents, so the batch problem gets, as a linear (DPP-safe) opening
cost, each batch point's gain for the outside points::

    c_j  -=  sum_{i outside the batch} w_i * max(0, d_rest(i) - d(i, j))

where ``d_rest(i)`` is the distance from ``i`` to its nearest chosen point
outside the batch. With that term the batch problem is the whole set's
objective restricted to the batch's decisions (exact for one opened point, an
upper bound on the gain when two batch points serve the same outside point).

The nearest and second-nearest chosen point of every point are kept up to
date incrementally (:class:`NearestChosen`), so a pass costs about
``O(N^2 p / n)`` distance work rather than ``O(N^2 k p / n)``.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["NearestChosen", "cluster_batches", "outside_gain"]


class NearestChosen:
    """Distances from every point to its two nearest chosen points, kept current as the set changes.

    Args:
        feats: ``(N, p)`` points in f_phi space (fixed during the pass).
        chosen: ``(N,)`` bool, the current set (copied).
        chunk: Rows per distance block (bounds memory at ``chunk * k`` floats).
    """

    def __init__(self, feats: torch.Tensor, chosen: np.ndarray, *, chunk: int = 4096) -> None:
        self.f = feats
        self.chosen = np.asarray(chosen, dtype=bool).copy()
        self.chunk = chunk
        n = len(feats)
        self.d = torch.full((n, 2), float("inf"), dtype=feats.dtype, device=feats.device)
        self.i = torch.full((n, 2), -1, dtype=torch.long, device=feats.device)
        self._recompute(np.arange(n))

    def _recompute(self, rows: np.ndarray) -> None:
        """Exact top-2 of ``rows`` against the current set."""
        ids = torch.as_tensor(np.flatnonzero(self.chosen), device=self.f.device)
        if len(rows) == 0:
            return
        for s in range(0, len(rows), self.chunk):
            r = torch.as_tensor(rows[s:s + self.chunk], device=self.f.device)
            self.d[r], self.i[r] = float("inf"), -1
            if len(ids) == 0:
                continue
            dist = torch.cdist(self.f[r], self.f[ids])
            kk = min(2, len(ids))
            v, j = torch.topk(dist, kk, dim=1, largest=False)
            self.d[r, :kk], self.i[r, :kk] = v, ids[j]

    def rest_distance(self, batch: np.ndarray) -> torch.Tensor:
        """``(N,)`` distance from each point to its nearest chosen point outside ``batch`` (inf if none)."""
        inb = torch.zeros(len(self.f), dtype=torch.bool, device=self.f.device)
        inb[torch.as_tensor(batch, device=self.f.device)] = True
        valid = (self.i >= 0) & ~inb[self.i.clamp_min(0)]
        d = torch.where(valid, self.d, torch.full_like(self.d, float("inf")))
        out = d.min(dim=1).values
        # both stored neighbours in the batch: look further, exactly, for those few rows
        lost = np.flatnonzero(((self.i >= 0) & ~valid).all(dim=1).cpu().numpy())
        rest = np.flatnonzero(self.chosen & ~inb.cpu().numpy())
        if len(lost) and len(rest):
            t = torch.as_tensor(lost, device=self.f.device)
            out[t] = torch.cdist(self.f[t], self.f[torch.as_tensor(rest, device=self.f.device)]).min(1).values
        return out

    def update(self, added: np.ndarray, removed: np.ndarray) -> None:
        """Apply a batch's swaps: ``added`` and ``removed`` are point indices."""
        self.chosen[removed] = False
        if len(removed):  # against the set without the added points: the merge below adds them once
            hit = torch.isin(self.i, torch.as_tensor(removed, device=self.f.device)).any(dim=1)
            self._recompute(np.flatnonzero(hit.cpu().numpy()))
        self.chosen[added] = True
        if len(added):
            a = torch.as_tensor(added, device=self.f.device)
            for s in range(0, len(self.f), self.chunk):
                sl = slice(s, s + self.chunk)
                dist = torch.cdist(self.f[sl], self.f[a])
                d = torch.cat([self.d[sl], dist], dim=1)
                i = torch.cat([self.i[sl], a.expand(len(dist), -1)], dim=1)
                v, j = torch.topk(d, 2, dim=1, largest=False)
                self.d[sl], self.i[sl] = v, torch.gather(i, 1, j)


def outside_gain(
    near: NearestChosen, batch: np.ndarray, weights: torch.Tensor, cap: float, *,
    power: float = 1.0, unit: float = 1.0,
) -> torch.Tensor:
    """``(r,)`` gain of opening each batch point for the points outside the batch (method above).

    Args:
        near: The current set's nearest distances.
        batch: ``(r,)`` indices of the batch.
        weights: ``(N,)`` row weights (label quality).
        cap: Distance charged for a point with no chosen point outside the batch.
        power: Distances enter as ``(d / unit) ** power`` (the batch problem's units).
        unit: Distance unit of the batch problem.
    """
    dev = near.f.device
    rest = near.rest_distance(batch).clamp(max=cap)
    out = torch.ones(len(near.f), dtype=torch.bool, device=dev)
    out[torch.as_tensor(batch, device=dev)] = False
    dist = torch.cdist(near.f[out], near.f[torch.as_tensor(batch, device=dev)])  # (N - r, r)
    gain = ((rest[out, None] / unit) ** power - (dist / unit) ** power).clamp_min(0.0) * weights[out, None]
    return gain.sum(dim=0)


def cluster_batches(near: NearestChosen, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of whole clusters: each chosen point with the points it now represents.

    A chosen point and its own cluster in one problem is where a better
    representative is found (the medoid step of k-medoids); clusters larger than
    the batch contribute a random sample of ``n - 1`` members, and several small
    clusters share a batch. Every chosen point is in exactly one batch.
    """
    owner = near.i[:, 0].cpu().numpy()
    chosen = rng.permutation(np.flatnonzero(near.chosen))
    members: dict[int, list[int]] = {int(j): [] for j in chosen}
    for i in rng.permutation(len(owner)):
        j = int(owner[i])
        if j >= 0 and j != i and j in members:
            members[j].append(int(i))
    # neighbouring clusters share a batch, so a representative can move between them
    ids = torch.as_tensor(chosen, device=near.f.device)
    kk = min(8, len(chosen))
    fc = near.f[ids]
    nbr = np.concatenate([  # 8 nearest chosen points of each chosen point, in blocks (k x k can be large)
        torch.topk(torch.cdist(fc[s:s + near.chunk], fc), kk, dim=1, largest=False).indices.cpu().numpy()
        for s in range(0, len(chosen), near.chunk)
    ]) if len(chosen) else np.zeros((0, kk), dtype=int)
    done = np.zeros(len(chosen), dtype=bool)
    batches = []
    for p0 in range(len(chosen)):
        if done[p0]:
            continue
        cur: list[int] = []
        queue = [p0]
        while queue:
            p = queue.pop(0)
            if done[p]:
                continue
            group = [int(chosen[p])] + members[int(chosen[p])][: n - 1]
            if cur and len(cur) + len(group) > n:
                break
            done[p] = True
            cur += group
            queue += [int(q) for q in nbr[p] if not done[q]]
        batches.append(np.asarray(cur))
    return batches
