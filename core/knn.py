"""k nearest neighbours for the whole engine: one helper, exact where it is affordable, fast everywhere.

Every kNN in the engine (the detector's signals, the sparse facility-location
graph, the swap passes' nearest chosen points) goes through :func:`knn`, so the
choice of backend and of exact versus approximate search is made, and measured,
in one place:

* faiss-cpu ``IndexFlatL2`` (exact) on the CPU;
* a faiss IVF-SQ8 index (approximate) on the CPU once ``queries x points`` passes
  :data:`EXACT_MAX_PAIRS`, where an exact search stops being affordable;
* blocked torch (``cdist`` + ``topk``, memory ``O(block * n)``) on CUDA, or when
  faiss is not installed; always exact.

Whatever the backend, the returned distances are recomputed directly as
``||q - x||`` for the neighbours found (the search itself works on squared
distances expanded as ``|q|^2 + |x|^2 - 2 q.x``, which loses the small ones in
float32: an exact duplicate came back at ``1e-3`` instead of 0), and each row is
sorted by them, ties by index.
"""

from __future__ import annotations

import logging
import math
import threading
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

__all__ = ["knn", "EXACT_MAX_PAIRS", "faiss_available"]

logger = logging.getLogger(__name__)

#: Exact search up to this many ``queries x points`` pairs, IVF beyond it (CPU/faiss only).
#: Measured with ``benchmarks/readout.py --knn`` (self-kNN, k=20, 64-d mixture, 2 shared cores):
#: 20k points flat 4.4 s vs IVF 3.1 s (recall@20 1.00); 50k flat 27.5 s vs IVF 25.4 s (recall 0.99);
#: 100k flat 92 s vs IVF 38 s (recall 0.84). Exact while it costs about what IVF does (50k points).
EXACT_MAX_PAIRS = 2.5e9
#: IVF lists: ``nlist = IVF_LISTS_PER_SQRT * sqrt(n)`` (k-means on ``IVF_TRAIN_PER_LIST`` points
#: per list, ``IVF_NITER`` iterations: at a million points that training takes seconds).
IVF_LISTS_PER_SQRT = 2.0
IVF_TRAIN_PER_LIST = 40
IVF_NITER = 10
#: Points scanned per query: ``nprobe = IVF_SCAN * nlist / n``, so the search grows linearly
#: with ``n``; recall falls with it (the benchmark's table states it per size). The lists hold
#: 8-bit scalar-quantised codes (``IVF..,SQ8``): same recall as float lists at 100k points, 1.5x
#: faster; the returned neighbours' distances are recomputed exactly anyway.
IVF_SCAN = 4096
#: float32 entries of one torch distance block (512 MB).
_BLOCK_FLOATS = 1 << 27
#: Up to this many ``queries x points`` pairs a search runs on one thread (faiss and torch): a
#: few milliseconds of work, where waking a thread pool on a busy machine cost 3x the time
#: (digits, 1,797 points, k=20, load 5 on 2 cores: 0.52-0.59 s with 2 threads, 0.17-0.23 s with one).
SINGLE_THREAD_PAIRS = 2.5e7

_faiss_lock = threading.Lock()  # faiss' OpenMP thread count is process-wide
_torch_lock = threading.Lock()  # and so is torch's


