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
The batches themselves come from :mod:`core.selection.swap_batches`.

The two nearest chosen points of every point are kept up to date
incrementally (:class:`NearestChosen`). Up to :data:`EXACT_MAX_POINTS` points
each step uses dense ``N x batch`` distance blocks. Above it (the *graph* path)
each point's ``m`` nearest neighbours (:func:`core.knn.knn`) bound the work: a
point whose two nearest chosen points are in its own list can only change, or
gain, through a point of that list (on an exact graph every point nearer than
the list's radius is in it); the few *poorly covered* points (a top-2 point
outside the list) are checked directly after a bounding-ball filter. On an
exact graph that is exact (the tests compare both paths); on an IVF graph
(above :data:`GRAPH_EXACT_MAX_PAIRS` pairs) a missed neighbour can leave a
top-2 distance too high or a gain too low, never a removed point in a top-2.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from core.knn import knn

__all__ = ["EXACT_MAX_POINTS", "NearestChosen", "outside_gain"]

#: Dense ``N x batch`` path up to this many points, the graph path above. Measured
#: (``benchmarks/readout.py --refine``, 32-d mixture, 10 % chosen, torch at 1 thread; one pass,
#: graph build included, dense / graph): 5k points 2 / 1 s, 10k 6 / 4 s, 20k 22 / 9 s,
#: 100k 484 / 74 s; the graph path is also the more accurate one (exact zeros, no cdist matmul).
EXACT_MAX_POINTS = 5_000
#: Graph neighbours per point: about this many per chosen point's share, within the bounds.
GRAPH_COVER, GRAPH_MIN, GRAPH_MAX = 4.0, 16, 64
#: The graph is exact up to this many point pairs (one flat search, ~110k points: 100k took
#: 27-80 s here in 32-d, by load), IVF above.
GRAPH_EXACT_MAX_PAIRS = 1.2e10


