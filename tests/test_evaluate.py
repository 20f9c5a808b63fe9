"""Subset value and value curves."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, DataError
from core.evaluate import subset_value, value_curve


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 40)
    c = rng.normal(size=(3, 4)) * 3
    x = (c[y] + rng.normal(size=(120, 4))).astype(np.float32)
    return x, y


def test_subset_value_is_seeded_and_sensible():
    x, y = _data()
    a = subset_value(x[:90], y[:90], x[90:], y[90:], n_classes=3, seed=0)
    b = subset_value(x[:90], y[:90], x[90:], y[90:], n_classes=3, seed=0)
    assert a == b and 0.0 <= a <= 1.0
    idx = np.r_[0:30, 40:70, 80:110]
    test = np.r_[30:40, 70:80, 110:120]
    assert subset_value(x[idx], y[idx], x[test], y[test], n_classes=3) > 0.8
    one = subset_value(x[:5], y[:5], x[90:], y[90:], n_classes=3)  # one class only
    assert one == pytest.approx(np.mean(y[90:] == 0))
    with pytest.raises(DataError):
        subset_value(x[:0], y[:0], x, y, n_classes=3)


def test_value_curve_columns_and_rows():
    x, y = _data(1)
    perm = np.random.default_rng(0).permutation(120)
    tr, va, te = perm[:80], perm[80:100], perm[100:]
    df = value_curve(x[tr], y[tr], x[va], y[va], x[te], y[te], n_classes=3, budgets=[0.1, 0.2],
                     methods=["random", "kcenter"], seeds=2)
    assert list(df.columns) == ["method", "budget", "seed", "accuracy", "n_selected"]
    assert len(df) == 2 * (1 + 2 * 2)
    assert set(df.method) == {"full", "random", "kcenter"}
    assert (df[df.method == "random"].n_selected.isin([8, 16])).all()
    with pytest.raises(ConfigError):
        value_curve(x[tr], y[tr], x[va], y[va], x[te], y[te], n_classes=3, methods=["nope"])
