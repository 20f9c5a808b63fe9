"""The value evaluator, sklearn vs torch: same accuracy on the same subsets, and which is faster where.

Usage::

    .venv/bin/python benchmarks/evaluator.py                    # agreement tables + CPU speed table
    .venv/bin/python benchmarks/evaluator.py --quick            # 1 seed, digits only, sizes 50,500
    .venv/bin/python benchmarks/evaluator.py --no-agreement --sizes 50,500,5000,50000
    .venv/bin/python benchmarks/evaluator.py --device cuda      # the torch rows on a GPU

Agreement: subsets of random (stratified) and greedy facility-location selection at
5-30 percent of the candidates, the evaluator trained on each with the same seed by
sklearn's ``MLPClassifier`` and by ``core.mlp.TorchMLPClassifier``; test accuracy mean
+- std over the seeds, the largest per-subset difference, and the seconds each took.
Data: digits (standardised pixels, 10 percent of train labels flipped), the project's
2-D mixture (10 percent flipped) and a 10-class 64-d Gaussian mixture (10 percent
flipped, overlapping classes so that accuracy is not 100 percent).

Speed: one evaluator fit on ``n`` points of the 64-d mixture, both evaluators
alternated ``--reps`` times in one process (median reported). sklearn uses the BLAS
threads of the process (``--threads`` sets them and torch's); the torch fit uses
``--fit-threads`` (1, its default; 0: the process's). Sizes above
``--full-max`` train ``--epochs`` epochs only (the stop rule is the same in both, so the
time per epoch is the comparison). This machine is shared: read ratios, not seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import BenchData, _split, digits_data, mixture_data  # noqa: E402
from core.evaluate import subset_value  # noqa: E402

BUDGETS = (0.05, 0.1, 0.2, 0.3)
SELECTORS = ("random", "facility_location")


def mix64_data(n: int = 4000, noise: float = 0.1, scale: float = 0.45) -> BenchData:
    """10-class 64-d Gaussian mixture; class centres ``N(0, scale^2)`` so the classes overlap."""
    x, y = mix64(n, scale=scale, seed=0)
    return _split(x.astype(np.float64), y, 10, noise, f"mixture64 noise={noise:.0%}")


def mix64(n: int, *, scale: float = 0.45, seed: int = 0, dim: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(n, dim)`` float32 and labels of the 10-class mixture."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, scale, (10, dim))
    y = rng.integers(0, 10, n)
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y.astype(np.int64)


def subsets(d: BenchData, seed: int) -> dict[tuple[str, float], np.ndarray]:
    """``(selector, budget) -> (N,) bool`` selected candidates, for one seed."""
    from core.valuation import SelectionTask, get_method

    out = {}
    for budget in BUDGETS:
        task = SelectionTask(d.x_train, d.y_train, d.x_val, d.y_val, n_classes=d.n_classes, budget=budget,
                             seed=seed)
        for name in SELECTORS:
            out[name, budget] = get_method(name).fit(task).result.selected
    return out


def agreement(d: BenchData, seeds: int, device: str) -> None:
    """Print the accuracy table, sklearn vs torch, of one dataset."""
    rows: dict[tuple[str, float], dict[str, list[float]]] = {}
    for seed in range(seeds):
        for key, sel in subsets(d, seed).items():
            cell = rows.setdefault(key, {"sklearn": [], "torch": [], "t_sklearn": [], "t_torch": []})
            for ev in ("sklearn", "torch"):
                t0 = time.perf_counter()
                acc = subset_value(d.x_train[sel], d.y_train[sel], d.x_test, d.y_test, n_classes=d.n_classes,
                                   seed=seed, evaluator=ev, device=device if ev == "torch" else "cpu")
                cell["t_" + ev].append(time.perf_counter() - t0)
                cell[ev].append(acc)
    print(f"\n### {d.name}: train {len(d.y_train)}, test {len(d.y_test)}; {seeds} seeds; torch on {device}\n")
    print("| subset | budget | k | sklearn acc % | torch acc % | max abs diff (pts) | sklearn s | torch s |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, budget), c in rows.items():
        k = int(round(budget * len(d.y_train)))
        diff = max(abs(a - b) for a, b in zip(c["sklearn"], c["torch"], strict=True)) * 100
        print(f"| {name} | {budget:.0%} | {k} | {_ms(c['sklearn'])} | {_ms(c['torch'])} | {diff:.1f} | "
              f"{sum(c['t_sklearn']):.1f} | {sum(c['t_torch']):.1f} |", flush=True)
    ts = sum(sum(c["t_sklearn"]) for c in rows.values())
    tt = sum(sum(c["t_torch"]) for c in rows.values())
    print(f"\ntotal fit+predict: sklearn {ts:.1f} s, torch {tt:.1f} s (torch/sklearn {tt / ts:.2f})")


def _ms(v: list[float]) -> str:
    return f"{np.mean(v) * 100:.1f} ± {np.std(v, ddof=1) * 100 if len(v) > 1 else 0.0:.1f}"


def fit_time(
    ev: str, x: np.ndarray, y: np.ndarray, epochs: int, device: str, full: bool, threads: int | None = 1
) -> tuple[float, int]:
    """(seconds, epochs run) of one fit; ``full`` keeps the stop rule, else exactly ``epochs``."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from core.mlp import TorchMLPClassifier

    t0 = time.perf_counter()
    if ev == "sklearn":
        extra = {} if full else {"tol": 0.0, "n_iter_no_change": 10**9}
        clf = MLPClassifier(hidden_layer_sizes=(128,), alpha=1e-3, max_iter=epochs, random_state=0, **extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x, y)
    else:
        import core.mlp as mlp

        saved = mlp.N_ITER_NO_CHANGE
        mlp.N_ITER_NO_CHANGE = saved if full else 10**9  # same stop rule as sklearn's above
        try:
            clf = TorchMLPClassifier(max_iter=epochs, seed=0, device=device, threads=threads).fit(x, y)
            if device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
        finally:
            mlp.N_ITER_NO_CHANGE = saved
    return time.perf_counter() - t0, int(clf.n_iter_)


