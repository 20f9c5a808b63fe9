"""GPU check: points per second of HOST-CP selection, kNN and the torch evaluator, CPU vs CUDA, in one table.

Usage (``benchmarks/gpu_check.sh`` wraps this with the environment set-up)::

    python benchmarks/gpu_check.py                # full: kNN 20k/1M, evaluator, HOST-CP 2k/20k/1M
    python benchmarks/gpu_check.py --quick        # tiny sizes, for a machine without a GPU
    python benchmarks/gpu_check.py --budget-s 200 # total wall-clock budget of the rows

Without CUDA it says "no CUDA" and runs the CPU rows only. Every row has a time cap
that fits the budget: a HOST-CP row stopped by its cap reports the rate of the part it
did (progress fraction x points / seconds), marked "partial". HOST-CP rows run in a
child process per device (a hung or slow row is killed there, never stalls the table).
Checks, CUDA against CPU on the same data and seed:

- kNN: recall of the CUDA neighbours among the CPU ones (both exact at 20k; at 1M the
  CPU search may be faiss IVF, approximate, so the recall there is of the CPU one);
- evaluator: same initial weights and batches on both devices, so test accuracy
  within 1 point;
- HOST-CP: overlap of the selected sets and the evaluator's test accuracy of each
  (within 2 points) at the largest size both devices finish.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_CLASSES, DIM, FLIP = 10, 64, 0.1
SETUP_S = 15.0  # a HOST-CP child's imports, outside the rows' caps
SETUP_PER_ROW_S = 5.0  # data, task checks and the method's set-up before its first progress check


def mixture(n: int, seed: int = 0, scale: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 64)`` float32 points of a 10-class overlapping Gaussian mixture and their true labels."""
    rng = np.random.default_rng(1234)  # the same centres for every split
    centres = rng.normal(0, scale, (N_CLASSES, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    x = centres[y]
    x += rng.standard_normal((n, DIM), dtype=np.float32)
    return x, y


def task_data(n: int) -> dict[str, np.ndarray]:
    """Train (10 % flipped labels, ~80 % of them flagged), clean validation and test splits."""
    x, y_true = mixture(n, seed=1)
    rng = np.random.default_rng(2)
    flip = rng.random(n) < FLIP
    y = np.where(flip, (y_true + rng.integers(1, N_CLASSES, n)) % N_CLASSES, y_true)
    flagged = (flip & (rng.random(n) < 0.8)) | (rng.random(n) < 0.02)
    xv, yv = mixture(1000, seed=3)
    xt, yt = mixture(5000, seed=4)
    return {"x": x, "y": y, "flagged": flagged, "xv": xv, "yv": yv, "xt": xt, "yt": yt}


class Deadline:
    """A progress reporter that keeps the last fraction and cancels the job past a deadline."""

    def __init__(self, seconds: float) -> None:
        self.until = time.perf_counter() + seconds
        self.fraction = 0.0

    def report(self, stage: str, fraction: float, message: str = "") -> None:
        self.fraction = max(self.fraction, float(fraction))

    def check_cancelled(self) -> None:
        from core.errors import JobCancelled

        if time.perf_counter() > self.until:
            raise JobCancelled("time cap of the row reached")


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------- rows
def knn_rows(sizes: list[int], queries: int, devices: list[str], cap: float) -> list[dict]:
    """Self-kNN (k=10) at the first size; ``queries`` queries against the larger sizes."""
    try:
        from core.knn import knn
    except ImportError as e:
        return [{"part": "knn", "n": 0, "device": "-", "status": f"skipped: {e}"}]
    rows, ref = [], {}
    for n in sizes:
        x, _ = mixture(n, seed=5)
        q = None if n == sizes[0] else x[:queries]
        n_q = n if q is None else queries
        for dev in devices:
            t0 = time.perf_counter()
            _, idx = knn(x, 10, queries=q, device=dev)
            _sync(dev)
            dt = time.perf_counter() - t0
            row = {"part": "knn k=10" + ("" if q is None else f" ({queries} queries)"), "n": n, "device": dev,
                   "seconds": dt, "rate": n_q / dt, "status": "complete"}
            if dev == "cpu":
                ref[n] = idx
            elif n in ref:
                recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(idx, ref[n], strict=True)])
                row["check"] = f"recall vs CPU {recall:.3f} " + ("OK" if recall >= 0.99 else "(CPU approx?)")
            rows.append(row)
            if dt > cap:
                return rows
    return rows