def faiss_available() -> bool:
    """Whether faiss imports (it is a dependency; the torch fallback keeps a broken install usable)."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def knn(
    x: np.ndarray | torch.Tensor,
    k: int,
    *,
    queries: np.ndarray | torch.Tensor | None = None,
    exclude_self: bool = True,
    device: str | torch.device | None = None,
    exact: bool | None = None,
    threads: int | None = None,
    backend: str | None = None,
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor]:
    """The ``k`` nearest points of ``x`` to each query, nearest first, Euclidean (not squared).

    Args:
        x: ``(N, D)`` points searched (numpy or torch).
        k: Neighbours per query; at most ``N`` (``N - 1`` with ``exclude_self``).
        queries: ``(Q, D)`` query points; ``None`` queries ``x`` itself.
        exclude_self: With ``queries=None``, drop each row's own index (by index: exact
            duplicates of a point still count as its neighbours; if duplicates pushed the
            point out of its own list, the farthest column is dropped). Ignored with ``queries``.
        device: Where to search; ``None`` follows ``x`` (a CUDA tensor searches on CUDA).
            CUDA always uses the blocked torch search.
        exact: ``True`` exact, ``False`` approximate (IVF, faiss only), ``None``: exact up to
            :data:`EXACT_MAX_PAIRS` query-point pairs.
        threads: faiss threads; ``None`` uses torch's intra-op thread count.
        backend: ``"faiss"``, ``"torch"`` or ``None`` (faiss on CPU when installed).

    Returns:
        ``(dist (Q, k), index (Q, k) int64)``: numpy arrays for a numpy ``x``, tensors on the
        search device for a tensor ``x``. ``dist`` is float64 for float64 input, float32 otherwise.

    Raises:
        ValueError: ``k`` out of range, mismatched dimensions, or an unknown ``backend``.
        TypeError: ``x`` or ``queries`` is not an array or tensor.
    """
    as_torch = isinstance(x, torch.Tensor)
    xs, qs, out_dtype = _validate(x, queries, k, exclude_self)
    dev = torch.device(device) if device is not None else (x.device if as_torch else torch.device("cpu"))
    if backend not in (None, "faiss", "torch"):
        raise ValueError(f"backend must be 'faiss', 'torch' or None; got {backend!r}.")
    use_faiss = dev.type == "cpu" and backend != "torch" and (backend == "faiss" or faiss_available())
    self_query = queries is None
    n_q = len(xs) if self_query else len(qs)
    if float(n_q) * len(xs) <= SINGLE_THREAD_PAIRS and dev.type == "cpu" and threads is None:
        with _torch_threads(1), threadpool_limits(limits=1):  # faiss' BLAS has threads of its own
            return knn(x, k, queries=queries, exclude_self=exclude_self, device=device, exact=exact,
                       threads=1, backend=backend)
    drop = self_query and exclude_self
    kk = min(k + int(drop), len(xs))
    if use_faiss:
        xn = _as_numpy32(xs)
        qn = xn if self_query else _as_numpy32(qs)
        approx = (exact is False) or (exact is None and float(n_q) * len(xn) > EXACT_MAX_PAIRS)
        n_threads = int(threads) if threads is not None else torch.get_num_threads()
        with _faiss_threads(n_threads):
            index = _faiss_ivf(xn, qn, kk) if approx else _faiss_flat(xn, qn, kk)
        index = torch.from_numpy(index)
    else:
        xt = _as_tensor(xs, dev)
        qt = xt if self_query else _as_tensor(qs, dev)
        index = _torch_search(xt, qt, kk)
    xt = _as_tensor(xs, dev if not use_faiss else torch.device("cpu"), out_dtype)
    qt = xt if self_query else _as_tensor(qs, xt.device, out_dtype)
    dist, index = _polish(xt, qt, index.to(xt.device))
    if drop:
        dist, index = _drop_self(dist, index, k)
    if as_torch:
        return dist, index
    return dist.cpu().numpy(), index.cpu().numpy()


def _validate(
    x: object, queries: object, k: int, exclude_self: bool
) -> tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor | None, torch.dtype]:
    """Shapes and types at the boundary; the dtype the distances come back in."""
    for name, a in (("x", x), ("queries", queries)):
        if a is not None and not isinstance(a, np.ndarray | torch.Tensor):
            raise TypeError(f"{name} must be a numpy array or a torch tensor; got {type(a).__name__}.")
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty (N, D) array; got shape {tuple(x.shape)}.")
    if queries is not None and (queries.ndim != 2 or queries.shape[1] != x.shape[1]):
        raise ValueError(
            f"queries must be (Q, {x.shape[1]}) like x; got shape {tuple(queries.shape)}."
        )
    limit = len(x) - (1 if queries is None and exclude_self else 0)
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= limit:
        raise ValueError(f"k must be an int in [1, {limit}] for {len(x)} points; got {k!r}.")
    wide = x.dtype in (np.float64, torch.float64)
    return x, queries, torch.float64 if wide else torch.float32


def _as_numpy32(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=np.float32)


def _as_tensor(
    a: np.ndarray | torch.Tensor, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)


@contextmanager
def _torch_threads(n: int):
    """torch's intra-op threads set to ``n`` for the call and restored (process-wide, so locked).

    Only around a small search (:data:`SINGLE_THREAD_PAIRS`): milliseconds, during which
    other torch work in the process runs on ``n`` threads too.
    """
    with _torch_lock:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


@contextmanager
def _faiss_threads(n: int):
    """faiss' OpenMP threads set to ``n`` for the call and restored (process-wide, so locked)."""
    import faiss

    with _faiss_lock:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, n))
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