def speed(
    sizes: list[int], reps: int, epochs: int, full_max: int, device: str, fit_threads: int | None
) -> None:
    """Print the speed table: ms per epoch and seconds per fit, sklearn vs torch, per size."""
    import torch
    from threadpoolctl import threadpool_info

    blas = max((p["num_threads"] for p in threadpool_info()), default=0)
    torch_fit = fit_threads if fit_threads is not None else torch.get_num_threads()
    print(f"\n### Evaluator speed (sklearn: {blas} BLAS threads; torch on {device}, {torch_fit} threads "
          f"in fit; median of {reps})\n")
    print("| n | epochs | sklearn s | torch s | sklearn ms/epoch | torch ms/epoch | torch / sklearn |")
    print("|---|---|---|---|---|---|---|")
    fit_time("torch", *mix64(64), 2, device, False, fit_threads)  # warm-up: first-call costs out of the rows
    for n in sizes:
        x, y = mix64(n, seed=1)
        full = n <= full_max
        times: dict[str, list[tuple[float, int]]] = {"sklearn": [], "torch": []}
        for _ in range(reps):
            for ev in ("sklearn", "torch"):
                times[ev].append(fit_time(ev, x, y, 300 if full else epochs, device, full, fit_threads))
        med = {ev: statistics.median(t for t, _ in v) for ev, v in times.items()}
        ep = {ev: v[0][1] for ev, v in times.items()}
        per = {ev: med[ev] / ep[ev] * 1000 for ev in med}
        print(f"| {n} | {ep['sklearn']}/{ep['torch']}{'' if full else ' (capped)'} | {med['sklearn']:.2f} | "
              f"{med['torch']:.2f} | {per['sklearn']:.1f} | {per['torch']:.1f} | "
              f"{per['torch'] / per['sklearn']:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 seed, digits only, sizes 50,500")
    ap.add_argument("--datasets", default="digits10,mixture10,mix64")
    ap.add_argument("--no-agreement", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--sizes", default="50,500,5000,50000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5, help="epochs of the sizes above --full-max")
    ap.add_argument("--full-max", type=int, default=5000, help="largest size trained to the stop rule")
    ap.add_argument("--threads", type=int, default=0, help="torch and BLAS threads (0: as they are)")
    ap.add_argument("--device", default="cpu", help="device of the torch evaluator")
    ap.add_argument("--fit-threads", type=int, default=1,
                    help="TorchMLPClassifier(threads=...) in the speed table (0: the process's threads)")
    args = ap.parse_args()
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    makers = {
        "digits10": lambda: digits_data(0.1), "mixture10": lambda: mixture_data(0.1), "mix64": mix64_data,
    }
    names = ["digits10"] if args.quick else args.datasets.split(",")
    if not args.no_agreement:
        for name in names:
            agreement(makers[name](), 1 if args.quick else args.seeds, args.device)
    if not args.no_speed:
        sizes = [50, 500] if args.quick else [int(s) for s in args.sizes.split(",") if s]
        speed(sizes, 1 if args.quick else args.reps, args.epochs, args.full_max, args.device,
              args.fit_threads or None)


if __name__ == "__main__":
    main()
