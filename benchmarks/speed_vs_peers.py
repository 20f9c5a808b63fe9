"""``hostcp select`` against its peers on the same rows, in one run: time, peak RSS, where time goes.

Usage::

    .venv/bin/python benchmarks/speed_vs_peers.py                         # 1k, 5k, 20k, 100k, 1M
    .venv/bin/python benchmarks/speed_vs_peers.py --sizes 1000,5000 --limit 600
    .venv/bin/python benchmarks/speed_vs_peers.py --sizes 100000 --peers none --set scale.solve_group=16

Data: a 10-class Gaussian mixture, 64-d, 10 percent of labels flipped, budget 10
percent, written once per size as Parquet. ``hostcp select`` runs as a user runs
it (fresh process: load, standardise, detect, select, write ``selection.csv``);
each peer runs in a fresh process of its own on the same rows (standardised,
the same stratified 20 percent held out as ``hostcp select`` holds out):
Data-OOB (400 trees), cleanlab (5-fold out-of-fold logistic regression, then
``find_label_issues``), greedy facility location. Peak RSS is each process's own
(``os.wait4``). A command that runs past ``--limit`` seconds is stopped and shown
as ``>limit``. The HOST-CP breakdown comes from the run's info in the project
database (seconds of embedding + detection, set-up, learning passes, online
read-out pass, greedy read-out and swap passes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import markdown  # noqa: E402

HOSTCP = str(Path(sys.executable).with_name("hostcp"))
PEERS = ("data_oob", "cleanlab", "facility_location")


def make_parquet(path: Path, n: int, *, dim: int = 64, classes: int = 10, seed: int = 0) -> None:
    """The issue's mixture: class means N(0, 2^2), unit noise, 10 percent of labels flipped."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = (rng.normal(0, 2.0, (classes, dim)).astype(np.float32)[y]
         + rng.standard_normal((n, dim), dtype=np.float32))
    flip = rng.random(n) < 0.1
    y = np.where(flip, (y + rng.integers(1, classes, n)) % classes, y)
    df = pd.DataFrame(x, columns=[f"f{i}" for i in range(dim)])
    df["label"] = y
    df.to_parquet(path, index=False)


def timed(cmd: list[str], limit: float) -> tuple[float, float, int, str]:
    """``(seconds, peak RSS GiB, exit code, stderr tail)`` of one fresh process; killed past ``limit``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        deadline = t0 + limit
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                status = -9
                break
            time.sleep(0.2)
        err.seek(0)
        tail = err.read()[-400:]
    code = os.waitstatus_to_exitcode(status) if status != -9 else -9
    proc.returncode = code
    return time.perf_counter() - t0, usage.ru_maxrss / 1024**2, code, tail


def run_peer(name: str, data: str, budget: float) -> None:
    """One peer on the rows ``hostcp select`` uses as candidates (called in its own process)."""
    from core.data.dataset import make_split

    df = pd.read_parquet(data)
    y = df.pop("label").to_numpy()
    x = df.to_numpy(np.float32)
    split = make_split(y, val_fraction=0.2, test_fraction=0.0, seed=0)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    x = (x - mu) / sd
    xt, yt, xv, yv = x[split.train], y[split.train], x[split.val], y[split.val]
    if name == "cleanlab":
        from core.mislabel.oof import cleanlab_flags

        cleanlab_flags(xt, yt, n_classes=10, folds=5, seed=0)
        return
    from core.valuation import SelectionTask, get_method

    task = SelectionTask(xt, yt, xv, yv, n_classes=10, budget=budget, seed=0)
    settings = {"n_estimators": 400} if name == "data_oob" else {}
    get_method(name, **settings).fit(task)


def hostcp_breakdown(store: Path) -> dict[str, float]:
    """Seconds by step from the newest run's info (JSON) in the project database."""
    with sqlite3.connect(store) as db:
        row = db.execute("SELECT info FROM runs ORDER BY id DESC LIMIT 1").fetchone()
    info = json.loads(row[0]) if row else {}
    return {k.removeprefix("seconds_"): v for k, v in info.items() if k.startswith("seconds_")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,20000,100000,1000000")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated, or none")
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--limit", type=float, default=1800.0, help="seconds before a command is stopped")
    ap.add_argument("--set", action="append", default=[], help="HostCPConfig KEY=VALUE for hostcp select")
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        run_peer(args.peer, args.data, args.budget)
        return
    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    rows, steps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"mix{n}.parquet"
            make_parquet(data, n)
            out = Path(tmp) / f"out{n}"
            store = out / "hostcp.sqlite"  # its own database, read below for the breakdown
            cmd = [HOSTCP, "select", str(data), "--out", str(out), "--budget", str(args.budget),
                   "--store", str(store)]
            for s in args.set:
                cmd += ["--set", s]
            env_home = {"HOSTCP_HOME": str(Path(tmp) / "home")}
            os.environ.update(env_home)
            sec, rss, code, err = timed(cmd, args.limit)
            row = {"points": n, "hostcp select": _cell(sec, code, args.limit),
                   "hostcp RSS GiB": round(rss, 2)}
            if code not in (0, -9):
                print(f"hostcp select failed at {n}: {err}", file=sys.stderr)
            if code == 0:
                steps.append({"points": n, "total": round(sec, 1), **hostcp_breakdown(store)})
            for peer in peers:
                sec, rss, code, err = timed(
                    [sys.executable, __file__, "--peer", peer, "--data", str(data), "--budget",
                     str(args.budget)], args.limit)
                if code not in (0, -9):
                    print(f"{peer} failed at {n}: {err}", file=sys.stderr)
                row[peer] = _cell(sec, code, args.limit)
                row[f"{peer} RSS GiB"] = round(rss, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n## End to end (seconds; peak RSS of each process)\n")
    print(markdown(pd.DataFrame(rows)))
    if steps:
        print("\n## Where hostcp select's time goes (seconds; the rest of total is start-up, load, store, "
              "embedding, detection and writing)\n")
        print(markdown(pd.DataFrame(steps)))


def _cell(seconds: float, code: int, limit: float) -> str:
    if code == -9:
        return f">{limit:.0f}"
    return f"{seconds:.1f}" if code == 0 else f"failed ({code})"


if __name__ == "__main__":
    main()
