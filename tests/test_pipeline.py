"""The engine's steps on a stored dataset, as the app and the CLI run them."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.jobs import JobRunner
from core.pipeline import (
    SelectionSpec,
    current_mislabels,
    detect,
    import_dataset,
    run_selection,
    selection_at_budget,
)


@pytest.fixture()
def digits_id(store, digits_dataset):
    return import_dataset(store, digits_dataset, seed=0)


def test_import_splits_stratified(store, digits_id, digits_dataset):
    _, split = store.get_dataset(digits_id)
    n = digits_dataset.n
    assert len(split.train) + len(split.val) + len(split.test) == n
    assert len(np.intersect1d(split.train, split.test)) == 0
    assert abs(len(split.test) / n - 0.2) < 0.01 and abs(len(split.val) / n - 0.15) < 0.01


def test_selection_run_is_stored_over_training_rows(store, digits_id):
    run_id = run_selection(store, digits_id, SelectionSpec(method="random", budget=0.1, seed=1))
    run = store.get_run(run_id)
    _, split = store.get_dataset(digits_id)
    assert run.selected.sum() == round(0.1 * len(split.train))
    assert run.selected[split.train].sum() == run.selected.sum()  # only training rows chosen
    assert np.isnan(run.value[split.test]).all() and not np.isnan(run.value[split.train]).any()
    assert store.latest_mislabels(digits_id) is not None  # detection ran first


def test_excluded_examples_are_never_candidates(store, digits_id):
    _, split = store.get_dataset(digits_id)
    gone = split.train[:50]
    for i in gone:
        store.add_decision(digits_id, int(i), "exclude")
    run = store.get_run(run_selection(store, digits_id, SelectionSpec(method="random", budget=0.5)))
    assert not run.selected[gone].any() and np.isnan(run.value[gone]).all()
    assert run.selected.sum() == round(0.5 * (len(split.train) - 50))


def test_mislabels_recomputed_only_when_labels_change(store, digits_id):
    first = detect(store, digits_id)
    assert current_mislabels(store, digits_id).attrs["result_id"] == first
    store.add_decision(digits_id, 0, "relabel", new_label=3)
    assert current_mislabels(store, digits_id).attrs["result_id"] != first


def test_selection_at_budget_previews_from_stored_values(store, digits_id):
    run = store.get_run(run_selection(store, digits_id, SelectionSpec(method="knn_shapley", budget=0.1)))
    np.testing.assert_array_equal(selection_at_budget(run, 0.1), run.selected)
    n_cand = int((~np.isnan(run.value)).sum())
    bigger = selection_at_budget(run, 0.3)
    assert bigger.sum() == round(0.3 * n_cand)
    smaller = selection_at_budget(run, 0.05)
    assert smaller.sum() == round(0.05 * n_cand)
    assert (bigger | ~smaller).all()  # nested: the smaller preview sits inside the bigger one
    top = np.nanargmax(run.value)
    assert smaller[top]


def test_bad_budget_is_refused():
    with pytest.raises(ConfigError, match="budget"):
        SelectionSpec(budget=0)


def test_selection_as_a_cancellable_job(store, digits_id):
    runner = JobRunner(store)
    job = runner.wait(runner.submit(
        "selection",
        lambda r: {"run_id": run_selection(store, digits_id, SelectionSpec(method="random"), reporter=r)},
        dataset_id=digits_id,
    ), timeout=300)
    assert job.status == "done" and store.get_run(job.result["run_id"]).method == "random"


def test_value_curve_scores_against_true_labels_when_known(store, monkeypatch):
    """A demo with injected noise is scored on its clean test labels, never the flipped ones."""
    import core.evaluate
    from core.data import load_demo
    from core.explain import run_value_curve

    dataset = load_demo("digits-noisy")
    did = import_dataset(store, dataset, seed=0)
    _, split = store.get_dataset(did)
    seen = {}

    def fake_curve(*args, **kwargs):
        seen["y_test"] = args[5]
        import pandas as pd

        return pd.DataFrame({"method": ["full"], "budget": [1.0], "seed": [0], "accuracy": [1.0],
                             "n_selected": [1]})

    monkeypatch.setattr(core.evaluate, "value_curve", fake_curve)
    run_value_curve(store, did, methods=["random"], budgets=[0.1], seeds=1)
    np.testing.assert_array_equal(seen["y_test"], dataset.true_labels[split.test])
    assert (dataset.true_labels[split.test] != dataset.labels[split.test]).any()  # it matters
