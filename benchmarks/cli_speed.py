"""End-to-end time of ``hostcp select`` with default settings, as a user runs it.

Usage::

    .venv/bin/python benchmarks/cli_speed.py              # 1,000 and 20,000 points of 64-d features
    .venv/bin/python benchmarks/cli_speed.py --sizes 5000

Each size writes a CSV of a 10-class Gaussian mixture (64 numeric features, 10
percent of labels flipped), then times the whole command in a fresh process:
loading, embedding (standardise), mislabel detection, HOST-CP and writing
``selection.csv``. Targets: 1,000 points under 60 s; 20,000 under 10 minutes.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HOSTCP = str(Path(sys.executable).with_name("hostcp"))


def make_csv(path: Path, n: int, *, dim: int = 64, classes: int = 10, seed: int = 0) -> None:
    """A Gaussian mixture with 10 percent of labels flipped to another class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 2.0, (classes, dim))[y] + rng.normal(0, 1.0, (n, dim))
    flip = rng.random(n) < 0.1
    y = np.where(flip, (y + rng.integers(1, classes, n)) % classes, y)
    df = pd.DataFrame(x.astype(np.float32), columns=[f"f{i}" for i in range(dim)])
    df["label"] = y
    df.to_csv(path, index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,20000")
    ap.add_argument("--budget", default="0.1")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            data = Path(tmp) / f"mix{n}.csv"
            make_csv(data, n)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [HOSTCP, "select", str(data), "--out", str(Path(tmp) / f"out{n}"), "--budget", args.budget],
                capture_output=True, text=True,
            )
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 / 1024
            rows.append({"points": n, "seconds": round(seconds, 1), "points/s": round(n / seconds, 1),
                         "peak RSS so far (GB)": round(rss, 2)})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
