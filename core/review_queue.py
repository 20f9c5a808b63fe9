"""The review queue: which examples to look at, in which order, and which a bulk accept would change.

Split from :mod:`core.review` (which re-exports everything here): reading the queue is
pure reads of the store plus table filters; writing decisions lives there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.data import Dataset
from core.errors import ConfigError
from core.store import Decision, Store, decisions_in_force, example_revisions

__all__ = [
    "QUEUE_COLUMNS",
    "build_queue",
    "QUEUE_SORTS",
    "TIE_TOLERANCE",
    "filter_queue",
    "labels_in_force",
    "latest_scores",
    "review_queue",
    "suggestions_to_accept",
]

#: Scores closer than this count as tied in the queue; ties put examples in the chosen subset
#: first (a wrong label there costs the most). Small: the queue is still "most suspicious first".
TIE_TOLERANCE = 1e-4
QUEUE_COLUMNS = (
    "example_index", "id", "label", "label_name", "original_label", "suggested_label",
    "suggested_name", "suggested_confidence", "score", "flagged", "in_subset", "reviewed",
    "decision", "reviewer", "decided_at", "revision",
)
#: Orders :func:`filter_queue` offers: ``(column, ascending)``; "score" is the queue's own order.
QUEUE_SORTS = {
    "score": ("score", False),
    "confidence": ("suggested_confidence", False),
    "example": ("example_index", True),
}


def latest_scores(store: Store, dataset_id: int) -> pd.DataFrame:
    """The newest mislabel scores of a dataset; raises ConfigError when there are none yet."""
    mis = store.latest_mislabels(dataset_id)
    if mis is None:
        raise ConfigError(
            "This dataset has no mislabel scores yet: run mislabel detection first "
            "(core.pipeline.detect, or the Review page's 'Detect' button)."
        )
    return mis


def review_queue(
    store: Store,
    dataset_id: int,
    *,
    tie_tolerance: float = TIE_TOLERANCE,
    examples: np.ndarray | list[int] | None = None,
) -> pd.DataFrame:
    """The examples to review, most suspicious first.

    The queue holds every example flagged by the newest mislabel scores plus every
    example with a decision in force (so reviewed examples stay visible after a
    re-score). Order: score, highest first; scores within ``tie_tolerance`` of each
    other put examples in the newest run's subset first; then example index.

    Args:
        examples: Review exactly these example indices instead (flagged or not), e.g. the
            points selected on the map; same order rule.

    Returns:
        A DataFrame with :data:`QUEUE_COLUMNS` (``decision`` is ``""`` when undecided;
        ``revision`` is what :func:`decide`'s ``expected_revision`` checks).

    Raises:
        ConfigError: the dataset has no mislabel scores yet, or an example is out of range.
        StoreError: no such dataset.
    """
    if tie_tolerance < 0:
        raise ConfigError(f"tie_tolerance must be >= 0; got {tie_tolerance}.")
    mis = latest_scores(store, dataset_id)
    dataset, _ = store.get_dataset(dataset_id)
    run = store.latest_run(dataset_id)
    return build_queue(dataset, mis, store.decisions(dataset_id),
                       in_subset=run.selected if run is not None else None,
                       tie_tolerance=tie_tolerance, examples=examples)


def build_queue(
    dataset: Dataset,
    mislabels: pd.DataFrame,
    log: list[Decision],
    *,
    in_subset: np.ndarray | None = None,
    tie_tolerance: float = TIE_TOLERANCE,
    examples: np.ndarray | list[int] | None = None,
) -> pd.DataFrame:
    """:func:`review_queue` from pieces already read: no store access, so a caller that caches them
    (the app, per dataset revision) rebuilds the queue after a decision from the new log alone.

    Args:
        dataset: The stored dataset (its ``labels`` are the imported ones).
        mislabels: The newest mislabel scores (:meth:`~core.store.Store.latest_mislabels`).
        log: The dataset's whole review log, oldest first (:meth:`~core.store.Store.decisions`).
        in_subset: ``(N,)`` bool, the newest run's subset; ``None`` before any run.
        tie_tolerance: As in :func:`review_queue`.
        examples: As in :func:`review_queue`.
    """
    n = dataset.n
    active = decisions_in_force(log)
    labels = labels_in_force(dataset.labels, log)
    revisions = example_revisions(log)
    in_subset = np.zeros(n, bool) if in_subset is None else np.asarray(in_subset, dtype=bool)
    flagged = mislabels["flagged"].to_numpy()
    if examples is None:
        member = flagged.copy()
        member[list(active)] = True
        members = np.flatnonzero(member)
    else:
        members = np.unique(np.asarray(examples, dtype=np.int64))
        if len(members) and not (0 <= members[0] and members[-1] < n):
            raise ConfigError(f"examples must be indices in 0..{n - 1}; got {members[[0, -1]]}.")
    score = mislabels["score"].to_numpy()
    key = score[members] + tie_tolerance * in_subset[members]
    members = members[np.lexsort((members, -key))]
    names = np.asarray(dataset.class_names, dtype=object)
    suggested = mislabels["suggested_label"].to_numpy()[members]
    decisions = [active.get(int(i)) for i in members]
    table = pd.DataFrame({
        "example_index": members.astype(np.int64),
        "id": dataset.ids[members].astype(str),
        "label": labels[members],
        "label_name": names[labels[members]],
        "original_label": dataset.labels[members],
        "suggested_label": suggested.astype(np.int64),
        "suggested_name": names[suggested],
        "suggested_confidence": mislabels["suggested_confidence"].to_numpy()[members],
        "score": score[members],
        "flagged": flagged[members],
        "in_subset": in_subset[members],
        "reviewed": np.array([d is not None for d in decisions], dtype=bool),
        "decision": [d.action if d else "" for d in decisions],
        "reviewer": [d.reviewer if d else "" for d in decisions],
        "decided_at": [d.decided_at if d else "" for d in decisions],
        "revision": np.array([revisions.get(int(i), 0) for i in members], dtype=np.int64),
    })
    return table.reset_index(drop=True)


def labels_in_force(labels: np.ndarray, log: list[Decision]) -> np.ndarray:
    """``(N,)`` int64: the imported ``labels`` with each decision in force of ``log`` applied.

    What :meth:`~core.store.Store.effective_labels` gives, for a log already read.
    """
    out = np.asarray(labels, dtype=np.int64).copy()
    for i, d in decisions_in_force(log).items():
        out[i] = d.new_label
    return out


def filter_queue(
    queue: pd.DataFrame,
    *,
    given: list[int] | None = None,
    suggested: list[int] | None = None,
    min_score: float | None = None,
    reviewed: bool | None = None,
    in_subset: bool | None = None,
    sort: str = "score",
) -> pd.DataFrame:
    """The rows of a :func:`review_queue` table that match every filter given, in ``sort`` order.

    Args:
        queue: A review queue.
        given: Keep examples whose current label is one of these classes.
        suggested: Keep examples whose suggested label is one of these classes.
        min_score: Keep examples with a mislabel score at least this.
        reviewed: ``True``: only decided examples; ``False``: only undecided ones.
        in_subset: ``True``: only examples in the chosen subset; ``False``: only the others.
        sort: A key of :data:`QUEUE_SORTS`; ``"score"`` keeps the queue's own order.
    """
    if sort not in QUEUE_SORTS:
        raise ConfigError(f"Unknown queue order {sort!r}; expected one of {sorted(QUEUE_SORTS)}.")
    keep = np.ones(len(queue), dtype=bool)
    if given is not None:
        keep &= queue["label"].isin(given).to_numpy()
    if suggested is not None:
        keep &= queue["suggested_label"].isin(suggested).to_numpy()
    if min_score is not None:
        keep &= queue["score"].to_numpy() >= min_score
    if reviewed is not None:
        keep &= queue["reviewed"].to_numpy() == reviewed
    if in_subset is not None:
        keep &= queue["in_subset"].to_numpy() == in_subset
    out = queue[keep]
    if sort != "score":
        column, ascending = QUEUE_SORTS[sort]
        out = out.sort_values(column, ascending=ascending, kind="stable")
    return out.reset_index(drop=True)


def suggestions_to_accept(queue: pd.DataFrame, *, min_confidence: float) -> pd.DataFrame:
    """The rows whose suggestion "accept every suggestion at confidence >= x" would apply.

    Those are undecided examples (a human decision is never overwritten in bulk) whose
    suggested label differs from their current one, suggested with at least ``min_confidence``.
    Their count is what the bulk action will change; pass them to :func:`accept_suggestions`.
    """
    if not 0.0 <= float(min_confidence) <= 1.0:
        raise ConfigError(f"min_confidence must be in [0, 1]; got {min_confidence}.")
    keep = (
        ~queue["reviewed"].to_numpy()
        & (queue["suggested_label"].to_numpy() != queue["label"].to_numpy())
        & (queue["suggested_confidence"].to_numpy() >= float(min_confidence))
    )
    return queue[keep].reset_index(drop=True)
