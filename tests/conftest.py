"""Shared fixtures: a small real dataset (scikit-learn digits) and a fresh project store."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from core.data.dataset import Dataset, Split, make_split
from core.store import Store


@pytest.fixture(scope="session")
def digits_dataset() -> Dataset:
    """All 1,797 digits as 8x8 grey images (uint8, 0..255)."""
    d = load_digits()
    images = (d.images / 16.0 * 255).round().astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    return Dataset(
        name="digits",
        ids=np.array([f"digit-{i:04d}" for i in range(len(d.target))], dtype=object),
        labels=d.target.astype(np.int64),
        class_names=tuple(str(c) for c in range(10)),
        images=images,
        origin="sklearn digits",
    )


@pytest.fixture(scope="session")
def digits_split(digits_dataset: Dataset) -> Split:
    return make_split(digits_dataset.labels, seed=0)


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "project.sqlite")
