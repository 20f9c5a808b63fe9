"""The SQLite project store: datasets, runs, mislabels, the review log, artefacts, jobs."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3

import numpy as np
import pandas as pd
import pytest
from memmap_helpers import is_mapped

from core.errors import StoreError
from core.store import SCHEMA_VERSION, Store


def test_creates_wal_database_with_schema_version(store):
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(
        SCHEMA_VERSION
    )


def test_newer_schema_is_refused(tmp_path):
    s = Store(tmp_path / "p.sqlite")
    with s.connect() as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(StoreError, match="newer"):
        Store(tmp_path / "p.sqlite")


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a hostcp-studio project database"):
        Store(path)


def test_dataset_round_trip(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    ds, split = store.get_dataset(did)
    np.testing.assert_array_equal(ds.images, digits_dataset.images)
    np.testing.assert_array_equal(ds.labels, digits_dataset.labels)
    assert list(ds.ids) == list(digits_dataset.ids)
    assert ds.class_names == digits_dataset.class_names
    np.testing.assert_array_equal(split.train, digits_split.train)
    np.testing.assert_array_equal(split.test, digits_split.test)
    info = store.dataset_info(did)
    assert info.n == digits_dataset.n and info.kind == "image"
    assert [d.id for d in store.list_datasets()] == [did]


def test_unknown_ids_raise_clear_errors(store):
    with pytest.raises(StoreError, match="No dataset with id 42"):
        store.get_dataset(42)
    with pytest.raises(StoreError, match="No run"):
        store.get_run(7)


def test_run_round_trip(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    n = digits_dataset.n
    selected = np.zeros(n, dtype=bool)
    selected[::10] = True
    value = np.linspace(0, 1, n)
    value[3] = np.nan  # not a candidate
    rid = store.add_run(did, method="random", budget=0.1, seed=3, settings={"a": 1},
                        selected=selected, value=value)
    run = store.get_run(rid)
    np.testing.assert_array_equal(run.selected, selected)
    np.testing.assert_allclose(run.value, value)
    assert run.settings == {"a": 1} and run.method == "random"
    assert store.latest_run(did).id == rid
    assert store.latest_run(did, method="hostcp") is None
    with pytest.raises(StoreError, match="needs"):
        store.add_run(did, method="x", budget=0.1, seed=0, settings={},
                      selected=selected[:5], value=value[:5])


def test_decisions_relabel_exclude_undo(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    orig = digits_dataset.labels
    d1 = store.add_decision(did, 5, "relabel", new_label=(orig[5] + 1) % 10, reviewer="ann")
    assert d1.old_label == orig[5] and d1.new_label == (orig[5] + 1) % 10
    d2 = store.add_decision(did, 6, "exclude", reviewer="ann")
    store.add_decision(did, 7, "keep", reviewer="bob")
    labels, excluded = store.effective_labels(did)
    assert labels[5] == (orig[5] + 1) % 10 and excluded[6] and not excluded[7]
    store.add_decision(did, 0, "undo", undoes=d1.id, reviewer="ann")
    store.add_decision(did, 0, "undo", undoes=d2.id, reviewer="ann")
    labels, excluded = store.effective_labels(did)
    np.testing.assert_array_equal(labels, orig)
    assert not excluded.any()
    log = store.decisions(did)
    assert [d.action for d in log] == ["relabel", "exclude", "keep", "undo", "undo"]
    assert log[3].example_index == 5  # undo applies to the decision's example
    with pytest.raises(StoreError, match="already undone"):
        store.add_decision(did, 0, "undo", undoes=d1.id)
    assert set(store.active_decisions(did)) == {7}


@pytest.mark.parametrize(
    ("action", "kwargs", "match"),
    [
        ("delete", {}, "Unknown review action"),
        ("relabel", {}, "needs a new label"),
        ("relabel", {"new_label": 99}, "needs a new label"),
        ("undo", {"undoes": 12345}, "does not exist"),
    ],
)
def test_bad_decisions_are_refused(store, digits_dataset, digits_split, action, kwargs, match):
    did = store.add_dataset(digits_dataset, digits_split)
    with pytest.raises(StoreError, match=match):
        store.add_decision(did, 1, action, **kwargs)
    with pytest.raises(StoreError, match="out of range"):
        store.add_decision(did, 10**6, "keep")
    assert store.decisions(did) == []


def _decide_then_die(path: str, did: int, ack_file: str) -> None:
    s = Store(path)
    with open(ack_file, "a") as ack:
        for i in range(5):
            s.add_decision(did, i, "exclude", reviewer="crash")
            ack.write(f"{i}\n")  # the user saw "saved" for decision i
            ack.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # killed without any clean-up


def test_acknowledged_decisions_survive_a_killed_process(store, digits_dataset, digits_split,
                                                         tmp_path):
    did = store.add_dataset(digits_dataset, digits_split)
    ack = tmp_path / "ack.txt"
    p = mp.get_context("spawn").Process(target=_decide_then_die, args=(str(store.path), did, str(ack)))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    acknowledged = [int(x) for x in ack.read_text().split()]
    assert acknowledged == list(range(5))
    reopened = Store(store.path)
    assert sorted(reopened.active_decisions(did)) == acknowledged


def test_mislabel_results_round_trip(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    n = digits_dataset.n
    rng = np.random.default_rng(0)
    score = rng.random(n)
    rid = store.add_mislabel_result(
        did, score=score, flagged=score > 0.9, suggested_label=np.arange(n) % 10,
        suggested_confidence=np.full(n, 0.5), noise_rate=0.1, threshold=0.9,
    )
    df = store.latest_mislabels(did)
    assert df.attrs["result_id"] == rid and df.attrs["noise_rate"] == 0.1
    np.testing.assert_allclose(df["score"].to_numpy(), score)
    assert df["flagged"].dtype == bool and df["flagged"].sum() == (score > 0.9).sum()


def test_artifacts_and_tables(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    assert store.get_artifact(did, "umap", "k") is None
    store.put_artifact(did, "umap", "k", np.ones((3, 2)))
    store.put_artifact(did, "umap", "k", np.zeros((3, 2)))
    np.testing.assert_array_equal(store.get_artifact(did, "umap", "k"), np.zeros((3, 2)))
    assert len(list(store.files_dir.glob("umap-*"))) == 1  # the replaced file was removed
    table = pd.DataFrame({"method": ["a", "b"], "budget": [0.1, 0.3], "accuracy": [0.5, 1 / 3]})
    store.put_table(did, "curve", "x", table)
    pd.testing.assert_frame_equal(store.get_table(did, "curve"), table)


def test_delete_dataset_removes_rows_and_files(store, digits_dataset, digits_split):
    did = store.add_dataset(digits_dataset, digits_split)
    store.put_artifact(did, "umap", "k", np.ones((3, 2)))
    store.delete_dataset(did)
    assert store.list_datasets() == []
    assert list(store.files_dir.iterdir()) == []


def test_interrupted_jobs_are_marked_failed(store):
    jid = store.create_job("selection")
    with store.connect() as conn:  # pretend a dead process owned it
        conn.execute("UPDATE jobs SET status='running', owner_pid=999999999 WHERE id=?", (jid,))
    own = store.create_job("selection")
    assert store.fail_interrupted_jobs() == 1
    assert store.get_job(jid).status == "failed" and "Interrupted" in store.get_job(jid).error
    assert store.get_job(own).status == "queued"


@pytest.mark.parametrize("shape", [(300_000,), (1100, 256)])
def test_large_arrays_come_back_mapped_and_can_be_rewritten(store, digits_dataset, digits_split, shape):
    did = store.add_dataset(digits_dataset, digits_split)
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    assert old.nbytes >= 1 << 20  # above the mapping threshold
    store.put_artifact(did, "embedding", "k", old)
    got = store.get_artifact(did, "embedding", "k")
    assert is_mapped(got) and type(got) is np.ndarray and got.shape == shape
    np.testing.assert_array_equal(got, old)
    with pytest.raises(ValueError, match="read-only"):
        got[0] = 1.0
    store.put_artifact(did, "embedding", "k", new)  # atomic replace (and unlink) while mapped
    np.testing.assert_array_equal(store.get_artifact(did, "embedding", "k"), new)
    np.testing.assert_array_equal(got, old)  # the old mapping stays valid on Linux
    fname = store.save_array("copy", got)  # a mapped array can be written back
    np.testing.assert_array_equal(store.load_array(fname), old)


def test_small_arrays_are_read_whole(store):
    fname = store.save_array("small", np.arange(10))
    got = store.load_array(fname)
    assert not is_mapped(got) and got.flags.writeable
    np.testing.assert_array_equal(got, np.arange(10))
