"""What the mislabel detector costs as the data grows: seconds per part and peak memory, 20k to 1M points.

Usage::

    .venv/bin/python benchmarks/detector_speed.py                        # 20k, 100k, 1M points
    .venv/bin/python benchmarks/detector_speed.py --sizes 20000 --parts oof
    .venv/bin/python benchmarks/detector_speed.py --sizes 100000 --spread 0.25 --uncapped
    .venv/bin/python benchmarks/detector_speed.py --sizes 20000,100000 --parts oof --oof-models logistic,auto

Data: a 10-class Gaussian mixture in 64-d (class centres ``N(0, spread^2)``, unit
noise; ``spread=2`` is the mixture of ``benchmarks/cli_speed.py``, easy to
separate; ``0.25`` is hard), 10 percent of labels flipped to another class.
Every size runs in a fresh process, so peak RSS is that size's alone; it counts
the data (``N x 64`` float32) as well as the detector's own arrays.

``--parts all`` runs :func:`core.mislabel.detect_mislabels` as the engine does and
times its parts from inside (the out-of-fold models, the kNN search, the kNN
signals, cleanlab's ``find_label_issues``); ``--parts oof`` runs only the
out-of-fold models and cleanlab on their probabilities (without the kNN part,
which ``core.mislabel.signals`` owns). ``--uncapped`` trains each fold's model on
all the other folds' rows (what the detector did before ``oof_max_rows``), to
compare time and quality against the capped default in the same run. ``--oof-models
logistic,auto`` runs each size with the logistic model alone and with the default blend of
logistic regression and trees (``core.mislabel.trees``), to show what the trees cost.
AUROC is of the detector's score (``--parts all``) or of ``1 - p[y]`` (``oof``)
against the flipped points; F1 of the flags.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mixture(n: int, *, dim: int = 64, classes: int = 10, spread: float = 2.0, rate: float = 0.1,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x (N, dim) float32, noisy labels (N,), flipped (N,) bool)``, made in float32 chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 1 << 17):
        stop = min(n, start + (1 << 17))
        x[start:stop] = centres[y[start:stop]] + rng.standard_normal((stop - start, dim), dtype=np.float32)
    flipped = rng.random(n) < rate
    noisy = np.where(flipped, (y + rng.integers(1, classes, n)) % classes, y)
    return x, noisy.astype(np.int64), flipped


def _rss_gb(field: str) -> float:
    """``VmRSS`` or ``VmHWM`` (peak) of this process in GB, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _Parts:
    """Inclusive seconds of named functions, wrapped where ``detect_mislabels`` looks them up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, module, name: str, label: str) -> None:
        fn = getattr(module, name)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0

        setattr(module, name, timed)


def _child(n: int, parts: str, spread: float, uncapped: bool, seed: int, model: str = "auto") -> dict:
    from sklearn.metrics import f1_score, roc_auc_score

    import core.mislabel.detector as det
    from core.mislabel import DetectorConfig, detect_mislabels
    from core.mislabel.oof import cleanlab_issues, compute_oof, validate_inputs

    x, y, flipped = mixture(n, spread=spread, seed=seed)
    rss_data = _rss_gb("VmRSS")
    exact_peak = _reset_peak()
    cap = None if uncapped else DetectorConfig().oof_max_rows
    timer = _Parts()
    t0 = time.perf_counter()
    if parts == "all":
        timer.wrap(det, "compute_oof", "out-of-fold models")
        timer.wrap(det, "neighbours", "kNN search")
        for name in ("knn_label_distribution", "representation_cost", "reverse_knn_disagreement"):
            timer.wrap(det, name, "kNN signals")
        timer.wrap(det, "cleanlab_issues", "cleanlab")
        cfg = DetectorConfig(oof_max_rows=cap, oof_model=model)
        res = detect_mislabels(x, y, n_classes=10, seed=seed, config=cfg)
        score, flags = res.score, res.flagged
    else:
        xx, yy = validate_inputs(x, y, 10, 5)
        t1 = time.perf_counter()
        proba = compute_oof(xx, yy, 10, 5, seed, max_fit_rows=cap, model=model)
        t2 = time.perf_counter()
        flags = cleanlab_issues(yy, proba)
        timer.seconds = {"out-of-fold models": t2 - t1, "cleanlab": time.perf_counter() - t2}
        score = 1.0 - proba[np.arange(n), yy]
    total = time.perf_counter() - t0
    return {
        "points": n, "oof model": model, "oof rows/fold": "all" if cap is None else f"<= {cap:,}",
        **{k: round(v, 2) for k, v in timer.seconds.items()},
        "other": round(total - sum(timer.seconds.values()), 2), "total s": round(total, 2),
        "RSS before GB": round(rss_data, 2),
        "peak RSS GB": round(_rss_gb("VmHWM"), 2) if exact_peak else f"{_rss_gb('VmHWM'):.2f} (process)",
        "AUROC": round(float(roc_auc_score(flipped, score)), 4),
        "F1": round(float(f1_score(flipped, flags)), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,100000,1000000")
    ap.add_argument("--parts", default="all", choices=["all", "oof"])
    ap.add_argument("--spread", type=float, default=2.0, help="scale of the class centres (2: easy)")
    ap.add_argument("--uncapped", action="store_true", help="also run with every fold's model on all rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--oof-models", default="auto",
                    help="out-of-fold models to run, comma-separated: auto (the default), logistic")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-cap", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.parts, args.spread, args.no_cap, args.seed,
                                args.oof_models)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        for no_cap, model in ((c, m) for c in ((False, True) if args.uncapped else (False,))
                              for m in args.oof_models.split(",")):
            cmd = [sys.executable, __file__, "--child", str(n), "--parts", args.parts,
                   "--spread", str(args.spread), "--seed", str(args.seed),
                   "--oof-models", model] + (["--no-cap"] if no_cap else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    print(f"\nDetector parts (seconds), --parts {args.parts}, spread {args.spread}, seed {args.seed}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")


if __name__ == "__main__":
    main()
