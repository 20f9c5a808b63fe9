"""HOST-CP under distribution shift: a pool unlike the user's clean target (issue 11, parts 1-2).

Usage::

    .venv/bin/python benchmarks/shift.py                                  # everything, one run
    .venv/bin/python benchmarks/shift.py --scenarios prior,region --out a.csv   # a share of it
    .venv/bin/python benchmarks/shift.py --tables a.csv b.csv             # tables of saved runs

Scenarios (``benchmarks/_shift_data.py``): a skewed class prior, off-target styles,
an over-sampled region, heavy near-duplicates, and ``none`` (no shift, the control).
Pool labels flipped at 0 and 20 percent; budgets 5, 10, 20 percent of the pool; the
evaluator (an MLP) trained on the subset, scored on the target's clean test split.
Flags and suspect scores come from ``core.mislabel.detect_mislabels`` on the pool and
are given to every method. HOST-CP runs as:

- ``hostcp``: the default (``target="auto"``: the read-out represents the validation
  set's distribution when a shift is detected, ``core.selection.target``);
- ``hostcp[frozen]``: ``target="off"``, phi frozen (the default before this change);
- ``hostcp[learned]``: ``target="off"``, phi learned through the convex layer;
- ``hostcp[learned+target]``: phi learned and the target on ``auto``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import with_flags  # noqa: E402
from benchmarks._shift_data import SCENARIOS, shift_data  # noqa: E402
from core.evaluate import value_curve  # noqa: E402

BASELINES = ("random", "clean_random", "kcenter", "facility_location", "knn_shapley", "data_oob")
VARIANTS = {
    "hostcp": {},
    "hostcp[frozen]": {"target": "off"},
    "hostcp[learned]": {"target": "off", "learn_phi": True},
    "hostcp[learned+target]": {"learn_phi": True},
}
BUDGETS = (0.05, 0.1, 0.2)
NOISES = (0.0, 0.2)


def run(
    scenarios: list[str], noises: list[float], seeds: int, variants: list[str], seed_base: int = 100
) -> pd.DataFrame:
    """Every method on every scenario, noise and seed; one row per (method, budget, seed)."""
    rows = []
    for sc in scenarios:
        for noise in noises:
            t0 = time.perf_counter()
            for seed in range(seed_base, seed_base + seeds):
                d = with_flags(shift_data(sc, noise, seed), seed=seed)
                common = dict(n_classes=d.n_classes, budgets=BUDGETS, seeds=[seed], flagged=d.flagged,
                              suspect=d.suspect)
                args = (d.x_train, d.y_train, d.x_val, d.y_val, d.x_test, d.y_test)
                df = value_curve(*args, methods=list(BASELINES), **common)
                parts = [df[df.method != "full"]]
                for name in variants:
                    v = value_curve(*args, methods=["hostcp"], method_config={"hostcp": VARIANTS[name]},
                                    **common)
                    v = v[v.method == "hostcp"].assign(method=name)
                    parts.append(v)
                out = pd.concat(parts).assign(scenario=sc, noise=noise, pool=len(d.y_train))
                rows.append(out)
            print(f"{sc} noise={noise:.0%}: {time.perf_counter() - t0:.0f} s", flush=True)
    return pd.concat(rows, ignore_index=True)


def tables(df: pd.DataFrame) -> None:
    """Per scenario and noise: mean +- sd of every method per budget; then the targets."""
    hosts = [m for m in VARIANTS if m in set(df.method)]
    order = hosts + [m for m in BASELINES if m in set(df.method)]
    for (sc, noise), part in df.groupby(["scenario", "noise"], sort=False):
        g = part.groupby(["method", "budget"])["accuracy"].agg(["mean", "std"]).reset_index()
        pairs = zip(g["mean"], g["std"], strict=True)
        g["cell"] = [f"{m * 100:.1f}±{(0 if np.isnan(s) else s) * 100:.1f}" for m, s in pairs]
        t = g.pivot(index="method", columns="budget", values="cell").reindex(order)
        t.columns = [f"{b:.0%}" for b in t.columns]
        print(f"\n### {sc}, noise {noise:.0%} (pool {int(part.pool.iloc[0])} points)\n")
        print(_markdown(t.reset_index()))
    print("\n### Targets: HOST-CP (default) against the best baseline per cell, and against phi frozen\n")
    means = df.groupby(["scenario", "noise", "budget", "method"])["accuracy"].mean().unstack("method")
    lines, margins, gains = [], [], []
    for (sc, noise, b), row in means.iterrows():
        base = row[[m for m in BASELINES if m in row.index]]
        best, name = base.max(), base.idxmax()
        host = row["hostcp"]
        frozen, learned = row.get("hostcp[frozen]", np.nan), row.get("hostcp[learned]", np.nan)
        gain = host - frozen
        if sc != "none":
            margins.append(host - best)
            gains.append(gain)
        verdict = "OK" if host >= best else "MISS"
        lines.append({"scenario": sc, "noise": f"{noise:.0%}", "budget": f"{b:.0%}",
                      "hostcp": f"{host * 100:.1f}", "best baseline": f"{name} {best * 100:.1f}",
                      "vs best": f"{(host - best) * 100:+.1f} {verdict}",
                      "vs frozen": f"{gain * 100:+.1f}",
                      "learned vs frozen": f"{(learned - frozen) * 100:+.1f}"})
    print(_markdown(pd.DataFrame(lines)))
    if margins:
        won = sum(m >= 0 for m in margins)
        print(f"\nShift cells (scenario != none): HOST-CP >= best baseline in {won} of {len(margins)}; "
              f"mean margin {np.mean(margins) * 100:+.2f} points; mean gain over phi frozen "
              f"{np.nanmean(gains) * 100:+.2f} points.")


def _markdown(df: pd.DataFrame) -> str:
    from benchmarks._common import markdown

    return markdown(df)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--noises", default=",".join(str(n) for n in NOISES))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-base", type=int, default=100,
                    help="first seed; the target's settings were chosen on seeds 0-2, so reports use others")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="HOST-CP variants (names of VARIANTS)")
    ap.add_argument("--out", default="", help="write the raw rows as CSV here")
    ap.add_argument("--tables", nargs="*", help="print the tables of saved CSVs (no run)")
    args = ap.parse_args()
    if args.tables:
        tables(pd.concat([pd.read_csv(p) for p in args.tables], ignore_index=True))
        return
    df = run(args.scenarios.split(","), [float(n) for n in args.noises.split(",")], args.seeds,
             args.variants.split(","), args.seed_base)
    if args.out:
        df.to_csv(args.out, index=False)
    tables(df)


if __name__ == "__main__":
    main()
