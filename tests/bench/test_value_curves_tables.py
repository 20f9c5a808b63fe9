"""``benchmarks/value_curves.py``'s per-split margins: with baselines, and with HOST-CP alone."""

from __future__ import annotations

import pandas as pd

from benchmarks.value_curves import split_margins


def _rows(methods):
    acc = {"hostcp": (0.90, 0.95), "random": (0.80, 0.85), "kcenter": (0.85, 0.96)}
    return pd.DataFrame([{"method": m, "budget": b, "seed": 0, "accuracy": acc[m][i]}
                         for m in methods for i, b in enumerate((0.1, 0.2))])


def test_margins_name_the_best_baseline_per_budget():
    assert split_margins(_rows(["hostcp", "random", "kcenter"])) == "10% +5.0 (kcenter), 20% -1.0 (kcenter)"


def test_hostcp_alone_says_margins_need_a_baseline_instead_of_crashing():
    # `--methods hostcp --split-seed 1,2,3` crashed here (argmax of an empty sequence) and wrote no CSV
    assert "need HOST-CP and a baseline" in split_margins(_rows(["hostcp"]))
