"""Choose HOST-CP's defaults without touching any benchmark test split.

Usage::

    .venv/bin/python benchmarks/tune_hostcp.py --variants default,frozen_phi --datasets digits0,digits30

The value-curve benchmark (``value_curves.py``) scores on a test split. Tuning on
it would make its table a training score, and tuning on half of the small
validation split (135 points) cannot tell a one-point difference from noise.
This script builds *tuning folds* from the benchmark's train and validation
rows only (its test rows are never loaded here): each fold is a fresh
stratified split of that pool into tune-train / tune-val / tune-test, with
labels flipped on tune-train at the dataset's noise rate and flags from
``core.mislabel.detect_mislabels``. Every variant and baseline sees the same
folds; the table reports the mean over folds and seeds, and each variant's
margin over the best baseline and over random per budget.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import digits_data, mixture_data, nonlinear_data  # noqa: E402
from core.cli import parse_settings  # noqa: E402
from core.evaluate import DEFAULT_BUDGETS  # noqa: E402

BASELINES = ("random", "clean_random", "kcenter", "facility_location")

#: HOST-CP variants (HostCPConfig overrides, explicit so that a row means the same after a default changes).
#: The variants of the first tuning that set the knobs which lost there (the online pass as the
#: read-out, ``start``; quality-weighted rows, ``quality_weight``; a random projection,
#: ``proj_init="random"``; distance powers 2-3, ``dist_power``; class allocation by coverage,
#: ``class_alloc``; closing a margin of unflagged suspects, ``exclude_margin``) are gone with the
#: knobs: README.md, "How the read-out was chosen", has their result. The names below that
#: remain ("gnq_pca", "gsnq_pca" ...) mean what they meant then (greedy start, no quality
#: weights, PCA start: today's only path; phi learned, as it was by default then), so old CSVs
#: still summarise with them.
VARIANTS: dict[str, dict] = {
    "default": {},
    "frozen_phi": {"learn_phi": False},  # the default since issue 11; "learned_phi" is the alternative
    "learned_phi": {"learn_phi": True},
    "gnq_pca": {"swap_passes": 0, "learn_phi": True},
    "gnq_pca_frozen": {"swap_passes": 0, "learn_phi": False},
    "gsnq_pca": {"swap_passes": 2, "learn_phi": True},  # the defaults chosen then
    "gsnq_pca_frozen": {"swap_passes": 2, "learn_phi": False},
    "gsnq_pca_p64": {"swap_passes": 2, "proj_dim": 64, "learn_phi": True},
    "gsnq_pca_noex": {"swap_passes": 2, "exclude_flagged": False, "learn_phi": True},
    "frozen_p16": {"learn_phi": False, "proj_dim": 16},  # the f_phi space's size (issue 11 part 3)
    "frozen_p48": {"learn_phi": False, "proj_dim": 48},
    "frozen_p64": {"learn_phi": False, "proj_dim": 64},  # exact distances up to 64-d
    "p64_noswap": {"learn_phi": False, "proj_dim": 64, "swap_passes": 0},
    "p64_noex": {"learn_phi": False, "proj_dim": 64, "exclude_flagged": False},
    "clarabel": {"solver": "Clarabel"},  # the layer's backend before Moreau
    "group4": {"scale": {"solve_group": 4}},  # batch problems per solver call, one existing-set snapshot
    "group8": {"scale": {"solve_group": 8}},
    "group16": {"scale": {"solve_group": 16}},
    "no_choice": {"learn_phi": False, "scale": {"choice_sample": 0}},  # the swap passes' set, always
}


def _merged(variant: dict, extra: dict) -> dict:
    """``variant`` with the ``--set`` overrides on top; a nested dict (``scale``) is merged, not replaced."""
    out = dict(variant)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = {**out[key], **value} if both else value
    return out


def _pool(name: str) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Clean features/labels of the benchmark's train + val rows (never its test rows)."""
    kind, noise = name.rstrip("0123456789"), int(name[len(name.rstrip("0123456789")):] or 0) / 100
    d = {"digits": digits_data, "mixture": mixture_data, "nonlinear": nonlinear_data}[kind](0.0)
    x = np.concatenate([d.x_train, d.x_val])
    y = np.concatenate([d.y_true, d.y_val])
    return x, y, d.n_classes, noise


@lru_cache(maxsize=8)
def _fold(name: str, fold: int) -> dict:
    from sklearn.model_selection import train_test_split

    from core.data.demos import flip_labels
    from core.mislabel import detect_mislabels

    x, y, c, noise = _pool(name)
    idx = np.arange(len(y))
    rest, te = train_test_split(idx, test_size=0.2, stratify=y, random_state=100 + fold)
    tr, va = train_test_split(rest, test_size=0.15 / 0.8, stratify=y[rest], random_state=100 + fold)
    y_tr = y[tr].copy()
    if noise > 0:
        y_tr = flip_labels(y[tr], rate=noise, n_classes=c, seed=2000 + fold)[0]
    det = detect_mislabels(x[tr], y_tr, n_classes=c, seed=fold)
    return {"x_train": x[tr], "y_train": y_tr, "x_val": x[va], "y_val": y[va], "x_test": x[te],
            "y_test": y[te], "n_classes": c, "flagged": det.flagged, "suspect": det.score}


