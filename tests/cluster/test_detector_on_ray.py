"""The mislabel detector's out-of-fold fits as executor pieces: on Ray, here, and as before.

The reference is the sequential loop the detector ran before it had an executor
(written out here from the module's own fit and predict helpers), so a change in how
the folds are cut into pieces that moved a number would fail here.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from core.cluster import LocalExecutor
from core.data.demos import flip_labels
from core.mislabel import detect_mislabels, out_of_fold_proba
from core.mislabel.oof import C_GRID, _logreg, _predict, _splits, _standardise, fit_rows


@pytest.fixture(scope="module")
def noisy_digits() -> tuple[np.ndarray, np.ndarray]:
    """Standardised digits pixels with 10 percent of labels flipped."""
    x, y = load_digits(return_X_y=True)
    x = ((x - x.mean(0)) / (x.std(0) + 1e-8)).astype(np.float32)
    noisy, _ = flip_labels(y.astype(np.int64), rate=0.10, n_classes=10, seed=0)
    return x, noisy


def _sequential_oof(x, y, n_classes, folds, seed, max_fit_rows):
    """The out-of-fold loop as it was: C chosen on the first fold, then each fold in turn."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    proba = np.zeros((len(y), n_classes))
    chosen = None
    for tr, te in _splits(y, n_classes, folds, seed):
        pick, weight = fit_rows(y[tr], n_classes, max_fit_rows, rng)
        tr = tr[pick]
        x_tr, x_te = _standardise(x[tr], x[te])
        if chosen is None:
            best = None
            for c in C_GRID:
                p = _predict(_logreg(x_tr, y[tr], c, seed, weight), x_te, n_classes)
                loss = -np.log(np.clip(p[np.arange(len(te)), y[te]], 1e-12, None)).mean()
                if best is None or loss < best[0]:
                    best = (loss, c, p)
            _, chosen, proba[te] = best
            continue
        proba[te] = _predict(_logreg(x_tr, y[tr], chosen, seed, weight), x_te, n_classes)
    proba = np.clip(proba, 1e-9, None)
    return proba / proba.sum(1, keepdims=True)


class _Recording(LocalExecutor):
    """A LocalExecutor that counts what it is asked to share and run."""

    def __init__(self) -> None:
        self.puts = 0
        self.pieces = 0

    def put(self, value):
        self.puts += 1
        return super().put(value)

    def map(self, fn, items, **kw):
        self.pieces += len(items)
        return super().map(fn, items, **kw)


@pytest.mark.parametrize("max_fit_rows", [None, 700])
def test_local_executor_gives_the_sequential_result(noisy_digits, max_fit_rows):
    x, y = noisy_digits
    want = _sequential_oof(x, y, 10, 5, 3, max_fit_rows)
    ex = _Recording()
    got = out_of_fold_proba(x, y, n_classes=10, seed=3, max_fit_rows=max_fit_rows, executor=ex)
    assert np.array_equal(got, want)
    assert np.array_equal(out_of_fold_proba(x, y, n_classes=10, seed=3, max_fit_rows=max_fit_rows), want)
    assert ex.puts == 1  # the features go to the executor once per job
    assert ex.pieces == len(C_GRID) + 4  # first fold once per C, then the other four folds


def test_detection_on_ray_matches_this_process(noisy_digits, ray_executor):
    x, y = noisy_digits
    here = detect_mislabels(x, y, n_classes=10, seed=1)
    local = detect_mislabels(x, y, n_classes=10, seed=1, executor=LocalExecutor())
    on_ray = detect_mislabels(x, y, n_classes=10, seed=1, executor=ray_executor)
    assert np.array_equal(local.score, here.score) and np.array_equal(local.flagged, here.flagged)
    np.testing.assert_allclose(on_ray.score, here.score, rtol=0, atol=1e-12)
    for name, signal in here.signals.items():
        np.testing.assert_allclose(on_ray.signals[name], signal, rtol=0, atol=1e-12)
    assert np.array_equal(on_ray.flagged, here.flagged)
    assert np.array_equal(on_ray.suggested_label, here.suggested_label)
    assert on_ray.noise_rate == pytest.approx(here.noise_rate, abs=1e-12)
    # a different seed cuts other folds: the comparison above is not between constants
    assert not np.allclose(detect_mislabels(x, y, n_classes=10, seed=2).score, here.score)


def test_capped_fits_on_ray_match_this_process(noisy_digits, ray_executor):
    x, y = noisy_digits
    here = out_of_fold_proba(x, y, n_classes=10, seed=4, max_fit_rows=500)
    on_ray = out_of_fold_proba(x, y, n_classes=10, seed=4, max_fit_rows=500, executor=ray_executor)
    np.testing.assert_allclose(on_ray, here, rtol=0, atol=1e-12)


def test_tiny_single_class_folds_on_ray(ray_executor):
    """Folds whose training rows hold one class are filled in on the driver, not sent as pieces."""
    x = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 0, 0, 0, 0, 1])
    here = out_of_fold_proba(x, y, n_classes=3, seed=0)
    np.testing.assert_allclose(out_of_fold_proba(x, y, n_classes=3, seed=0, executor=ray_executor),
                               here, rtol=0, atol=1e-12)
