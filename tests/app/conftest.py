"""Fixtures of the page tests: a fresh project folder and a project pre-filled through ``core``.

The pages are tested with Streamlit's ``AppTest`` on the real router. Engine
results (a run, mislabel scores, the map layout) are written to the store
directly, so each page test is about the UI and takes seconds. Every AppTest run of
every test fails at once when a page showed an unexpected error (a bug that
``services.engine_errors`` logged).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_helpers import (
    APP,
    BUDGET,
    HOSTILE_NAME,
    assert_no_unexpected_error,
    hostile_class,
    hostile_id,
    store_of,
)
from streamlit.testing.v1 import AppTest

from core.store import Store


@pytest.fixture()
def app(home) -> AppTest:
    """The app on a fresh project, after its first run (which imports the default demo)."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _fill(store: Store, dataset) -> int:
    """Import ``dataset`` (digits-like, with true labels) with mislabel scores, a run, a map and a curve."""
    from core.pipeline import import_dataset

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
    return did


@pytest.fixture()
def project(home) -> tuple[Store, int]:
    """A project holding digits-noisy with mislabel scores, a run at ``BUDGET``, a map and a curve."""
    from core.data import load_demo

    store = store_of(home)
    return store, _fill(store, load_demo("digits-noisy"))


@pytest.fixture()
def hostile_project(home) -> tuple[Store, int]:
    """Like ``project``, but every id, class name and the dataset name are Markdown/HTML attacks.

    A failed selection job whose error message quotes them is stored too, so the
    job panel shows it.
    """
    from core.data import Dataset, load_demo
    from core.store import utcnow

    demo = load_demo("digits-noisy")
    dataset = Dataset(
        name=HOSTILE_NAME,
        ids=np.array([hostile_id(i) for i in range(demo.n)], dtype=object),
        labels=demo.labels,
        class_names=tuple(hostile_class(k) for k in range(demo.n_classes)),
        images=demo.images,
        true_labels=demo.true_labels,
        origin=f"zip:{HOSTILE_NAME}.zip",
    )
    store = store_of(home)
    did = _fill(store, dataset)
    job = store.create_job("selection", dataset_id=did)
    store.update_job(job, status="failed", error=f"class {hostile_class(0)!r} broke", finished_at=utcnow())
    return store, did


@pytest.fixture(autouse=True)
def fail_on_unexpected_errors(monkeypatch) -> None:
    """Every run of every page test fails when a page showed an unexpected (logged) error."""
    original = AppTest._run

    def checked(self: AppTest, *args, **kwargs) -> AppTest:
        at = original(self, *args, **kwargs)
        assert_no_unexpected_error(at)
        return at

    monkeypatch.setattr(AppTest, "_run", checked)
