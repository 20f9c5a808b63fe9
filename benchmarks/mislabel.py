"""Mislabel detection benchmark: the project's detector against cleanlab, Data-OOB and KNN-Shapley.

Flips a known share of labels to a different class, runs every detector on the
same features and scores its flags (precision, recall, F1 against the flipped
points) and its continuous score (AUROC).

- ``detector``: ``core.mislabel.detect_mislabels`` (flags at its own noise-rate estimate).
- ``cleanlab``: cleanlab's ``find_label_issues`` on out-of-fold logistic-regression
  probabilities (the detector's linear model, same folds); AUROC of cleanlab's label
  quality score.
- ``cleanlab_auto``: the same on the detector's own out-of-fold probabilities (logistic
  blended with trees, ``model="auto"``), to show what the blend alone gives cleanlab.
- ``data_oob``: Data-OOB values (bagged decision trees, Kwon & Zou 2023); the lowest are flagged.
- ``knn_shapley``: exact KNN-Shapley values (Jia et al. 2019) with the noisy training set itself
  as the validation set, each point left out of its own neighbour list (there is no clean set
  to value against in detection); the lowest are flagged.

The value baselines flag as many points as the detector estimates are mislabelled (the same
rule), so their F1 compares their ranking, not a count. Times include the out-of-fold model
for ``detector`` and ``cleanlab``; everything runs on one thread.

Usage::

    .venv/bin/python benchmarks/mislabel.py                      # digits + mixture, 10/30%, 3 seeds
    .venv/bin/python benchmarks/mislabel.py --datasets mixture --seeds 1 --rates 0.3
    nice -n 19 .venv/bin/python benchmarks/mislabel.py --datasets nonlinear,digits,mixture  # README
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.data.demos import flip_labels  # noqa: E402
from core.mislabel import detect_mislabels, out_of_fold_proba  # noqa: E402
from core.mislabel.oof import cleanlab_issues  # noqa: E402

METHODS = ("detector", "cleanlab", "cleanlab_auto", "data_oob", "knn_shapley")


def load(name: str, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, n_classes)``: digits as standardised 64-d pixels, the 2-D mixture demo, or
    ``nonlinear`` (:func:`core.data.demos.nonlinear_classes`: 3,000 points, 10 classes in 40-d,
    three blobs per class among the others' and concentric rings, so no linear model
    separates them; drawn at the run's seed)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
        x = (x - x.mean(0)) / (x.std(0) + 1e-8)
        return x.astype(np.float32), y.astype(np.int64), 10
    if name == "mixture":
        from core.data.demos import load_demo

        d = load_demo("mixture", seed=seed)
        return d.features, d.labels, d.n_classes
    if name == "nonlinear":
        from core.data.demos import nonlinear_classes

        x, y = nonlinear_classes(3000, seed=seed)
        return x, y, 10
    raise SystemExit(f"unknown dataset {name!r}; use digits, mixture or nonlinear")


def data_oob_values(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Data-OOB: the engine's implementation when present, else bagged trees here."""
    try:
        from core.valuation.data_oob import data_oob_values as engine_oob

        return engine_oob(x, y, n_estimators=200, seed=seed)
    except ImportError:
        from sklearn.ensemble import BaggingClassifier
        from sklearn.tree import DecisionTreeClassifier

        bag = BaggingClassifier(DecisionTreeClassifier(), n_estimators=200, random_state=seed)
        bag.fit(x, y)
        hits, counts = np.zeros(len(y)), np.zeros(len(y))
        for est, in_bag in zip(bag.estimators_, bag.estimators_samples_, strict=True):
            oob = np.ones(len(y), bool)
            oob[in_bag] = False
            hits[oob] += bag.classes_[est.predict(x[oob]).astype(int)] == y[oob]
            counts[oob] += 1
        return np.where(counts > 0, hits / np.maximum(counts, 1), 0.5)


