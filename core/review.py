"""Label review: the queue of suspected mislabels, decisions written at once, and a cheap re-score.

Every decision (``relabel``, ``accept``, ``keep``, ``exclude``, ``undo``) is
appended to the store's review log the moment it is made (the log is never
rewritten; ``undo`` appends an entry cancelling an earlier one), so a crash
or a page refresh loses nothing. "Undo last" (:func:`undo_last`) is per reviewer:
it never cancels another reviewer's decision. Human decisions outrank the detector: after
:func:`rescore`, an example whose label a reviewer confirmed (``keep``) or set
(``relabel``/``accept``) is never flagged again, and excluded examples are
left out of detection and selection.

Each decision is made against the example's *revision* (the id of its newest log entry,
the queue's ``revision`` column): :func:`decide` with ``expected_revision`` refuses a
decision made on a stale view (:class:`~core.store.StaleDecisionError`) instead of
silently replacing what another tab or reviewer decided meanwhile. A bulk action
(:func:`accept_suggestions`) writes its decisions under one batch id and one
"Undo last" (:func:`undo_last_action`) withdraws the whole batch. The queue itself
(order, filters, what a bulk accept would change) is :mod:`core.review_queue`, re-exported here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from core.data import Dataset
from core.errors import ConfigError
from core.progress import NullReporter, Reporter, SubReporter
from core.review_queue import (
    QUEUE_COLUMNS,
    QUEUE_SORTS,
    TIE_TOLERANCE,
    build_queue,
    filter_queue,
    latest_scores,
    review_queue,
    suggestions_to_accept,
)
from core.store import DECISION_ACTIONS, Decision, StaleDecisionError, Store
from core.valuation.base import top_k_mask

__all__ = [
    "CONFIRMING_ACTIONS",
    "QUEUE_COLUMNS",
    "TIE_TOLERANCE",
    "QUEUE_SORTS",
    "ReviewProgress",
    "StaleDecisionError",
    "accept_suggestions",
    "build_queue",
    "decide",
    "filter_queue",
    "nearest_examples",
    "neighbour_backbone",
    "neighbour_table",
    "neighbours",
    "queue_progress",
    "rescore",
    "review_progress",
    "review_queue",
    "suggestions_to_accept",
    "undo_last",
    "undo_last_action",
]

logger = logging.getLogger(__name__)

#: Decisions that confirm a flag was a real label error (reviewer precision counts these).
CONFIRMING_ACTIONS = ("relabel", "accept", "exclude")
#: Decisions after which the example's label is human-verified and is not flagged again.
VERIFYING_ACTIONS = ("relabel", "accept", "keep")
@dataclass(frozen=True)
class ReviewProgress:
    """How far the review of a dataset has come.

    Attributes:
        n_flagged: Examples in the queue (flagged, or decided on earlier).
        n_reviewed: Of those, examples with a decision in force.
        n_confirmed: Reviewed examples whose flag was confirmed (relabel to another label,
            accept, exclude).
        precision: ``n_confirmed / n_reviewed``: the reviewers' agreement with the flags so
            far (how often they confirmed one), or ``None`` before the first decision.
    """

    n_flagged: int
    n_reviewed: int
    n_confirmed: int
    precision: float | None


def review_progress(store: Store, dataset_id: int) -> ReviewProgress:
    """Counts of the queue, of reviewed examples and the reviewer precision so far."""
    return queue_progress(review_queue(store, dataset_id))


def queue_progress(queue: pd.DataFrame) -> ReviewProgress:
    """:func:`review_progress` of a whole (unfiltered) :func:`review_queue` table already built.

    A reviewed row confirms its flag when its decision is accept or exclude, or a relabel
    to a label other than the imported one (relabelling back to it is a keep).
    """
    reviewed = queue["reviewed"].to_numpy()
    action = queue["decision"].to_numpy()
    relabelled = (action == "relabel") & (queue["label"].to_numpy() != queue["original_label"].to_numpy())
    confirmed = reviewed & (np.isin(action, [a for a in CONFIRMING_ACTIONS if a != "relabel"]) | relabelled)
    n_reviewed, n_confirmed = int(reviewed.sum()), int(confirmed.sum())
    return ReviewProgress(
        n_flagged=len(queue),
        n_reviewed=n_reviewed,
        n_confirmed=n_confirmed,
        precision=n_confirmed / n_reviewed if n_reviewed else None,
    )


def decide(
    store: Store,
    dataset_id: int,
    example_index: int,
    action: str,
    *,
    new_label: int | None = None,
    reviewer: str = "reviewer",
    expected_revision: int | None = None,
) -> Decision:
    """Record one review decision; it is durable when this returns.

    Args:
        store: The project store.
        dataset_id: The dataset.
        example_index: Row of the example in the dataset.
        action: ``relabel`` (needs ``new_label``), ``accept`` (the suggested label, or
            ``new_label`` if given), ``keep`` (the label is right), ``exclude`` (leave the
            example out of selection and of the kept export), or ``undo`` (cancel the
            decision in force for this example, whoever made it: an explicit act on one
            example; the "Undo last" button is :func:`undo_last`, which only withdraws the
            reviewer's own decisions).
        new_label: Class index for ``relabel``/``accept``.
        reviewer: Name saved with the decision (provenance).
        expected_revision: The example's ``revision`` (queue column) the reviewer saw; when
            given and the example has changed since, nothing is written. ``None``: no check.

    Returns:
        The appended :class:`~core.store.Decision`.

    Raises:
        ConfigError: unknown action, a label given to keep/exclude, nothing to accept or undo,
            a relabel to the label the example already has (not a relabel: use ``keep``).
        StaleDecisionError: the example is no longer at ``expected_revision``; it holds the
            decision now in force, and a new call with its ``revision`` confirms yours.
        StoreError: no such dataset or example, label out of range.
    """
    if action not in DECISION_ACTIONS:
        raise ConfigError(f"Unknown review action {action!r}; expected one of {DECISION_ACTIONS}.")
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ConfigError("reviewer must be a non-empty name (it is saved with the decision).")
    if isinstance(example_index, bool) or not isinstance(example_index, int | np.integer):
        raise TypeError(f"example_index must be an int; got {type(example_index).__name__}.")
    idx = int(example_index)
    if action in ("keep", "exclude", "undo") and new_label is not None:
        raise ConfigError(f"{action} keeps the current label; do not pass new_label.")
    if action == "undo":
        active = store.active_decisions(dataset_id)
        if idx not in active:
            raise ConfigError(f"Example {idx} has no decision in force; there is nothing to undo.")
        return store.add_decision(dataset_id, idx, "undo", reviewer=reviewer.strip(),
                                  undoes=active[idx].id, expected_revision=expected_revision)
    if action == "accept" and new_label is None:
        mis = latest_scores(store, dataset_id)
        if idx not in mis.index:
            raise ConfigError(f"Example {idx} has no mislabel score, so no suggestion to accept.")
        new_label = int(mis.loc[idx, "suggested_label"])
        labels, _ = store.effective_labels(dataset_id)
        if 0 <= idx < len(labels) and labels[idx] == new_label:
            raise ConfigError(
                f"The suggestion for example {idx} is its current label; use 'keep' to confirm it."
            )
    if action == "relabel" and new_label is None:
        raise ConfigError("relabel needs new_label (the class index to set).")
    if action == "relabel":
        labels, _ = store.effective_labels(dataset_id)
        if 0 <= idx < len(labels) and labels[idx] == int(new_label):
            raise ConfigError(
                f"Example {idx} already has label {int(new_label)}; nothing to relabel "
                "(use 'keep' to confirm it)."
            )
    decision = store.add_decision(dataset_id, idx, action, new_label=new_label,
                                  reviewer=reviewer.strip(), expected_revision=expected_revision)
    logger.info("review: %s example %d (%d -> %d) by %s", action, idx, decision.old_label,
                decision.new_label, decision.reviewer)
    return decision


def undo_last_action(store: Store, dataset_id: int, *, reviewer: str = "reviewer") -> list[Decision]:
    """Withdraw ``reviewer``'s newest action on this dataset; returns its ``undo`` entries (oldest first).

    An action is one decision, or every decision of one bulk action (same
    :attr:`~core.store.Decision.batch`): a bulk accept of 40 suggestions is undone by one
    call, all 40 in one transaction. Undo is per reviewer and per dataset: it only ever
    cancels decisions that ``reviewer`` made on ``dataset_id`` (their newest one not undone
    yet), never another reviewer's, so two people reviewing at once cannot undo each other.

    If another reviewer decided the same example afterwards (alice relabels, bob then
    excludes or keeps it), alice's undo still withdraws *her* decision, but bob's stays
    in force and so does the label it recorded: the example's label does not change, and
    the undo entry says so (``old_label == new_label``). Only if bob later undoes his own
    decision does the example fall back past alice's withdrawn one. Repeated calls walk
    back through that reviewer's own actions only.

    The entries' ``old_label``/``new_label`` are the example's effective label before and
    after the undo (what :meth:`Store.effective_labels` gives), i.e. the label it restores.

    Raises:
        TypeError: ``reviewer`` is not a string.
    """
    if not isinstance(reviewer, str):
        raise TypeError(f"reviewer must be a name (str); got {type(reviewer).__name__}.")
    name = reviewer.strip() or "reviewer"  # decide() saves the stripped name; "" is its default
    log_ = store.decisions(dataset_id)
    undone = {d.undoes for d in log_ if d.action == "undo"}
    mine = [d for d in log_ if d.action != "undo" and d.id not in undone and d.reviewer == name]
    if not mine:
        return []
    newest = mine[-1]
    targets = [d for d in mine if d.batch == newest.batch] if newest.batch is not None else [newest]
    entries = store.add_decisions(
        dataset_id, [(t.example_index, "undo", None, t.id) for t in targets], reviewer=name,
        batch=len(targets) > 1,
    )
    for t, e in zip(targets, entries, strict=True):
        logger.info("review: %s undid their %s of example %d (%d -> %d)", name, t.action,
                    t.example_index, e.old_label, e.new_label)
    return entries


def undo_last(store: Store, dataset_id: int, *, reviewer: str = "reviewer") -> Decision | None:
    """:func:`undo_last_action`, returning its newest ``undo`` entry, or ``None`` when nothing was undone."""
    entries = undo_last_action(store, dataset_id, reviewer=reviewer)
    return entries[-1] if entries else None


def accept_suggestions(
    store: Store, dataset_id: int, rows: pd.DataFrame, *, reviewer: str = "reviewer"
) -> list[Decision]:
    """Accept the suggestion of every row of ``rows`` as one bulk action (one batch, one undo).

    ``rows`` are queue rows (from :func:`suggestions_to_accept`): each is accepted with the
    suggested label it showed, against the revision it showed, all in one transaction.

    Raises:
        StaleDecisionError: one of the examples changed since ``rows`` were read; nothing written.
        ConfigError: ``reviewer`` is empty.
    """
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ConfigError("reviewer must be a non-empty name (it is saved with the decision).")
    if not len(rows):
        return []
    items = [(int(r.example_index), "accept", int(r.suggested_label), None) for r in rows.itertuples()]
    expected = {int(r.example_index): int(r.revision) for r in rows.itertuples()}
    out = store.add_decisions(dataset_id, items, reviewer=reviewer.strip(), batch=True, expected=expected)
    logger.info("review: %s accepted %d suggestions in batch %s", reviewer, len(out), out[0].batch)
    return out


def neighbours(store: Store, dataset_id: int, example_index: int, *, k: int = 6) -> pd.DataFrame:
    """The ``k`` nearest other examples in the embedding (the one the scores were made in).

    Returns:
        A DataFrame with columns example_index, id, label, label_name, distance, nearest first.
    """
    from core.pipeline import dataset_embeddings

    dataset, _ = store.get_dataset(dataset_id)
    _check_neighbour_args(dataset.n, example_index, k)
    backbone = neighbour_backbone(store.latest_mislabels(dataset_id))
    emb = dataset_embeddings(store, dataset_id, backbone=backbone, device="cpu")
    order, dist = nearest_examples(emb, int(example_index), k=k)
    labels, _ = store.effective_labels(dataset_id)
    return neighbour_table(dataset, labels, order, dist)


def neighbour_backbone(mislabels: pd.DataFrame | None) -> str:
    """The embedding backbone the mislabel scores were made with (``"auto"`` when unknown)."""
    settings = dict(mislabels.attrs.get("settings") or {}) if mislabels is not None else {}
    return str(settings.get("backbone", "auto"))


def _check_neighbour_args(n: int, example_index: int, k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive int; got {k!r}.")
    if not 0 <= int(example_index) < n:
        raise ConfigError(f"example_index must be in 0..{n - 1}; got {example_index}.")


def nearest_examples(
    embeddings: np.ndarray, example_index: int, *, k: int = 6
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``embeddings`` ``(N, D)`` nearest to row ``example_index`` (itself left out).

    Returns:
        ``(indices, distances)``, both ``(min(k, N - 1),)``, nearest first; ties by index.
    """
    _check_neighbour_args(len(embeddings), example_index, k)
    idx = int(example_index)
    dist = np.linalg.norm(embeddings.astype(np.float64) - embeddings[idx].astype(np.float64), axis=1)
    dist[idx] = np.inf
    order = np.lexsort((np.arange(len(dist)), dist))[: min(k, len(dist) - 1)]
    return order.astype(np.int64), dist[order]


def neighbour_table(
    dataset: Dataset, labels: np.ndarray, order: np.ndarray, dist: np.ndarray
) -> pd.DataFrame:
    """The rows :func:`neighbours` returns, for neighbours already found and the labels ``(N,)`` now."""
    names = np.asarray(dataset.class_names, dtype=object)
    return pd.DataFrame({
        "example_index": np.asarray(order, dtype=np.int64),
        "id": dataset.ids[order].astype(str),
        "label": labels[order],
        "label_name": names[labels[order]],
        "distance": dist,
    })


def rescore(
    store: Store, dataset_id: int, *, device: str = "auto", reporter: Reporter | None = None
) -> dict[str, Any]:
    """Re-score labels after a batch of decisions and refresh the newest subset (no HOST-CP rerun).

    1. :func:`core.pipeline.detect` with the newest result's settings.
    2. If there is a selection run: its subset minus excluded and (now) flagged examples,
       filled back to ``round(budget * candidates)`` with the unflagged candidates of
       highest stored value; stored as a new run with ``info["rescored_from"]``.

    Returns:
        ``{"result_id", "run_id" (None without a run), "n_flagged", "n_flagged_before",
        "flags_added", "flags_removed" (examples newly flagged / no longer flagged),
        "dropped", "added" (examples leaving / joining the subset)}``.
    """
    reporter = reporter or NullReporter()
    from core.pipeline import detect

    before = store.latest_mislabels(dataset_id)
    was = before["flagged"].to_numpy() if before is not None else None
    rid = detect(store, dataset_id, device=device, reporter=SubReporter(reporter, 0.0, 0.9))
    flagged = store.latest_mislabels(dataset_id)["flagged"].to_numpy()
    if was is None:
        was = np.zeros_like(flagged)
    out: dict[str, Any] = {"result_id": rid, "run_id": None, "n_flagged": int(flagged.sum()),
                           "n_flagged_before": int(was.sum()),
                           "flags_added": int((flagged & ~was).sum()),
                           "flags_removed": int((was & ~flagged).sum()),
                           "dropped": 0, "added": 0}
    run = store.latest_run(dataset_id)
    if run is None:
        reporter.report("re-score", 1.0, "scores refreshed (no subset yet)")
        return out
    reporter.check_cancelled()
    _, excluded = store.effective_labels(dataset_id)
    value = run.value.copy()
    value[excluded] = np.nan  # excluded examples are no longer candidates
    cand = ~np.isnan(value)
    allowed = cand & ~flagged
    kept = run.selected & allowed
    k = min(max(1, int(round(run.budget * cand.sum()))), int(allowed.sum()))
    if kept.sum() > k:  # fewer candidates now: keep the most valuable
        selected = top_k_mask(value, k, allowed=kept)
    else:  # top up with the most valuable allowed candidates
        selected = kept | top_k_mask(value, k - int(kept.sum()), allowed=allowed & ~kept)
    dropped = int((run.selected & ~selected).sum())
    added = int((selected & ~run.selected).sum())
    out["run_id"] = store.add_run(
        dataset_id, method=run.method, budget=run.budget, seed=run.seed, settings=run.settings,
        selected=selected, value=value,
        info={**run.info, "k": int(selected.sum()), "rescored_from": run.id,
              "dropped": dropped, "added": added},
    )
    out.update(dropped=dropped, added=added)
    reporter.report("re-score", 1.0, f"subset refreshed: {dropped} dropped, {added} added")
    return out
