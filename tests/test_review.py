"""Label review: queue order, decisions in the append-only log, reviewer precision, re-score."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from core.data.dataset import Dataset
from core.errors import ConfigError, StoreError
from core.pipeline import detect, import_dataset
from core.review import (
    QUEUE_COLUMNS,
    StaleDecisionError,
    accept_suggestions,
    decide,
    filter_queue,
    neighbours,
    rescore,
    review_progress,
    review_queue,
    suggestions_to_accept,
    undo_last,
    undo_last_action,
)
from core.store import Store


def _noisy_digits(n: int = 400, rate: float = 0.1, seed: int = 0) -> Dataset:
    d = load_digits()
    images = (d.images[:n] / 16.0 * 255).round().astype(np.uint8)[..., None]
    clean = d.target[:n].astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.choice(n, int(rate * n), replace=False)
    labels = clean.copy()
    labels[idx] = (labels[idx] + rng.integers(1, 10, len(idx))) % 10
    return Dataset(name="digits-small", ids=np.array([f"d/{i:04d}" for i in range(n)]),
                   labels=labels, class_names=tuple(str(c) for c in range(10)), images=images,
                   true_labels=clean)


def _add_run(store: Store, did: int, budget: float = 0.2, seed: int = 0) -> int:
    _, split = store.get_dataset(did)
    n = store.dataset_info(did).n
    value = np.full(n, np.nan)
    value[split.train] = np.random.default_rng(seed).random(len(split.train))
    k = round(budget * len(split.train))
    selected = np.zeros(n, bool)
    selected[split.train[np.argsort(-value[split.train])[:k]]] = True
    return store.add_run(did, method="random", budget=budget, seed=seed, settings={},
                         selected=selected, value=value, info={"k": k})


@pytest.fixture()
def project(tmp_path) -> tuple[Store, int]:
    """400 digit images with 10% flipped labels, real mislabel scores and a run."""
    store = Store(tmp_path / "p.sqlite")
    did = import_dataset(store, _noisy_digits(), seed=0)
    detect(store, did)
    _add_run(store, did)
    return store, did


@pytest.fixture()
def handmade(tmp_path) -> tuple[Store, int]:
    """40 examples with chosen scores: 0..9 flagged with scores 0.9 - i/100, a tie at 6/7."""
    store = Store(tmp_path / "h.sqlite")
    d = _noisy_digits(40, rate=0.0)
    did = import_dataset(store, d, seed=0)
    n = d.n
    score = np.linspace(0.3, 0.0, n)
    score[:10] = 0.9 - np.arange(10) / 100
    score[7] = score[6] - 1e-5  # a near tie
    flagged = np.zeros(n, bool)
    flagged[:10] = True
    suggested = (d.labels + 1) % 10
    store.add_mislabel_result(did, score=score, flagged=flagged, suggested_label=suggested,
                              suggested_confidence=np.full(n, 0.7), noise_rate=0.25,
                              threshold=0.8)
    selected = np.zeros(n, bool)
    selected[[7, 20]] = True  # 7 is in the subset, 6 is not
    store.add_run(did, method="random", budget=0.1, seed=0, settings={}, selected=selected,
                  value=np.linspace(1, 0, n))
    return store, did


def test_queue_order_and_columns(handmade):
    store, did = handmade
    q = review_queue(store, did)
    assert tuple(q.columns) == QUEUE_COLUMNS
    # most suspicious first; the near tie 6/7 puts 7 (in the subset) first
    assert q["example_index"].tolist() == [0, 1, 2, 3, 4, 5, 7, 6, 8, 9]
    assert not q["reviewed"].any() and (q["decision"] == "").all()
    assert q.loc[q["example_index"] == 7, "in_subset"].item()
    strict = review_queue(store, did, tie_tolerance=0.0)
    assert strict["example_index"].tolist() == list(range(10))


def test_decisions_are_durable_and_shown(handmade, tmp_path):
    store, did = handmade
    d = decide(store, did, 0, "accept", reviewer="alice")
    assert d.new_label == (d.old_label + 1) % 10  # the suggestion
    decide(store, did, 25, "relabel", new_label=4, reviewer="bob")  # not flagged: joins the queue
    reopened = Store(tmp_path / "h.sqlite")  # another connection / a restart
    assert [(x.example_index, x.action, x.reviewer) for x in reopened.decisions(did)] == [
        (0, "accept", "alice"), (25, "relabel", "bob")]
    q = review_queue(reopened, did)
    row = q.set_index("example_index").loc[0]
    assert row["reviewed"] and row["decision"] == "accept" and row["reviewer"] == "alice"
    assert row["label"] == d.new_label and row["original_label"] == d.old_label
    assert 25 in q["example_index"].tolist()


def test_progress_and_reviewer_precision(handmade):
    store, did = handmade
    p = review_progress(store, did)
    assert (p.n_flagged, p.n_reviewed, p.precision) == (10, 0, None)
    decide(store, did, 0, "accept")
    decide(store, did, 1, "keep")
    decide(store, did, 2, "exclude")
    original = store.get_dataset(did)[0].labels[3]
    decide(store, did, 3, "relabel", new_label=int((original + 2) % 10))
    decide(store, did, 3, "relabel", new_label=int(original))  # back to its own label: a keep
    p = review_progress(store, did)
    assert (p.n_reviewed, p.n_confirmed) == (4, 2)
    assert p.precision == pytest.approx(0.5)


def test_undo(handmade):
    store, did = handmade
    decide(store, did, 0, "keep")
    decide(store, did, 1, "exclude")
    assert undo_last(store, did, reviewer="carol") is None  # carol decided nothing
    u = undo_last(store, did)  # the default reviewer's newest decision
    assert u.action == "undo" and u.example_index == 1 and u.reviewer == "reviewer"
    assert set(store.active_decisions(did)) == {0}
    decide(store, did, 0, "undo", reviewer="carol")  # per-example undo: explicit, anyone's
    assert store.active_decisions(did) == {}
    assert undo_last(store, did) is None
    assert [x.action for x in store.decisions(did)] == ["keep", "exclude", "undo", "undo"]


def test_undo_last_is_per_reviewer_and_per_dataset(handmade, tmp_path):
    """alice relabels, bob excludes: alice's undo cancels her relabel, never bob's exclude."""
    store, did = handmade
    other = import_dataset(store, _noisy_digits(40, rate=0.0, seed=1), seed=0)
    original = store.get_dataset(did)[0].labels
    relabel = decide(store, did, 0, "relabel", new_label=int((original[0] + 3) % 10), reviewer="alice")
    decide(store, did, 1, "exclude", reviewer="bob")
    decide(store, other, 2, "keep", reviewer="alice")  # alice's newest, but on another dataset
    u = undo_last(store, did, reviewer="alice")
    assert (u.example_index, u.undoes, u.reviewer) == (0, relabel.id, "alice")
    active = store.active_decisions(did)
    assert set(active) == {1} and active[1].reviewer == "bob"  # bob's exclude stays
    assert store.effective_labels(did)[1][1]
    assert undo_last(store, did, reviewer="alice") is None  # nothing of alice's left here
    assert set(store.active_decisions(other)) == {2}  # the other dataset is untouched


@pytest.mark.parametrize("bob_action", ["relabel", "keep", "exclude"])
def test_undo_after_another_reviewer_decided_the_same_example(handmade, bob_action):
    """alice's undo withdraws her decision; bob's later one stays in force with its label."""
    store, did = handmade
    original = int(store.get_dataset(did)[0].labels[0])
    alice_label, bob_label = (original + 3) % 10, (original + 5) % 10
    decide(store, did, 0, "relabel", new_label=alice_label, reviewer="alice")
    bob = decide(store, did, 0, bob_action, reviewer="bob",
                 new_label=bob_label if bob_action == "relabel" else None)
    label_before = int(store.effective_labels(did)[0][0])
    assert label_before == (bob_label if bob_action == "relabel" else alice_label)
    u = undo_last(store, did, reviewer="alice")
    assert u is not None and u.example_index == 0
    assert store.active_decisions(did)[0].id == bob.id  # bob's decision is still in force
    labels, excluded = store.effective_labels(did)
    assert int(labels[0]) == label_before and excluded[0] == (bob_action == "exclude")
    assert (u.old_label, u.new_label) == (label_before, label_before)  # the log says: no change
    assert undo_last(store, did, reviewer="alice") is None  # and it goes no further back
    # bob withdrawing his decision now falls back past alice's withdrawn one
    b = undo_last(store, did, reviewer="bob")
    assert (b.old_label, b.new_label) == (label_before, original)
    assert int(store.effective_labels(did)[0][0]) == original


def test_undo_entry_records_the_label_it_restores(handmade):
    store, did = handmade
    original = int(store.get_dataset(did)[0].labels[4])
    first, second = (original + 1) % 10, (original + 2) % 10
    decide(store, did, 4, "relabel", new_label=first, reviewer="alice")
    decide(store, did, 4, "relabel", new_label=second, reviewer="alice")
    u1 = undo_last(store, did, reviewer="alice")
    assert (u1.old_label, u1.new_label) == (second, first)
    assert int(store.effective_labels(did)[0][4]) == u1.new_label
    u2 = decide(store, did, 4, "undo", reviewer="alice")
    assert (u2.old_label, u2.new_label) == (first, original)
    assert int(store.effective_labels(did)[0][4]) == u2.new_label
    logged = [(d.action, d.old_label, d.new_label) for d in store.decisions(did)]
    assert logged[2:] == [("undo", second, first), ("undo", first, original)]  # as stored


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((0, "delete"), {}, ConfigError, "Unknown review action"),
        ((0, "relabel"), {}, ConfigError, "new_label"),
        ((0, "keep"), {"new_label": 3}, ConfigError, "do not pass new_label"),
        ((0, "undo"), {}, ConfigError, "nothing to undo"),
        ((0, "keep"), {"reviewer": " "}, ConfigError, "reviewer"),
        ((0, "relabel"), {"new_label": 10}, StoreError, "new label"),
        ((99, "keep"), {}, StoreError, "out of range"),
        (("0", "keep"), {}, TypeError, "example_index"),
    ],
)
def test_decide_errors(handmade, args, kwargs, error, match):
    store, did = handmade
    with pytest.raises(error, match=match):
        decide(store, did, *args, **kwargs)
    assert store.decisions(did) == []  # nothing half-written


def test_accept_when_the_suggestion_is_the_label(handmade):
    store, did = handmade
    decide(store, did, 0, "accept")  # label is now the suggestion
    with pytest.raises(ConfigError, match="use 'keep'"):
        decide(store, did, 0, "accept")


def test_queue_needs_scores(tmp_path):
    store = Store(tmp_path / "e.sqlite")
    did = import_dataset(store, _noisy_digits(40), seed=0)
    with pytest.raises(ConfigError, match="no mislabel scores"):
        review_queue(store, did)


def test_neighbours(project):
    store, did = project
    nb = neighbours(store, did, 5, k=4)
    assert list(nb.columns) == ["example_index", "id", "label", "label_name", "distance"]
    assert len(nb) == 4 and 5 not in nb["example_index"].tolist()
    assert nb["distance"].is_monotonic_increasing
    with pytest.raises(ConfigError, match="example_index"):
        neighbours(store, did, 10_000)


def test_real_queue_finds_flips(project):
    store, did = project
    dataset, _ = store.get_dataset(did)
    q = review_queue(store, did)
    wrong = dataset.labels != dataset.true_labels
    top = q["example_index"].to_numpy()[: int(wrong.sum())]
    assert wrong[top].mean() >= 0.7  # the head of the queue is mostly real errors


def test_rescore_honours_decisions_and_refreshes_the_subset(project):
    store, did = project
    before = store.latest_mislabels(did)
    run = store.latest_run(did)
    q = review_queue(store, did)
    first, second, third = (int(i) for i in q["example_index"][:3])
    decide(store, did, first, "exclude")
    decide(store, did, second, "keep")
    decide(store, did, third, "relabel", new_label=int(q["suggested_label"][2]))
    out = rescore(store, did)
    after = store.latest_mislabels(did)
    assert after.attrs["result_id"] == out["result_id"] != before.attrs["result_id"]
    assert after.attrs["labels_revision"] == store.labels_revision(did)  # not stale
    assert after.loc[first, "score"] == before.loc[first, "score"]  # excluded: left out
    assert not after.loc[second, "flagged"] and not after.loc[third, "flagged"]  # verified
    new = store.get_run(out["run_id"])
    assert new.info["rescored_from"] == run.id
    assert np.isnan(new.value[first]) and not new.selected[first]
    assert not (new.selected & after["flagged"].to_numpy()).any()
    n_cand = int((~np.isnan(new.value)).sum())
    assert new.selected.sum() == round(run.budget * n_cand)
    assert out["dropped"] == int((run.selected & ~new.selected).sum())
    was, now = before["flagged"].to_numpy(), after["flagged"].to_numpy()
    assert (out["n_flagged_before"], out["n_flagged"]) == (int(was.sum()), int(now.sum()))
    assert (out["flags_added"], out["flags_removed"]) == (int((now & ~was).sum()), int((was & ~now).sum()))
    assert out["flags_removed"] >= 2  # the kept and the relabelled example are no longer flagged
    # the queue keeps the reviewed examples after the re-score
    q2 = review_queue(store, did)
    assert {first, second, third} <= set(q2["example_index"])
    assert review_progress(store, did).n_reviewed == 3


def test_relabel_to_the_label_it_has_is_refused_and_not_logged(handmade):
    store, did = handmade
    current = int(store.effective_labels(did)[0][4])
    with pytest.raises(ConfigError, match="already has label"):
        decide(store, did, 4, "relabel", new_label=current)
    assert store.decisions(did) == []
    decide(store, did, 4, "relabel", new_label=(current + 1) % 10)
    with pytest.raises(ConfigError, match="already has label"):  # the effective label counts
        decide(store, did, 4, "relabel", new_label=(current + 1) % 10)
    assert len(store.decisions(did)) == 1


def test_a_decision_on_a_stale_revision_is_refused_until_confirmed(handmade):
    store, did = handmade
    seen = int(review_queue(store, did).set_index("example_index").loc[0, "revision"])
    assert seen == 0  # never decided
    theirs = decide(store, did, 0, "keep", reviewer="bob", expected_revision=seen)  # tab B first
    with pytest.raises(StaleDecisionError) as err:  # tab A still shows revision 0
        decide(store, did, 0, "exclude", reviewer="alice", expected_revision=seen)
    assert err.value.current == theirs and err.value.revision == theirs.id
    assert store.active_decisions(did)[0] == theirs  # nothing written
    mine = decide(store, did, 0, "exclude", reviewer="alice", expected_revision=err.value.revision)
    assert store.active_decisions(did)[0] == mine
    assert int(review_queue(store, did).set_index("example_index").loc[0, "revision"]) == mine.id
    undo_last(store, did, reviewer="alice")  # an undo is a new revision too
    with pytest.raises(StaleDecisionError) as err:
        decide(store, did, 0, "keep", reviewer="bob", expected_revision=mine.id)
    assert err.value.current == theirs
    decide(store, did, 0, "keep", reviewer="carol")  # no expected revision: no check


def test_filter_and_sort_the_queue(handmade):
    store, did = handmade
    decide(store, did, 2, "keep")
    q = review_queue(store, did)
    labels = dict(zip(q["example_index"], q["label"], strict=True))
    cls = int(labels[0])
    given = filter_queue(q, given=[cls])
    assert set(given["example_index"]) == {i for i, c in labels.items() if c == cls}
    sugg = filter_queue(q, suggested=[(cls + 1) % 10])
    assert (sugg["suggested_label"] == (cls + 1) % 10).all() and 0 in set(sugg["example_index"])
    assert filter_queue(q, min_score=0.86)["example_index"].tolist() == [0, 1, 2, 3, 4]
    assert filter_queue(q, reviewed=True)["example_index"].tolist() == [2]
    assert 2 not in set(filter_queue(q, reviewed=False)["example_index"])
    assert filter_queue(q, in_subset=True)["example_index"].tolist() == [7]
    assert filter_queue(q, sort="example")["example_index"].tolist() == list(range(10))
    assert filter_queue(q)["example_index"].tolist() == q["example_index"].tolist()
    with pytest.raises(ConfigError, match="queue order"):
        filter_queue(q, sort="colour")


def test_the_queue_of_chosen_examples(handmade):
    store, did = handmade
    q = review_queue(store, did, examples=[30, 0, 25])  # e.g. a lasso on the map
    assert q["example_index"].tolist() == [0, 25, 30]  # flagged or not, most suspicious first
    with pytest.raises(ConfigError, match="indices"):
        review_queue(store, did, examples=[40])


def test_bulk_accept_counts_first_and_one_undo_reverts_the_batch(handmade):
    store, did = handmade
    conf = np.linspace(0.5, 0.95, 40)
    mis = store.latest_mislabels(did)
    store.add_mislabel_result(did, score=mis["score"].to_numpy(), flagged=mis["flagged"].to_numpy(),
                              suggested_label=mis["suggested_label"].to_numpy(),
                              suggested_confidence=conf, noise_rate=0.25, threshold=0.8)
    decide(store, did, 9, "keep", reviewer="alice")  # decided: never overwritten in bulk
    decide(store, did, 0, "exclude", reviewer="alice")
    q = review_queue(store, did)
    plan = suggestions_to_accept(q, min_confidence=float(conf[5]))
    assert sorted(plan["example_index"]) == [5, 6, 7, 8]
    labels_before = store.effective_labels(did)[0].copy()
    done = accept_suggestions(store, did, plan, reviewer="alice")
    assert len({d.batch for d in done}) == 1 and done[0].batch is not None
    labels = store.effective_labels(did)[0]
    assert [int(labels[i]) for i in (5, 6, 7, 8)] == [
        int(mis.loc[i, "suggested_label"]) for i in (5, 6, 7, 8)]
    decide(store, did, 1, "keep", reviewer="bob")  # another reviewer's newer decision stays
    undone = undo_last_action(store, did, reviewer="alice")
    assert sorted(u.example_index for u in undone) == [5, 6, 7, 8]
    assert np.array_equal(store.effective_labels(did)[0], labels_before)
    assert set(store.active_decisions(did)) == {0, 1, 9}
    assert [u.example_index for u in undo_last_action(store, did, reviewer="alice")] == [0]  # then one


def test_a_bulk_accept_on_a_stale_queue_writes_nothing(handmade):
    store, did = handmade
    plan = suggestions_to_accept(review_queue(store, did), min_confidence=0.5)
    decide(store, did, int(plan["example_index"][3]), "keep", reviewer="bob")
    with pytest.raises(StaleDecisionError):
        accept_suggestions(store, did, plan, reviewer="alice")
    assert len(store.decisions(did)) == 1


def test_undo_acts_on_its_dataset_only(handmade):
    store, did = handmade
    other = import_dataset(store, _noisy_digits(40, rate=0.0, seed=1), seed=0)
    decide(store, did, 0, "keep", reviewer="alice")
    theirs = store.add_decision(other, 0, "exclude", reviewer="alice")  # newer, on another dataset
    assert undo_last(store, did, reviewer="alice").example_index == 0
    assert store.active_decisions(other) == {0: theirs}
    assert store.active_decisions(did) == {}