def _run_one(job: tuple) -> dict:
    from threadpoolctl import threadpool_limits

    from core.evaluate import subset_value
    from core.valuation import SelectionTask, get_method

    name, fold, seed, budget, label, method, cfg, with_val = job
    with threadpool_limits(1):
        f = _fold(name, fold)
        task = SelectionTask(
            f["x_train"], f["y_train"], f["x_val"], f["y_val"], n_classes=f["n_classes"],
            budget=budget, seed=seed, flagged=f["flagged"], suspect=f["suspect"],
        )
        t0 = time.perf_counter()
        res = get_method(method, **cfg).fit(task).result
        secs = time.perf_counter() - t0
        sel = res.selected
        acc = subset_value(f["x_train"][sel], f["y_train"][sel], f["x_test"], f["y_test"],
                           n_classes=f["n_classes"], seed=seed)
        val = subset_value(f["x_train"][sel], f["y_train"][sel], f["x_val"], f["y_val"],
                           n_classes=f["n_classes"], seed=seed) if with_val else float("nan")
    return {"dataset": name, "fold": fold, "seed": seed, "budget": budget, "method": label,
            "accuracy": acc, "val_accuracy": val, "seconds": secs, "readout": res.info.get("readout", "")}


def summarise(df: pd.DataFrame) -> str:
    """Mean accuracy table and each variant's margin over the best baseline and random."""
    out = []
    for name, g in df.groupby("dataset", sort=False):
        mean = g.groupby(["method", "budget"])["accuracy"].mean().unstack() * 100
        base = mean.loc[[m for m in BASELINES if m in mean.index]]
        out.append(f"\n## {name} (mean over {g.fold.nunique()} folds x {g.seed.nunique()} seeds)")
        out.append(mean.round(1).to_string())
        variants = [m for m in mean.index if m not in BASELINES]
        if len(base):
            best = base.max()
            marg = pd.DataFrame({v: mean.loc[v] - best for v in variants}).T.round(1)
            marg["sum"] = marg.sum(axis=1).round(1)
            out.append("margin over the best baseline (" + ", ".join(
                f"{b:.0%} {base[b].idxmax()}" for b in base.columns) + "):")
            out.append(marg.to_string())
            if "random" in mean.index:
                r = pd.DataFrame({v: mean.loc[v] - mean.loc["random"] for v in variants}).T.round(1)
                out.append("margin over random:")
                out.append(r.to_string())
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="digits0,digits30",
                    help="digits, mixture or nonlinear (the 10-class 40-d set) with the noise percent, "
                         "e.g. nonlinear30")
    ap.add_argument("--variants", default="default")
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--first-fold", type=int, default=0, help="fold numbers start here (more folds later)")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--budgets", default=",".join(str(b) for b in DEFAULT_BUDGETS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="a HostCPConfig override for every variant, repeatable (as in hostcp select; "
                         "scale.solve_group=16 sets a ScaleConfig field)")
    ap.add_argument("--val-accuracy", action="store_true",
                    help="also score each subset on the tune-val rows (a second MLP per run), to simulate "
                         "choosing among variants by the validation set")
    ap.add_argument("--out", default="", help="append raw rows to this CSV")
    ap.add_argument("--summarise", default="", help="only print the tables of these CSVs (comma-separated)")
    args = ap.parse_args()
    if args.summarise:
        df = pd.concat([pd.read_csv(f) for f in args.summarise.split(",")])
        keep = set(args.variants.split(",")) | set(args.baselines.split(","))
        print(summarise(df[df.method.isin(keep) & df.dataset.isin(args.datasets.split(","))]))
        return
    extra = parse_settings(args.set or [])
    jobs = []
    for name in args.datasets.split(","):
        for fold in range(args.first_fold, args.first_fold + args.folds):
            for seed in range(args.seeds):
                for b in (float(s) for s in args.budgets.split(",")):
                    for m in filter(None, args.baselines.split(",")):
                        jobs.append((name, fold, seed, b, m, m, {}, args.val_accuracy))
                    for v in filter(None, args.variants.split(",")):
                        jobs.append((name, fold, seed, b, v, "hostcp", _merged(VARIANTS[v], extra),
                                     args.val_accuracy))
    t0 = time.perf_counter()
    # spawned workers: the engine must not be forked (core.processes warns, and cleanlab's pool can hang)
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        rows = list(ex.map(_run_one, jobs))
    df = pd.DataFrame(rows)
    if args.out:
        df.to_csv(args.out, mode="a", index=False, header=not Path(args.out).exists())
    print(summarise(df))
    print(f"\n({len(jobs)} runs, {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