def evaluator_rows(n_speed: int, epochs: int, n_check: int, devices: list[str]) -> list[dict]:
    """Torch MLP epochs per second at ``n_speed`` points, and a full fit at ``n_check`` per device."""
    import core.mlp as mlp
    from core.evaluate import subset_value

    rows, accs = [], {}
    x, y = mixture(n_speed, seed=6)
    for dev in devices:
        saved, mlp.N_ITER_NO_CHANGE = mlp.N_ITER_NO_CHANGE, 10**9  # exactly `epochs` epochs
        try:
            mlp.TorchMLPClassifier(max_iter=1, device=dev).fit(x[:500], y[:500])  # warm-up
            t0 = time.perf_counter()
            mlp.TorchMLPClassifier(max_iter=epochs, device=dev).fit(x, y)
            _sync(dev)
            dt = time.perf_counter() - t0
        finally:
            mlp.N_ITER_NO_CHANGE = saved
        rows.append({"part": f"torch MLP ({epochs} epochs)", "n": n_speed, "device": dev, "seconds": dt,
                     "rate": n_speed * epochs / dt, "status": "complete"})
    d = task_data(n_check)
    for ev, dev in [("sklearn", "cpu")] + [("torch", dev) for dev in devices]:
        t0 = time.perf_counter()
        acc = subset_value(d["x"], d["y"], d["xt"], d["yt"], n_classes=N_CLASSES, seed=0, evaluator=ev,
                           device=dev)
        dt = time.perf_counter() - t0
        accs[ev, dev] = acc
        row = {"part": f"{ev} MLP full fit", "n": n_check, "device": dev, "seconds": dt,
               "rate": n_check / dt, "status": "complete", "check": f"acc {acc * 100:.1f}"}
        if (ev, dev) != ("sklearn", "cpu"):
            diff = abs(acc - accs["sklearn", "cpu"]) * 100
            row["check"] += f", vs sklearn {diff:.1f} pts " + ("OK" if diff <= 1.0 else "DIFF")
        rows.append(row)
    return rows


def hostcp_child(device: str, sizes: list[int], caps: list[float], out_dir: str) -> None:
    """In a child process: HOST-CP on each size with its cap; one JSON line per row on stdout."""
    import torch

    from core.errors import JobCancelled
    from core.valuation import SelectionTask, get_method

    for n, cap in zip(sizes, caps, strict=True):
        d = task_data(n)
        task = SelectionTask(d["x"], d["y"], d["xv"], d["yv"], n_classes=N_CLASSES, budget=0.1, seed=0,
                             flagged=d["flagged"], suspect=d["flagged"] * 0.9, device=device)
        rep = Deadline(cap)
        t0 = time.perf_counter()
        row = {"part": "HOST-CP select (10 %)", "n": n, "device": device}
        try:
            res = get_method("hostcp").fit(task, reporter=rep).result
            if device == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            np.save(Path(out_dir) / f"sel-{device}-{n}.npy", res.selected)
            row.update(seconds=dt, rate=n / dt, status="complete")
        except JobCancelled:
            dt = time.perf_counter() - t0
            status = f"partial {rep.fraction:.0%} (cap {cap:.0f} s)"
            row.update(seconds=dt, rate=n * rep.fraction / dt, status=status)
        if device == "cuda":
            row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print("ROW " + json.dumps(row), flush=True)


