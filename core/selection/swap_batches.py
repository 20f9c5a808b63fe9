"""Batches for the swap passes (:mod:`core.selection.refine`): whole clusters, neighbours together.

A swap pass re-decides the chosen set one batch at a time; a batch holds chosen
points with the points they represent, so that the convex layer can move a
representative within its cluster (the medoid step of k-medoids) or between
neighbouring clusters.
"""

from __future__ import annotations

import numpy as np
import torch

from core.knn import knn
from core.selection.refine import NearestChosen

__all__ = ["cluster_batches"]


def cluster_batches(near: NearestChosen, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of whole clusters: each chosen point with the points it now represents.

    A chosen point and its own cluster in one problem is where a better
    representative is found (the medoid step of k-medoids); clusters larger than
    the batch contribute a random sample of ``n - 1`` members, and several small
    clusters share a batch. Every chosen point is in exactly one batch.
    """
    owner = near.i[:, 0].cpu().numpy()
    chosen = rng.permutation(np.flatnonzero(near.chosen))
    perm = rng.permutation(len(owner))
    members = _members(owner, chosen, perm, near.chosen)
    # neighbouring clusters share a batch, so a representative can move between them
    nbr = _chosen_neighbours(near, chosen)
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


def _members(
    owner: np.ndarray, chosen: np.ndarray, perm: np.ndarray, is_chosen: np.ndarray
) -> dict[int, list[int]]:
    """Each chosen point's members (the other points it is nearest to), in ``perm`` order.

    One stable sort by owner instead of a Python loop over all N points.
    """
    o = owner[perm]
    keep = (o >= 0) & (o != perm)
    keep[keep] = is_chosen[o[keep]]
    order = np.argsort(o[keep], kind="stable")
    pts, own = perm[keep][order], o[keep][order]
    cuts = np.flatnonzero(np.diff(own)) + 1
    groups = dict(zip(own[np.r_[0, cuts]].tolist(), np.split(pts, cuts), strict=True)) if len(own) else {}
    return {int(j): groups[int(j)].tolist() if int(j) in groups else [] for j in chosen}


def _chosen_neighbours(near: NearestChosen, chosen: np.ndarray) -> np.ndarray:
    """``(k, <=8)`` positions (in ``chosen``) of each chosen point's nearest chosen points, self first."""
    kk = min(8, len(chosen))
    if len(chosen) == 0:
        return np.zeros((0, kk), dtype=int)
    fc = near.f[torch.as_tensor(chosen, device=near.f.device)]
    if near.uses_graph:  # core.knn: faiss (IVF for very large sets) or blocked torch on CUDA
        return knn(fc, kk, exclude_self=False)[1].cpu().numpy()
    return np.concatenate([  # blocks (k x k can be large)
        torch.topk(torch.cdist(fc[s:s + near.chunk], fc), kk, dim=1, largest=False).indices.cpu().numpy()
        for s in range(0, len(chosen), near.chunk)
    ])
