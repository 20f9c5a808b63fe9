"""Fixtures of the page tests: a fresh project folder and a project pre-filled through ``core``.

The pages are tested with Streamlit's ``AppTest`` on the real router. Engine
results (a run, mislabel scores, the map layout) are written to the store
directly, so each page test is about the UI and takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from app_helpers import APP, BUDGET, store_of
from streamlit.testing.v1 import AppTest

from core.store import Store


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    """A fresh ``HOSTCP_HOME`` for the app under test."""
    monkeypatch.setenv("HOSTCP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture()
def app(home) -> AppTest:
    """The app on a fresh project, after its first run (which imports the default demo)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture()
def project(home) -> tuple[Store, int]:
    """A project holding digits-noisy with mislabel scores, a run at ``BUDGET``, a map and a curve."""
    from core.data import load_demo
    from core.pipeline import import_dataset

    store = store_of(home)
    dataset = load_demo("digits-noisy")
    did = import_dataset(store, dataset, seed=0)
    _, split = store.get_dataset(did)
    n = dataset.n
    wrong = dataset.labels != dataset.true_labels
    score = np.where(wrong, 0.9, 0.1) + np.linspace(0, 0.05, n)  # (N,) distinct scores
    store.add_mislabel_result(
        did, score=score, flagged=wrong, suggested_label=dataset.true_labels,
        suggested_confidence=np.full(n, 0.8), noise_rate=float(wrong.mean()), threshold=0.5,
    )
    rng = np.random.default_rng(0)
    value = np.full(n, np.nan)
    value[split.train] = rng.random(len(split.train))
    k = round(BUDGET * len(split.train))
    selected = np.zeros(n, dtype=bool)
    selected[split.train[np.argsort(-value[split.train])[:k]]] = True
    store.add_run(did, method="random", budget=BUDGET, seed=0, settings={"method": "random"},
                  selected=selected, value=value, info={"k": k})
    store.put_artifact(did, "umap", "auto|0", rng.normal(size=(n, 2)).astype(np.float32))
    curve = pd.DataFrame([
        {"method": m, "budget": b, "seed": 0, "accuracy": a, "n_selected": int(b * 1000)}
        for m, a0 in (("hostcp", 0.8), ("random", 0.7)) for b, a in ((0.05, a0), (0.1, a0 + 0.05))
    ])
    store.put_table(did, "curve", "test", curve)
    return store, did
