"""How much a subset is worth: test accuracy of an evaluator trained from scratch on it.

``subset_value`` trains a small MLP (one hidden layer of 128 ReLU units, Adam, L2
1e-3, seeded, no early stopping) on the subset's embeddings with their given,
possibly noisy, labels and scores it on a clean test split. ``value_curve`` does
that for several methods, budgets and seeds (method.md "How the value of a subset
is measured").

Two evaluators train that MLP: scikit-learn's ``MLPClassifier`` (CPU) and
:class:`core.mlp.TorchMLPClassifier`, its torch twin (same initial weights, batches,
loss, optimiser and stop rule for a seed; any torch device). ``evaluator="auto"``
takes torch, measured faster on the CPU too (:func:`choose_evaluator`). sklearn and
torch (and pandas) are imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from core.errors import ConfigError, DataError
from core.progress import Reporter

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from core.cluster import Executor

__all__ = [
    "subset_value", "value_curve", "parse_budgets", "choose_evaluator", "DEFAULT_BUDGETS", "EVALUATORS",
    "CPU_EVALUATOR",
]

logger = logging.getLogger(__name__)

#: Budgets of the standard value curve (fractions of the candidates).
DEFAULT_BUDGETS = (0.05, 0.1, 0.2, 0.3)

#: Names ``subset_value(evaluator=...)`` accepts.
EVALUATORS = ("auto", "sklearn", "torch")

#: What ``evaluator="auto"`` trains with on the CPU. Measured side by side on the project's
#: shared 2-core CPU (``benchmarks/evaluator.py``, 64-d mixture, 50 to 50,000 points): the
#: torch twin (one intra-op thread) took 0.66-0.79x sklearn's time per epoch when sklearn had
#: one BLAS thread too, 0.07-0.82x against sklearn's default two. Test accuracy was the same
#: in all 72 (dataset, subset, budget, seed) cells: digits, the 2-D and the 64-d mixtures,
#: random and facility-location subsets at 5-30 %, 3 seeds. "sklearn" restores the old rule.
CPU_EVALUATOR = "torch"


def parse_budgets(text: str) -> list[float]:
    """Budgets typed by a user (``"0.05,0.1"``) as fractions in (0, 1]; ConfigError otherwise."""
    try:
        budgets = [float(b) for b in str(text).split(",") if b.strip()]
    except ValueError as e:
        raise ConfigError(
            f"Budgets are fractions separated by commas, e.g. 0.05,0.1,0.2; got {text!r}."
        ) from e
    if not budgets or any(not 0 < b <= 1 for b in budgets):
        raise ConfigError(f"Budgets are fractions in (0, 1] separated by commas; got {text!r}.")
    return budgets


def choose_evaluator(evaluator: str = "auto", device: str | torch.device = "cpu") -> tuple[str, torch.device]:
    """The evaluator and torch device ``subset_value`` will use: ``("sklearn" | "torch", device)``.

    ``"auto"`` takes ``"torch"`` on a GPU and :data:`CPU_EVALUATOR` on the CPU.
    ``"sklearn"`` always trains on the CPU, whatever ``device`` says.

    Raises:
        ConfigError: unknown evaluator or device, or ``"cuda"`` without a GPU.
    """
    import torch

    from core.device import resolve_device

    if evaluator not in EVALUATORS:
        raise ConfigError(f"Unknown evaluator {evaluator!r}; expected one of {list(EVALUATORS)}.")
    dev = device if isinstance(device, torch.device) else resolve_device(str(device))
    if evaluator == "auto":
        evaluator = "torch" if dev.type == "cuda" else CPU_EVALUATOR
    return evaluator, dev


def subset_value(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    seed: int = 0,
    hidden: int = 128,
    max_iter: int = 300,
    evaluator: str = "auto",
    device: str | torch.device = "cpu",
) -> float:
    """Test accuracy of an MLP trained from scratch on ``(x_train, y_train)``.

    Args:
        x_train: ``(K, D)`` embeddings of the subset.
        y_train: ``(K,)`` their given labels.
        x_test: ``(T, D)`` clean test embeddings.
        y_test: ``(T,)`` clean test labels.
        n_classes: Number of classes (for validation only).
        seed: Seed of the evaluator's initialisation and shuffling.
        hidden: Width of the single hidden layer.
        max_iter: Training epochs (Adam; early stopping off).
        evaluator: ``"sklearn"``, ``"torch"`` or ``"auto"`` (:func:`choose_evaluator`).
        device: Torch device of the ``"torch"`` evaluator (``"cpu"``, ``"cuda"``, ``"auto"``).

    Raises:
        DataError: empty subset or mismatched shapes.
        ConfigError: unknown evaluator or device.
    """
    x_train, y_train = np.asarray(x_train), np.asarray(y_train)
    if len(x_train) == 0 or len(x_train) != len(y_train):
        raise DataError(
            f"Expected a non-empty subset with one label per row; got {len(x_train)} rows and "
            f"{len(y_train)} labels."
        )
    if len(x_test) != len(y_test) or len(x_test) == 0:
        raise DataError(f"Test split needs one label per row; got {len(x_test)} and {len(y_test)}.")
    if y_train.max() >= n_classes or y_train.min() < 0:
        raise DataError(f"Labels must lie in [0, {n_classes}); got {y_train.min()}..{y_train.max()}.")
    name, dev = choose_evaluator(evaluator, device)
    classes = np.unique(y_train)
    if len(classes) == 1:  # an MLP cannot train on one class: predict it
        return float(np.mean(np.asarray(y_test) == classes[0]))
    if name == "torch":
        from core.mlp import TorchMLPClassifier

        clf = TorchMLPClassifier(hidden=hidden, alpha=1e-3, max_iter=max_iter, seed=seed, device=dev)
        clf.fit(x_train, y_train)
    else:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(
            hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed, early_stopping=False,
            alpha=1e-3,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(x_train, y_train)
    return float(np.mean(clf.predict(x_test) == np.asarray(y_test)))


def value_curve(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    methods: Sequence[str] = ("hostcp", "random"),
    seeds: int | Sequence[int] = 3,
    flagged: np.ndarray | None = None,
    suspect: np.ndarray | None = None,
    method_config: dict[str, dict] | None = None,
    device: str = "cpu",
    evaluator: str = "auto",
    reporter: Reporter | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Test accuracy of each method's subset at each budget and seed, plus the full data.

    The evaluator uses the subset's given labels (noisy ones included); the
    validation split is what methods may use to choose; the test split only scores.

    Args:
        x_train, y_train: ``(N, D)``, ``(N,)`` candidates and their given labels.
        x_val, y_val: Clean validation split (given to the methods).
        x_test, y_test: Clean test split (only for scoring).
        n_classes: Number of classes.
        budgets: Fractions in (0, 1].
        methods: Registry names (``core.valuation.available_methods()``).
        seeds: Number of seeds (0..seeds-1) or explicit seeds.
        flagged: ``(N,)`` suspected mislabels passed to every method.
        suspect: ``(N,)`` mislabel scores passed to every method.
        method_config: Optional settings per method name (``get_method(name, **cfg)``).
        device: Torch device (``"cpu"``, ``"cuda"``, ``"auto"``) for the methods that use
            torch and for the evaluator.
        evaluator: ``"sklearn"``, ``"torch"`` or ``"auto"`` (:func:`choose_evaluator`).
        reporter: Progress reporter (checked for cancellation between runs).
        executor: Where the trainings run (:mod:`core.cluster`); ``None``: one after another here.
            Each training is seeded, so a Ray cluster gives the same table.

    Returns:
        DataFrame with columns ``method, budget, seed, accuracy, n_selected`` (method
        ``"full"``, budget 1.0, is the evaluator on all candidates).
    """
    import pandas as pd

    from core.cluster import LocalExecutor
    from core.valuation import available_methods

    evaluator, dev = choose_evaluator(evaluator, device)  # validated once, before any work
    known = available_methods()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise ConfigError(f"Unknown methods {unknown}; expected names from {sorted(known)}.")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    # one piece per training: each seed's full-data model, then every (budget, method) at that seed
    cells = [(seed, budget, name) for seed in seed_list
             for budget, name in [(1.0, "full"), *((float(b), m) for b in budgets for m in methods)]]
    executor = executor or LocalExecutor()
    shared = executor.put({
        "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val, "x_test": x_test,
        "y_test": y_test, "n_classes": n_classes, "flagged": flagged, "suspect": suspect,
        "method_config": method_config or {}, "device": str(dev), "evaluator": evaluator,
    })
    rows = executor.map(_curve_cell, cells, shared=shared, reporter=reporter, stage="value curve",
                        label=lambda c: f"{c[2]} at {c[1]:.0%}, seed {c[0]}")
    return pd.DataFrame(rows, columns=["method", "budget", "seed", "accuracy", "n_selected"])


def _curve_cell(shared: dict, cell: tuple[int, float, str]) -> dict:
    """One row of a value curve: ``method``'s subset at ``budget`` (``"full"``: all) for ``seed``."""
    from core.valuation import SelectionTask, get_method

    seed, budget, name = cell
    x_train, y_train = shared["x_train"], shared["y_train"]
    common = {"n_classes": shared["n_classes"], "seed": seed, "evaluator": shared["evaluator"],
              "device": shared["device"]}
    if name == "full":
        acc = subset_value(x_train, y_train, shared["x_test"], shared["y_test"], **common)
        return {"method": "full", "budget": 1.0, "seed": seed, "accuracy": acc, "n_selected": len(y_train)}
    task = SelectionTask(
        x_train, y_train, shared["x_val"], shared["y_val"], n_classes=shared["n_classes"], budget=budget,
        seed=seed, flagged=shared["flagged"], suspect=shared["suspect"], device=shared["device"],
    )
    sel = get_method(name, **shared["method_config"].get(name, {})).fit(task).result.selected
    acc = subset_value(x_train[sel], y_train[sel], shared["x_test"], shared["y_test"], **common)
    return {"method": name, "budget": budget, "seed": seed, "accuracy": acc, "n_selected": int(sel.sum())}