def hostcp_rows(sizes: list[int], caps: list[float], devices: list[str], share: float) -> list[dict]:
    """Run :func:`hostcp_child` per device (killed after ``share`` seconds), then compare the subsets."""
    try:
        import cvxpylayers  # noqa: F401

        import core.valuation  # noqa: F401
    except ImportError as e:
        return [{"part": "HOST-CP select", "n": 0, "device": "-", "status": f"skipped: {e}"}]
    from core.evaluate import subset_value

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for dev in devices:
            args = [sys.executable, __file__, "--child", dev, "--sizes", ",".join(map(str, sizes)),
                    "--caps", ",".join(f"{c:.1f}" for c in caps), "--out", tmp]
            limit = share
            done = set()
            try:
                out = subprocess.run(args, capture_output=True, text=True, timeout=limit).stdout
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            for line in out.splitlines():
                if line.startswith("ROW "):
                    rows.append(json.loads(line[4:]))
                    done.add(rows[-1]["n"])
            rows += [{"part": "HOST-CP select (10 %)", "n": n, "device": dev,
                      "status": f"killed: the device's {limit:.0f} s were spent"}
                     for n in sizes if n not in done]
        both = [n for n in sizes if all((Path(tmp) / f"sel-{dv}-{n}.npy").exists() for dv in devices)]
        if len(devices) == 2 and both:
            n = both[-1]
            d = task_data(n)
            sel = {dv: np.load(Path(tmp) / f"sel-{dv}-{n}.npy") for dv in devices}
            overlap = (sel["cpu"] & sel["cuda"]).sum() / sel["cpu"].sum()
            acc = {dv: subset_value(d["x"][s], d["y"][s], d["xt"], d["yt"], n_classes=N_CLASSES, seed=0,
                                    evaluator="torch", device="cuda") for dv, s in sel.items()}
            diff = abs(acc["cpu"] - acc["cuda"]) * 100
            for r in rows:
                if r["n"] == n and r["device"] == "cuda":
                    r["check"] = (f"overlap {overlap:.2f}; acc {acc['cuda'] * 100:.1f} vs CPU "
                                  f"{acc['cpu'] * 100:.1f} " + ("OK" if diff <= 2.0 else "DIFF"))
    return rows


# ------------------------------------------------------------------------------------ table
def print_table(rows: list[dict], title: str) -> None:
    """The markdown table of every row."""
    print(f"\n### {title}\n\n| part | n | device | seconds | points/s | status | check |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        sec = f"{r['seconds']:.2f}" if "seconds" in r else "-"
        rate = f"{r['rate']:,.0f}" if "rate" in r else "-"
        extra = f" (GPU peak {r['peak_gpu_mb']:.0f} MB)" if "peak_gpu_mb" in r else ""
        print(f"| {r['part']} | {r['n']:,} | {r['device']} | {sec} | {rate} | {r['status']}{extra} | "
              f"{r.get('check', '')} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a CPU-only machine)")
    ap.add_argument("--budget-s", type=float, default=270.0, help="wall-clock budget of all rows")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="", help="HOST-CP sizes (default 2000,20000,1000000)")
    ap.add_argument("--caps", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        hostcp_child(args.child, [int(s) for s in args.sizes.split(",")],
                     [float(c) for c in args.caps.split(",")], args.out)
        return
    t_start = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available()
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    gpu = torch.cuda.get_device_name(0) if cuda else "no CUDA: CPU rows only"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; {gpu}")
    if args.quick:
        knn_sizes, queries, ev = [2000, 20000], 1000, (2000, 3, 300)
        sizes, shares = [300, 2000], [0.6, 0.4]
    else:
        knn_sizes, queries, ev = [20000, 1000000], 10000, (100000, 3, 2000)
        sizes, shares = [2000, 20000, 1000000], [0.4, 0.3, 0.3]
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
        shares = [1 / len(sizes)] * len(sizes)
    rows = knn_rows(knn_sizes, queries, devices, cap=0.15 * args.budget_s)
    rows += evaluator_rows(*ev, devices)
    print_table(rows, "kNN and evaluator (HOST-CP rows follow)")
    left = args.budget_s - (time.perf_counter() - t_start)
    share = max(left / len(devices), 20.0)  # each device's child process, imports included
    capped = max(share - SETUP_S - SETUP_PER_ROW_S * len(sizes), 5.0 * len(sizes))  # set-up is outside caps
    rows += hostcp_rows(sizes, [capped * s for s in shares], devices, share)
    print_table(rows, f"GPU check: {gpu}")
    print(f"\n(total {time.perf_counter() - t_start:.0f} s of a {args.budget_s:.0f} s budget)")


if __name__ == "__main__":
    main()
