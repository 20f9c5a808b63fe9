"""Speed of HOST-CP: layer time per batch size, end-to-end selection time and peak memory.

Usage::

    .venv/bin/python benchmarks/speed.py                   # layer 32/64/128 + 1k, 5k, 20k points
    .venv/bin/python benchmarks/speed.py --sizes 1000      # end-to-end on 1k only
    .venv/bin/python benchmarks/speed.py --no-layer

Each end-to-end size runs in a fresh process; its peak memory is that process's max RSS
(resource.getrusage), torch and the imports included, and its growth over the RSS after imports.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.selection.layer import SelectionLayer  # noqa: E402
from core.valuation import SelectionTask, get_method  # noqa: E402


def layer_times(n: int, m: int = 8, reps: int = 5) -> tuple[float, float, float]:
    """(build s, forward s, forward+backward s) of one solve at batch size ``n``."""
    t0 = time.perf_counter()
    layer = SelectionLayer(n, m)
    build = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    pts = torch.randn(n, 16, generator=g, dtype=torch.float64)
    ex = torch.randn(m, 16, generator=g, dtype=torch.float64)
    args = (torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64),
            torch.tensor(0.1 * n, dtype=torch.float64))

    def run(backward: bool) -> None:
        p = pts.clone().requires_grad_(backward)
        dn = torch.cdist(p, p)
        do = torch.cdist(p, ex)
        s = dn.mean()
        _, _, u = layer(dn / s, do / s, *args)
        if backward:
            (u * torch.arange(n)).sum().backward()

    out = []
    for backward in (False, True):
        run(backward)
        t0 = time.perf_counter()
        for _ in range(reps):
            with torch.set_grad_enabled(backward):
                run(backward)
        out.append((time.perf_counter() - t0) / reps)
    return build, out[0], out[1]


def end_to_end(n: int, dim: int = 64, n_classes: int = 10, budget: float = 0.1, **cfg) -> dict:
    """Selection on ``n`` synthetic ``dim``-d points (flags given, so detection is not timed)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(n_classes, dim)) * 2
    y = rng.integers(0, n_classes, n)
    x = (centers[y] + rng.normal(size=(n, dim))).astype(np.float32)
    yv = rng.integers(0, n_classes, 500)
    xv = (centers[yv] + rng.normal(size=(500, dim))).astype(np.float32)
    flagged = rng.random(n) < 0.05
    task = SelectionTask(x, y, xv, yv, n_classes=n_classes, budget=budget, seed=0,
                         flagged=flagged, suspect=flagged * 0.9)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    res = get_method("hostcp", **cfg).fit(task).result
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "seconds": dt, "points_per_s": n / dt, "peak_rss_mb": rss, "growth_mb": rss - base,
            "k": int(res.selected.sum())}


def _child(n: int, cfg: dict, queue) -> None:
    torch.set_num_threads(1)
    queue.put(end_to_end(n, **cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,20000")
    ap.add_argument("--no-layer", action="store_true")
    ap.add_argument("--epochs", type=int, default=None, help="override HostCPConfig.epochs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.no_layer:
        print("| batch n (m=8) | build s | forward ms | forward+backward ms |")
        print("|---|---|---|---|")
        for n in (32, 64, 128):
            b, f, fb = layer_times(n, reps=3 if n == 128 else 5)
            print(f"| {n} | {b:.2f} | {f * 1000:.0f} | {fb * 1000:.0f} |", flush=True)
    cfg = {} if args.epochs is None else {"epochs": args.epochs}
    print("\n| points (64-d) | seconds | points/s | peak RSS MB | RSS growth in fit MB |")
    print("|---|---|---|---|---|")
    ctx = multiprocessing.get_context("spawn")
    for n in [int(s) for s in args.sizes.split(",") if s]:
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(n, cfg, queue))
        proc.start()
        r = queue.get()
        proc.join()
        cells = f"{r['seconds']:.1f} | {r['points_per_s']:.0f} | {r['peak_rss_mb']:.0f}"
        cells += f" | {r['growth_mb']:.0f}"
        print(f"| {r['n']} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