def _faiss_flat(xn: np.ndarray, qn: np.ndarray, k: int) -> np.ndarray:
    """``(Q, k)`` exact neighbour indices (faiss IndexFlatL2)."""
    import faiss

    index = faiss.IndexFlatL2(xn.shape[1])
    index.add(xn)
    _, ids = index.search(qn, k)
    return ids.astype(np.int64)


def _faiss_ivf(xn: np.ndarray, qn: np.ndarray, k: int) -> np.ndarray:
    """``(Q, k)`` approximate neighbour indices (faiss IVF-SQ8, seeded training sample).

    A query whose probed lists hold fewer than ``k`` points gets ``-1`` from faiss;
    those rows are searched again exactly (rare with the settings above).
    """
    import faiss

    n, dim = xn.shape
    nlist = int(max(1, min(n // IVF_TRAIN_PER_LIST, round(IVF_LISTS_PER_SQRT * math.sqrt(n)))))
    index = faiss.index_factory(dim, f"IVF{nlist},SQ8")
    index.cp.niter = IVF_NITER
    n_train = min(n, nlist * IVF_TRAIN_PER_LIST)
    sample = xn if n_train == n else xn[np.sort(np.random.default_rng(0).choice(n, n_train, replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.add(xn)
    index.nprobe = int(min(nlist, max(1, math.ceil(IVF_SCAN * nlist / n))))
    _, ids = index.search(qn, k)
    short = np.flatnonzero((ids < 0).any(1))
    if len(short):
        logger.debug("IVF returned fewer than %d neighbours for %d queries; exact for those", k, len(short))
        ids[short] = _faiss_flat(xn, np.ascontiguousarray(qn[short]), k)
    return ids.astype(np.int64)


def _torch_search(x: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """``(Q, k)`` exact neighbour indices by blocked ``cdist`` + ``topk`` (memory ``O(block * N)``)."""
    block = max(1, _BLOCK_FLOATS // max(len(x), 1))
    out = torch.empty((len(q), k), dtype=torch.long, device=x.device)
    for s in range(0, len(q), block):
        d = torch.cdist(q[s:s + block], x)  # (b, N)
        out[s:s + block] = torch.topk(d, k, dim=1, largest=False).indices
    return out


def _polish(x: torch.Tensor, q: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``||q - x||`` of the found neighbours, each row sorted by them (ties by index)."""
    n_q, k = index.shape
    dist = torch.empty((n_q, k), dtype=x.dtype, device=x.device)
    block = max(1, (1 << 24) // max(k * x.shape[1], 1))
    for s in range(0, n_q, block):
        idx = index[s:s + block]
        dist[s:s + block] = (q[s:s + block, None, :] - x[idx]).square().sum(-1).sqrt()
    # sort by (distance, index): stable sort on index first, then on distance
    by_index = torch.sort(index, dim=1, stable=True).indices
    index, dist = torch.gather(index, 1, by_index), torch.gather(dist, 1, by_index)
    order = torch.sort(dist, dim=1, stable=True).indices
    return torch.gather(dist, 1, order), torch.gather(index, 1, order)


def _drop_self(dist: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove each row's own index (or the farthest column if self was not returned)."""
    n = len(index)
    is_self = index == torch.arange(n, device=index.device)[:, None]
    first = is_self & (torch.cumsum(is_self.long(), dim=1) == 1)  # only the first occurrence
    no_self = ~first.any(1)
    first[no_self, -1] = True  # duplicates pushed self out of the list: drop the last
    keep = ~first
    return dist[keep].reshape(n, -1)[:, :k], index[keep].reshape(n, -1)[:, :k]
