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


def test_torch_evaluator_agrees_with_sklearn_on_the_same_subset():
    x, y = _data(2)
    idx = np.r_[0:30, 40:70, 80:110]
    test = np.r_[30:40, 70:80, 110:120]
    for seed in (0, 1):
        sk = subset_value(x[idx], y[idx], x[test], y[test], n_classes=3, seed=seed, evaluator="sklearn")
        tm = subset_value(x[idx], y[idx], x[test], y[test], n_classes=3, seed=seed, evaluator="torch",
                          device="cpu")
        assert abs(sk - tm) <= 1 / 30  # same weights, batches and stop: one test point at most
    one = subset_value(x[:5], y[:5], x[90:], y[90:], n_classes=3, evaluator="torch")  # one class only
    assert one == pytest.approx(np.mean(y[90:] == 0))


def test_choose_evaluator_auto_rule_and_errors(monkeypatch):
    import torch

    from core.evaluate import CPU_EVALUATOR, choose_evaluator

    assert choose_evaluator("auto", "cpu") == (CPU_EVALUATOR, torch.device("cpu"))
    assert choose_evaluator("torch", "cpu") == ("torch", torch.device("cpu"))
    assert choose_evaluator("sklearn", torch.device("cpu"))[0] == "sklearn"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # no GPU needed to check the rule
    assert choose_evaluator("auto", "cuda") == ("torch", torch.device("cuda"))
    assert choose_evaluator("auto", "auto") == ("torch", torch.device("cuda"))
    assert choose_evaluator("sklearn", "cuda")[0] == "sklearn"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_evaluator("auto", "auto") == (CPU_EVALUATOR, torch.device("cpu"))
    with pytest.raises(ConfigError):
        choose_evaluator("auto", "cuda")
    with pytest.raises(ConfigError):
        choose_evaluator("keras", "cpu")
    x, y = _data()
    with pytest.raises(ConfigError):
        subset_value(x[:90], y[:90], x[90:], y[90:], n_classes=3, evaluator="keras")


def test_value_curve_passes_evaluator_and_device_through(monkeypatch):
    import core.evaluate as ev

    seen = []
    real = ev.subset_value

    def spy(*args, **kwargs):
        seen.append((kwargs["evaluator"], str(kwargs["device"])))
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "subset_value", spy)
    x, y = _data(1)
    perm = np.random.default_rng(0).permutation(120)
    tr, va, te = perm[:80], perm[80:100], perm[100:]
    df = ev.value_curve(x[tr], y[tr], x[va], y[va], x[te], y[te], n_classes=3, budgets=[0.2],
                        methods=["random"], seeds=1, device="auto", evaluator="torch")
    assert len(df) == 2 and seen == [("torch", "cpu")] * 2
    with pytest.raises(ConfigError):
        ev.value_curve(x[tr], y[tr], x[va], y[va], x[te], y[te], n_classes=3, evaluator="nope")


def test_importing_evaluate_does_not_import_sklearn_or_torch():
    import subprocess
    import sys

    code = ("import sys, core.evaluate; "
            "print(sorted(m for m in ('sklearn', 'torch', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