def knn_shapley_self(x: np.ndarray, y: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact KNN-Shapley (Jia et al. 2019) with every training point as a validation point.

    Validation point ``j`` values the other points (``j`` itself left out), sorted by distance:
    ``s_M = 1[y_M = y_j] / M``, ``s_i = s_{i+1} + (1[y_i = y_j] - 1[y_{i+1} = y_j]) / k *
    min(k, i) / i``; values are averaged over ``j``.
    """
    from sklearn.metrics import pairwise_distances

    n = len(y)
    m = n - 1
    pos = np.arange(1, m, dtype=np.float64)
    coef = np.minimum(k, pos) / (k * pos)
    total = np.zeros(n)
    for s in range(0, n, 256):
        d = pairwise_distances(x[s:s + 256], x)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        order = np.argsort(d, axis=1, kind="stable")[:, :m]
        match = (y[order] == y[s:s + 256, None]).astype(np.float64)
        diffs = (match[:, :-1] - match[:, 1:]) * coef
        tail = np.cumsum(diffs[:, ::-1], axis=1)[:, ::-1]
        vals = np.concatenate([tail, np.zeros((len(d), 1))], 1) + match[:, -1:] / m
        np.add.at(total, order.ravel(), vals.ravel())
    return total / n


def lowest(values: np.ndarray, count: int) -> np.ndarray:
    """Flag the ``count`` lowest values."""
    flags = np.zeros(len(values), bool)
    flags[np.argsort(values, kind="stable")[:count]] = True
    return flags


def scores(flags: np.ndarray, suspicion: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1 of ``flags`` and AUROC of ``suspicion`` against ``truth``."""
    tp = float((flags & truth).sum())
    p = tp / max(flags.sum(), 1)
    r = tp / max(truth.sum(), 1)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "auroc": roc_auc_score(truth, suspicion),
            "n_flagged": int(flags.sum())}


def run_one(name: str, rate: float, seed: int, methods: tuple[str, ...] = METHODS) -> list[dict]:
    """All methods on one dataset, noise rate and seed; one row per method."""
    from cleanlab.rank import get_label_quality_scores

    x, y_clean, k = load(name, seed)
    y, truth = flip_labels(y_clean, rate=rate, n_classes=k, seed=10_000 + seed)
    rows = []
    t0 = time.perf_counter()
    proba = out_of_fold_proba(x, y, n_classes=k, seed=seed)
    t_oof = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba_auto = out_of_fold_proba(x, y, n_classes=k, seed=seed, model="auto")
    t_auto = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = detect_mislabels(x, y, n_classes=k, seed=seed, pred_probs=proba_auto)
    t_det = time.perf_counter() - t0 + t_auto
    n_flag = int(res.flagged.sum())
    base = {"dataset": name, "noise": rate, "seed": seed}
    rows.append({**base, "method": "detector", **scores(res.flagged, res.score, truth),
                 "est_noise": res.noise_rate, "seconds": t_det})
    for method, p, t_p in (("cleanlab", proba, t_oof), ("cleanlab_auto", proba_auto, t_auto)):
        if method not in methods:
            continue
        t0 = time.perf_counter()
        flags = cleanlab_issues(y, p)
        quality = get_label_quality_scores(y, p)
        t_cl = time.perf_counter() - t0 + t_p
        rows.append({**base, "method": method, **scores(flags, 1 - quality, truth),
                     "est_noise": flags.mean(), "seconds": t_cl})
    for method, fn in (("data_oob", lambda: data_oob_values(x, y, seed)),
                       ("knn_shapley", lambda: knn_shapley_self(x, y))):
        if method not in methods:
            continue
        t0 = time.perf_counter()
        vals = fn()
        secs = time.perf_counter() - t0
        rows.append({**base, "method": method, **scores(lowest(vals, n_flag), -vals, truth),
                     "est_noise": res.noise_rate, "seconds": secs})
    return rows


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run the grid and print mean (std over seeds) per dataset, noise rate and method."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "mixture"],
                    help="digits, mixture, nonlinear (space- or comma-separated)")
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1, 0.3])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run from here (3 gives held-out seeds 3..5; 0..2 tuned the defaults)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--csv", type=Path, default=None, help="also write the per-seed rows here")
    args = ap.parse_args(argv)
    rows = []
    t_start = time.perf_counter()
    # every method on one thread, so times compare (and do not blow up on a busy machine)
    with threadpool_limits(limits=1):
        for name in (d for arg in args.datasets for d in arg.split(",") if d):
            for rate in args.rates:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    rows.extend(run_one(name, rate, seed, tuple(args.methods)))
    df = pd.DataFrame(rows)
    if args.csv:
        df.to_csv(args.csv, index=False)
    cols = ["precision", "recall", "f1", "auroc", "est_noise", "seconds"]
    g = df.groupby(["dataset", "noise", "method"], sort=False)[cols]
    mean, std = g.mean(), g.std().fillna(0.0)
    table = mean.round(3).astype(str)
    for c in ("f1", "auroc"):
        table[c] = mean[c].map("{:.3f}".format) + " ±" + std[c].map("{:.3f}".format)
    print(table.to_string())
    print(f"\n{len(df)} runs in {time.perf_counter() - t_start:.0f} s "
          f"({args.seeds} seeds; ± is the std over seeds)")
    return df


if __name__ == "__main__":
    main()
