"""Built-in demos: shapes, value ranges, the recorded label flips of digits-noisy, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from core.data import DEMOS, Dataset, load_demo, make_split, summarize
from core.errors import DataError


@pytest.mark.parametrize("name", list(DEMOS))
def test_every_demo_loads_and_summarizes(name):
    ds = load_demo(name)
    assert isinstance(ds, Dataset) and ds.n > 1000 and ds.n_classes >= 4
    assert ds.origin.startswith(f"demo:{name}")
    assert summarize(ds).n_examples == ds.n
    split = make_split(ds.labels, seed=0)
    assert len(split.train) + len(split.val) + len(split.test) == ds.n


def test_digits_are_grey_uint8_scaled_to_255():
    ds = load_demo("digits")
    bunch = load_digits()
    assert ds.shape == (8, 8, 1) and ds.images.dtype == np.uint8 and ds.n == 1797
    assert ds.images.min() == 0 and ds.images.max() == 255
    np.testing.assert_array_equal(ds.images[..., 0], np.round(bunch.images * 255 / 16))
    np.testing.assert_array_equal(ds.labels, bunch.target)
    assert ds.class_names == tuple(str(c) for c in range(10)) and ds.true_labels is None


def test_digits_noisy_flips_ten_percent_to_another_class():
    clean, noisy = load_demo("digits"), load_demo("digits-noisy", seed=3)
    np.testing.assert_array_equal(noisy.true_labels, clean.labels)
    np.testing.assert_array_equal(noisy.images, clean.images)
    flipped = noisy.labels != noisy.true_labels
    assert flipped.sum() == round(0.1 * clean.n)  # every chosen label really changed
    assert "flip_seed=3" in noisy.origin
    assert set(np.unique(noisy.labels[flipped])) == set(range(10))
    assert summarize(noisy).known_noise_rate == pytest.approx(flipped.mean())
    assert "Known label noise: 10.0%" in summarize(noisy).to_text()


def test_demos_are_deterministic_per_seed():
    a, b = load_demo("digits-noisy", seed=1), load_demo("digits-noisy", seed=1)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, load_demo("digits-noisy", seed=2).labels)
    m1, m2 = load_demo("mixture", seed=5), load_demo("mixture", seed=5)
    np.testing.assert_array_equal(m1.features, m2.features)
    assert not np.array_equal(m1.features, load_demo("mixture", seed=6).features)


def test_mixture_is_two_dimensional_features():
    ds = load_demo("mixture")
    assert ds.kind == "tabular" and ds.shape == (2,) and ds.features.dtype == np.float32
    assert ds.n == 1500 and ds.n_classes == 5
    assert min(ds.class_counts().values()) > 100
    assert np.isfinite(ds.features).all()


def test_unknown_demo_lists_the_available_ones():
    with pytest.raises(DataError, match="Unknown demo 'cifar'.*digits, digits-noisy, mixture"):
        load_demo("cifar")
    with pytest.raises(TypeError, match="seed"):
        load_demo("mixture", seed="0")
