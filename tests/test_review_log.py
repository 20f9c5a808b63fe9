"""The review log's batch ids and revision check in the store, and stores made before batch ids."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from core.data.dataset import Dataset
from core.pipeline import import_dataset
from core.store import StaleDecisionError, Store, example_revisions
from core.store.schema import SCHEMA


def _tiny(n: int = 12) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset(name="tiny", ids=np.array([f"r{i}" for i in range(n)], dtype=object),
                   labels=np.arange(n) % 3, class_names=("a", "b", "c"),
                   features=rng.normal(size=(n, 4)).astype(np.float32))


def test_a_store_made_before_batch_ids_opens_and_keeps_its_decisions(tmp_path):
    path = tmp_path / "old.sqlite"
    store = Store(path)
    did = import_dataset(store, _tiny(), seed=0)
    with sqlite3.connect(path) as conn:  # rebuild the decisions table as version 1 shipped it
        conn.execute("DROP TABLE decisions")
        conn.executescript(SCHEMA)
        assert "batch_id" not in {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
        conn.execute("INSERT INTO decisions(dataset_id, example_index, action, old_label, new_label,"
                      " reviewer, decided_at) VALUES (?, 3, 'keep', 0, 0, 'ann', '2026-01-01')", (did,))
    reopened = Store(path)
    [old] = reopened.decisions(did)
    assert (old.example_index, old.action, old.batch) == (3, "keep", None)
    new = reopened.add_decisions(did, [(1, "exclude", None, None), (2, "keep", None, None)], reviewer="bo")
    assert new[0].batch == new[1].batch is not None
    assert [d.batch for d in reopened.decisions(did)] == [None, new[0].batch, new[0].batch]


def test_batches_are_atomic_and_numbered_apart(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    did = import_dataset(store, _tiny(), seed=0)
    a = store.add_decisions(did, [(0, "keep", None, None)])
    b = store.add_decisions(did, [(1, "keep", None, None)])
    assert a[0].batch != b[0].batch
    with pytest.raises(Exception, match="out of range"):  # the second item fails: the first is not kept
        store.add_decisions(did, [(2, "keep", None, None), (99, "keep", None, None)])
    assert [d.example_index for d in store.decisions(did)] == [0, 1]
    single = store.add_decision(did, 4, "exclude")
    assert single.batch is None


def test_the_revision_check_happens_with_the_write(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    did = import_dataset(store, _tiny(), seed=0)
    first = store.add_decision(did, 5, "keep", expected_revision=0)
    assert example_revisions(store.decisions(did)) == {5: first.id}
    with pytest.raises(StaleDecisionError) as err:
        store.add_decision(did, 5, "exclude", expected_revision=0)
    assert (err.value.example_index, err.value.revision, err.value.current) == (5, first.id, first)
    assert "ann" not in str(err.value) and "keep" in str(err.value)
    assert store.decisions(did) == [first]
