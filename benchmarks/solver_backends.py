"""Convex-layer backends side by side: time per problem, forward and forward+backward, and agreement.

Usage::

    .venv/bin/python benchmarks/solver_backends.py                    # B = 1, 4, 16, 64; all backends
    .venv/bin/python benchmarks/solver_backends.py --batches 1 16 --problems 32
    .venv/bin/python benchmarks/solver_backends.py --solvers moreau Clarabel

Problems are the selector's (n=32 incoming, m=8 existing, 10 classes with quotas):
points from a 10-class mixture, distances scaled to a mean off-diagonal of 1, a random
number (0-8) of existing columns with the rest at the missing cost 2.0, 10 % of the
points flagged (``ub = 0``), budget ~3 and per-class quotas. Every backend solves the
same instances in one run, interleaved per batch size B (B problems per layer call,
``--problems`` problems per cell), so the ratios are comparable on a noisy machine.
Agreement is against Clarabel on those instances: the largest ``|u - u_ref|`` and the
largest per-problem relative difference of the gradient of a random linear functional
of ``(u, Zn)`` with respect to ``(Dn, Do, c)`` (median, max, and how many problems
differ by more than 1e-2: those sit near a kink of the solution map, where each solver
returns a different one-sided derivative). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.selection.layer import SOLVERS, SelectionLayer  # noqa: E402

N, M, CLASSES, DIM = 32, 8, 10, 16
MISSING = 2.0
#: A per-problem relative gradient difference above this marks a problem near a kink of the piecewise-affine
#: solution map, where interior-point solvers return different one-sided derivatives (see test_backends.py).
KINK = 1e-2


def instances(count: int, seed: int) -> list[torch.Tensor]:
    """``count`` selector-like problems, stacked: ``[Dn (B,n,n), Do (B,n,m), c, ub, budget, M, quota]``."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CLASSES, DIM)) * 1.5
    out: list[list[np.ndarray]] = [[] for _ in range(7)]
    for _ in range(count):
        y = rng.integers(0, CLASSES, N)
        pts = centers[y] + rng.normal(size=(N, DIM))
        k = int(rng.integers(0, M + 1))  # existing points found so far
        ex = centers[rng.integers(0, CLASSES, 64)] + rng.normal(size=(64, DIM))
        dn = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        scale = dn.sum() / (N * (N - 1))
        dn /= scale
        do = np.full((N, M), MISSING)
        if k:
            d = np.linalg.norm(pts[:, None] - ex[None], axis=-1) / scale
            do[:, :k] = np.sort(d, axis=1)[:, :k]
        c = rng.uniform(0.0, 0.05, N)
        ub = (rng.random(N) >= 0.1).astype(float)
        budget = float(rng.uniform(2.5, 3.5))
        onehot = np.zeros((CLASSES, N))
        onehot[y, np.arange(N)] = 1.0
        quota = np.maximum(np.ceil(budget * onehot.sum(1) / N), 0.0) + 0.5 * rng.random(CLASSES)
        for lst, v in zip(out, (dn, do, c, ub, np.array(budget), onehot, quota), strict=True):
            lst.append(v)
    return [torch.tensor(np.stack(v)) for v in out]


def run_cell(layer: SelectionLayer, calls: list[list[torch.Tensor]], backward: bool, weights: list) -> dict:
    """Solve every call's stacked problems; the wall time, and (with ``backward``) outputs and gradients."""
    us, grads, low = [], [], 0.0
    t0 = time.perf_counter()
    for params, (wu, wz) in zip(calls, weights, strict=True):
        leaves = [p.clone().requires_grad_(backward and i < 3) for i, p in enumerate(params)]
        batched = leaves[0].dim() == 3
        with torch.set_grad_enabled(backward):
            zn, zo, u = layer(*leaves)
            if not batched:
                zn, zo, u = zn[None], zo[None], u[None]
            low = min(low, float(min(zn.min(), zo.min(), u.min())))
            if backward:
                ((u * wu).sum() + (zn * wz).sum()).backward()
                g = [leaves[i].grad if batched else leaves[i].grad[None] for i in range(3)]
                grads.append(torch.cat([x.reshape(len(u), -1) for x in g], dim=1))
        us.append(u.detach())
    return {"s": time.perf_counter() - t0, "u": torch.cat(us), "g": torch.cat(grads) if grads else None,
            "low": low}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--problems", type=int, default=64, help="problems per cell (a multiple of each B)")
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    args = ap.parse_args()
    solvers = ["Clarabel"] + [s for s in args.solvers if s != "Clarabel"]  # the reference first

    builds, layers = {}, {}
    for s in solvers:
        t0 = time.perf_counter()
        layers[s] = SelectionLayer(N, M, n_classes=CLASSES, solver=s)
        builds[s] = time.perf_counter() - t0
        warm = instances(2, seed=99)
        layers[s](*[p[0] for p in warm])  # first solve: lazy set-up
        layers[s](*warm)

    rows = []
    for b in args.batches:
        n_calls = max(1, args.problems // b)
        stacked = instances(n_calls * b, seed=b)
        calls = [[p[i * b:(i + 1) * b] if b > 1 else p[i] for p in stacked] for i in range(n_calls)]
        g = torch.Generator().manual_seed(b)
        shape = (b,) if b > 1 else ()
        weights = [(torch.randn(*shape, N, generator=g, dtype=torch.float64),
                    torch.randn(*shape, N, N, generator=g, dtype=torch.float64)) for _ in range(n_calls)]
        ref = None
        for s in solvers:
            fwd = run_cell(layers[s], calls, False, weights)
            both = run_cell(layers[s], calls, True, weights)
            if s == "Clarabel":
                ref = both
            du = float((both["u"] - ref["u"]).abs().max())
            rel = (both["g"] - ref["g"]).norm(dim=1) / ref["g"].norm(dim=1).clamp_min(1e-12)
            total = n_calls * b
            rows.append((s, b, 1e3 * fwd["s"] / total, 1e3 * both["s"] / total, du, float(rel.median()),
                         float(rel.max()), int((rel > KINK).sum()), total, min(fwd["low"], both["low"]),
                         dict(layers[s].fallbacks)))
            print(f"  done {s} B={b}", file=sys.stderr, flush=True)

    print(f"n={N}, m={M}, {CLASSES} classes with quotas; {args.problems} problems per cell; torch threads "
          f"{torch.get_num_threads()}\n")
    print("| backend | B | forward ms/problem | fwd+bwd ms/problem | fwd+bwd speed-up vs Clarabel | "
          f"max abs u diff | rel grad diff: median | max | problems > {KINK:g} | min Zn, Zo, u | fallbacks |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {(r[1]): r[3] for r in rows if r[0] == "Clarabel"}
    for s, b, f, fb, du, med, rel, kinks, total, low, fall in rows:
        print(f"| {s} | {b} | {f:.1f} | {fb:.1f} | {base[b] / fb:.2f}x | {du:.1e} | {med:.1e} | {rel:.1e} "
              f"| {kinks}/{total} | {low:.1e} | {fall or 0} |")
    print("\n| backend | layer build s |\n| --- | --- |")
    for s in solvers:
        print(f"| {s} | {builds[s]:.2f} |")


if __name__ == "__main__":
    main()