class NearestChosen:
    """Distances from every point to its two nearest chosen points, kept current as the set changes.

    Args:
        feats: ``(N, p)`` points in f_phi space (fixed during the pass).
        chosen: ``(N,)`` bool, the current set (copied).
        chunk: Rows per distance block (bounds memory at ``chunk * k`` floats).
        graph: ``None`` picks by size (:data:`EXACT_MAX_POINTS`); ``True`` / ``False`` forces the
            graph / dense path.
        n_neighbors: Neighbours per point of the graph (``None``: from the set's size).
        knn_graph: ``(dist (N, m), index (N, m))`` from :func:`core.knn.knn` on ``feats``, to reuse
            one graph across passes (``near.knn_graph`` of an earlier pass on the same ``feats``).
    """

    def __init__(
        self, feats: torch.Tensor, chosen: np.ndarray, *, chunk: int = 4096, graph: bool | None = None,
        n_neighbors: int | None = None, knn_graph: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.f = feats
        self.chosen = np.asarray(chosen, dtype=bool).copy()
        self.chunk = chunk
        n = len(feats)
        dev = feats.device
        self.d = torch.full((n, 2), float("inf"), dtype=feats.dtype, device=dev)
        self.i = torch.full((n, 2), -1, dtype=torch.long, device=dev)
        self.uses_graph = ((n > EXACT_MAX_POINTS) if graph is None else bool(graph)) and n > 2
        self.graph_exact = float(n) * n <= GRAPH_EXACT_MAX_PAIRS
        self.knn_graph = None  # (dist (N, m), index (N, m)) on the graph path
        if self.uses_graph:
            self._build_graph(n_neighbors, knn_graph)
            self._recompute(np.arange(n))
        else:
            self._recompute_dense(np.arange(n))

    def _build_graph(self, m: int | None, given: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        n, dev = len(self.f), self.f.device
        if given is None:
            k = max(int(self.chosen.sum()), 1)
            m = m or max(GRAPH_MIN, min(GRAPH_MAX, math.ceil(GRAPH_COVER * n / k)))
            given = knn(self.f, min(m, n - 1), exact=self.graph_exact)  # (N, m), self excluded
        dist, idx = (t.to(dev) for t in given)
        self.knn_graph = (dist, idx)
        rows = torch.arange(n, device=dev)[:, None]
        self.nbr = torch.cat([rows, idx], dim=1)  # (N, m + 1): self first
        self.nd = torch.cat([torch.zeros_like(dist[:, :1]), dist], dim=1).to(self.f.dtype)
        self.radius = self.nd[:, -1]  # (N,) r_i
        flat = self.nbr.reshape(-1)
        self._by_col = torch.argsort(flat, stable=True)  # entries grouped by the listed point
        counts = torch.bincount(flat, minlength=n)
        self._ptr = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), torch.cumsum(counts, 0)])
        self._on = torch.as_tensor(self.chosen, device=dev)
        self._poor = torch.ones(n, dtype=torch.bool, device=dev)  # a top-2 point not in the row's list
        self._poor_idx = torch.arange(n, device=dev)  # the same rows as indices, kept in step

    def _listing(self, pts: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Rows whose list (self included) holds any of ``pts``, unique."""
        dev = self.f.device
        p = torch.as_tensor(pts, device=dev, dtype=torch.long)
        if len(p) == 0:
            return torch.zeros(0, dtype=torch.long, device=dev)
        starts = self._ptr[p]
        lens = self._ptr[p + 1] - starts
        offs = torch.repeat_interleave(starts - torch.cumsum(lens, 0) + lens, lens)
        ent = self._by_col[torch.arange(int(lens.sum()), device=dev) + offs]
        return torch.unique(ent // self.nbr.shape[1])

    def _chosen_ids(self, exclude: torch.Tensor | None = None) -> torch.Tensor:
        on = self._on if exclude is None else self._on & ~exclude
        return torch.nonzero(on).reshape(-1)

    def _search(self, rows: torch.Tensor, ids: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d, i) (R, kk)``: top-``kk`` of ``rows`` among ``ids`` (inf / -1 padded); exact up to
        :data:`core.knn.EXACT_MAX_PAIRS` pairs (only a huge set's first top-2 can go IVF)."""
        dev = self.f.device
        d = torch.full((len(rows), kk), float("inf"), dtype=self.f.dtype, device=dev)
        i = torch.full((len(rows), kk), -1, dtype=torch.long, device=dev)
        if len(rows) == 0 or len(ids) == 0:
            return d, i
        got = min(kk, len(ids))
        dist, j = knn(self.f[ids], got, queries=self.f[rows])
        d[:, :got], i[:, :got] = dist.to(d.dtype), ids[j]
        return d, i

    def _recompute(self, rows: np.ndarray | torch.Tensor) -> None:
        """Exact top-2 of ``rows`` against the current set (graph path)."""
        dev = self.f.device
        r = torch.as_tensor(rows, device=dev, dtype=torch.long)
        if len(r) == 0:
            return
        on = self._on[self.nbr[r]]  # (R, m + 1) listed points that are chosen, nearest first
        rank = torch.cumsum(on, dim=1, dtype=torch.int32)
        inf = torch.tensor(float("inf"), dtype=self.f.dtype, device=dev)
        for t in (0, 1):
            hit = on & (rank == t + 1)
            col = hit.long().argmax(dim=1)
            found = hit.any(dim=1)
            self.d[r, t] = torch.where(found, self.nd[r, col], inf)
            self.i[r, t] = torch.where(found, self.nbr[r, col], -1)
        short = r[rank[:, -1] < 2]  # fewer than two chosen in the list: search the set
        if len(short):
            d, i = self._search(short, self._chosen_ids(), 2)
            self.d[short], self.i[short] = d, i
        self._set_poor(r)

    def _set_poor(self, rows: torch.Tensor) -> None:
        """Recompute the poorly covered flag of ``rows`` and keep the index list in step (no O(N) scan).

        Poorly covered: a top-2 point missing from the row's own list (on an exact graph, the
        second nearest chosen point at ``>= r_i``); every other row is found through its list.
        """
        listed = self.nbr[rows]  # (R, m + 1)
        now = ~((listed == self.i[rows, :1]).any(dim=1) & (listed == self.i[rows, 1:]).any(dim=1))
        was = self._poor[rows]
        off, on = rows[was & ~now], rows[now & ~was]
        if len(off) == 0 and len(on) == 0:
            return
        self._poor[rows] = now
        keep = self._poor_idx if len(off) == 0 else self._poor_idx[~torch.isin(self._poor_idx, off)]
        self._poor_idx = torch.cat([keep, on])

    def _recompute_dense(self, rows: np.ndarray) -> None:
        """Exact top-2 of ``rows`` against the current set (dense path, unchanged)."""
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
        if self.uses_graph:
            out = self.d[:, 0].clone()
            inb = self._mask(batch)
            rows = torch.unique(torch.cat([self._listing(batch), self._poor_idx]))
            out[rows] = self._rest_rows(rows, inb)
            return out
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

    def _mask(self, pts: np.ndarray) -> torch.Tensor:
        m = torch.zeros(len(self.f), dtype=torch.bool, device=self.f.device)
        m[torch.as_tensor(pts, device=self.f.device, dtype=torch.long)] = True
        return m

    def _rest_rows(self, rows: torch.Tensor, inb: torch.Tensor) -> torch.Tensor:
        """``(R,)`` exact distance of ``rows`` to the nearest chosen point outside the batch (graph path)."""
        dev = self.f.device
        ii, dd = self.i[rows], self.d[rows]
        valid = (ii >= 0) & ~inb[ii.clamp_min(0)]
        out = torch.where(valid, dd, torch.full_like(dd, float("inf"))).min(dim=1).values
        lost = ((ii >= 0) & ~valid).all(dim=1)  # both stored ones in the batch: look further
        if bool(lost.any()):
            lr = rows[lost]
            nb = self.nbr[lr]
            ok = self._on[nb] & ~inb[nb]  # chosen outside the batch, in the list: nearest first
            found = ok.any(dim=1)
            col = ok.long().argmax(dim=1)
            res = torch.where(found, self.nd[lr, col], torch.tensor(float("inf"), dtype=dd.dtype, device=dev))
            far = lr[~found]
            if len(far):
                res[~found] = self._search(far, self._chosen_ids(exclude=inb), 1)[0][:, 0]
            out[lost] = res
        return out

    def update(self, added: np.ndarray, removed: np.ndarray) -> None:
        """Apply a batch's swaps: ``added`` and ``removed`` are point indices."""
        if self.uses_graph:
            self._update_graph(np.asarray(added, dtype=np.int64), np.asarray(removed, dtype=np.int64))
            return
        self.chosen[removed] = False
        if len(removed):  # against the set without the added points: the merge below adds them once
            hit = torch.isin(self.i, torch.as_tensor(removed, device=self.f.device)).any(dim=1)
            self._recompute_dense(np.flatnonzero(hit.cpu().numpy()))
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

    def _update_graph(self, added: np.ndarray, removed: np.ndarray) -> None:
        """Only rows listing a swapped point, or poorly covered ones, can change (module docstring)."""
        dev = self.f.device
        self.chosen[removed] = False
        self._on[torch.as_tensor(removed, device=dev)] = False
        if len(removed):
            rem = torch.as_tensor(removed, device=dev)
            cand = torch.unique(torch.cat([self._listing(removed), self._poor_idx]))
            hit = cand[torch.isin(self.i[cand], rem).any(dim=1)]
            self._recompute(hit)
        self.chosen[added] = True
        self._on[torch.as_tensor(added, device=dev)] = True
        if len(added):
            a = torch.as_tensor(added, device=dev)
            poor = self._poor_idx
            if len(poor):
                poor = poor[_ball_filter(self.f[poor], self.f[a], self.d[poor, 1])]
            rows = torch.unique(torch.cat([self._listing(added), poor]))
            d = torch.cat([self.d[rows], _pair_dist(self.f[rows], self.f[a])], dim=1)
            i = torch.cat([self.i[rows], a.expand(len(rows), -1)], dim=1)
            v, j = torch.topk(d, 2, dim=1, largest=False)
            self.d[rows], self.i[rows] = v, torch.gather(i, 1, j)
            self._set_poor(rows)


def _pair_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(A, B)`` Euclidean distances as ``|a - b|`` (exact zeros; cdist's matrix product is not)."""
    step = max(1, (1 << 24) // max(len(b) * a.shape[1], 1))  # rows per block: 16M floats
    out = a.new_zeros((len(a), len(b)))
    for s in range(0, len(a), step):
        out[s:s + step] = (a[s:s + step, None] - b[None]).norm(dim=-1)
    return out


def _ball_filter(f: torch.Tensor, pts: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:
    """``(R,)`` bool: rows of ``f`` that may lie closer than ``bound`` to some row of ``pts``.

    ``d(i, j) >= |f_i - c| - R`` for the centre ``c`` and radius ``R`` of the ball around
    ``pts``: rows with ``|f_i - c| - R >= bound`` cannot (a cheap test before exact distances).
    """
    c = pts.mean(dim=0, keepdim=True)
    rad = (pts - c).norm(dim=1).max()
    return (f - c).norm(dim=1) - rad < bound


def outside_gain(
    near: NearestChosen, batch: np.ndarray, weights: torch.Tensor, cap: float, *, unit: float = 1.0,
) -> torch.Tensor:
    """``(r,)`` gain of opening each batch point for the points outside the batch (method above).

    Args:
        near: The current set's nearest distances.
        batch: ``(r,)`` indices of the batch.
        weights: ``(N,)`` row weights: ones, or the target's density-ratio weights when a shift
            is detected (:mod:`core.selection.target`; weighting by label quality lost on the
            tuning folds).
        cap: Distance charged for a point with no chosen point outside the batch.
        unit: Distances enter as ``d / unit`` (the batch problem's unit).
    """
    dev = near.f.device
    b = torch.as_tensor(batch, device=dev, dtype=torch.long)
    if near.uses_graph:
        rows, rest = _gaining_rows(near, batch, cap)
        dist = _pair_dist(near.f[rows], near.f[b])  # (R, r)
        gain = (rest[:, None] / unit - dist / unit).clamp_min(0.0) * weights[rows, None]
        return gain.sum(dim=0)
    rest = near.rest_distance(batch).clamp(max=cap)
    out = torch.ones(len(near.f), dtype=torch.bool, device=dev)
    out[b] = False
    dist = torch.cdist(near.f[out], near.f[b])  # (N - r, r)
    gain = (rest[out, None] / unit - dist / unit).clamp_min(0.0) * weights[out, None]
    return gain.sum(dim=0)


def _gaining_rows(near: NearestChosen, batch: np.ndarray, cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows outside the batch that can gain from a batch point, and their ``d_rest`` (capped).

    A row that is not poorly covered and lists no batch point has both nearest chosen
    points in its list and outside the batch, so ``d_rest = d_1 < r_i <= d(i, j)``: no
    gain. Poorly covered rows pass a bounding-ball test against the batch first.
    """
    inb = near._mask(batch)
    poor = near._poor_idx[~inb[near._poor_idx]]
    if len(poor):
        rest_poor = near._rest_rows(poor, inb).clamp(max=cap)
        b = torch.as_tensor(batch, device=near.f.device, dtype=torch.long)
        poor = poor[_ball_filter(near.f[poor], near.f[b], rest_poor)]
    rows = torch.unique(torch.cat([near._listing(batch), poor]))
    rows = rows[~inb[rows]]
    return rows, near._rest_rows(rows, inb).clamp(max=cap)
