"""Shared fixtures: a small real dataset (scikit-learn digits), a fresh project store, a Ray cluster.

Before anything else, ``HOSTCP_HOME`` points at a temporary folder for the whole session
(inherited by every child process), so no test, and nothing a test starts, ever reads or
writes the user's real project (``~/.hostcp`` or their own ``HOSTCP_HOME``). Tests that
need a home of their own set one with ``monkeypatch``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HOSTCP_HOME"] = tempfile.mkdtemp(prefix="hostcp-test-home-")
atexit.register(shutil.rmtree, os.environ["HOSTCP_HOME"], ignore_errors=True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from core.cluster import LocalCluster, RayExecutor, connect  # noqa: E402
from core.data.dataset import Dataset, Split, make_split  # noqa: E402
from core.store import Store  # noqa: E402


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
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ``HOSTCP_HOME`` for one test (the app and the CLI keep their database there)."""
    monkeypatch.setenv("HOSTCP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def store(tmp_path) -> Store:
    return Store(tmp_path / "project.sqlite")


# ------------------------------------------------------------------ a real Ray cluster
@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster (``ray start --head`` on 127.0.0.1, 2 CPUs) for the whole session.

    Started on first use only (a few seconds), with ports, a temporary directory and an
    authentication token of its own; stopped at the end of the session, also when tests fail.
    """
    with LocalCluster(num_cpus=2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def ray_executor(ray_cluster: LocalCluster) -> RayExecutor:
    """This test process joined to the session's cluster for the whole session, with its token.

    A process is a driver of one cluster at a time: tests that need a cluster of their own
    (one to kill) run the CLI in a subprocess against it.
    """
    with ray_cluster.driver_env(), connect(ray_cluster.address) as executor:
        yield executor
