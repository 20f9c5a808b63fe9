"""The engine's steps on a stored dataset: import, embed, detect mislabels, select.

The steps that show why (value curves, the UMAP map) are in :mod:`core.explain`.

Each step reads what it needs from the :class:`~core.store.Store`, reports
progress through a :class:`~core.progress.Reporter`, and writes its result
back to the store, so the UI and the CLI run the same code (usually as a
background job through :class:`~core.jobs.JobRunner`).

Review decisions are applied everywhere: relabelled examples carry their new
label, excluded ones are never candidates for selection.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.data.dataset import Dataset, Split, check_curatable, make_split
from core.errors import ConfigError
from core.evaluate import DEFAULT_BUDGETS
from core.progress import NullReporter, Reporter, SubReporter
from core.store import RunRecord, Store

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = [
    "SelectionSpec",
    "import_dataset",
    "import_with_validation",
    "dataset_embeddings",
    "detect",
    "current_mislabels",
    "run_selection",
    "selection_at_budget",
    "embeddings_of",
    "candidate_rows",
    "DEFAULT_BUDGETS",
]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SelectionSpec:
    """What to run: a method at a budget, on one embedding."""

    method: str = "hostcp"  # a name from core.valuation.available_methods()
    budget: float = 0.1  # fraction of the candidates to select, in (0, 1]
    seed: int = 0  # seeds the method (shuffles, initialisation, bootstrap)
    backbone: str = "auto"  # embedding backbone, see core.embeddings.available_backbones()
    device: str = "auto"  # auto | cpu | cuda
    config: dict[str, Any] = field(default_factory=dict)  # method settings (e.g. HostCPConfig fields)
    shards: int = 1  # HOST-CP's online passes split into this many shards (on the executor, if any)

    def __post_init__(self) -> None:
        if not 0 < float(self.budget) <= 1:
            raise ConfigError(f"The budget is a fraction in (0, 1]; got {self.budget}.")
        if isinstance(self.shards, bool) or not isinstance(self.shards, int) or self.shards < 1:
            raise ConfigError(f"shards must be a positive integer; got {self.shards!r}.")
        if self.shards > 1:  # before any work: a job would find out only after embedding and detection
            from core.valuation import get_method

            if not hasattr(get_method(self.method), "distribute"):
                raise ConfigError(f"Only HOST-CP runs in shards; {self.method!r} does not (use shards=1).")


def import_dataset(
    store: Store,
    dataset: Dataset,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
) -> int:
    """Split ``dataset`` (stratified, seeded) and store it; returns the dataset id.

    Raises:
        DataError: Classes too small for the split or the detector, or too many classes
            (:func:`~core.data.dataset.check_curatable`), before anything is stored.
    """
    check_curatable(dataset, val_fraction=val_fraction, test_fraction=test_fraction)
    split = make_split(dataset.labels, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    return store.add_dataset(dataset, split)


def import_with_validation(
    store: Store,
    pool: Dataset,
    validation: Dataset,
    *,
    seed: int = 0,
    test_fraction: float = 0.5,
    names: tuple[str, str] = ("the dataset file", "the validation file"),
) -> int:
    """Store a pool with its own clean validation set; returns the dataset id.

    Every row of ``pool`` is a candidate; ``validation`` is split per class into the
    validation split (``1 - test_fraction``) and the test split that scores the value
    curves, so that both describe the user's target (:mod:`core.data.validation`).

    Raises:
        DataError: the two do not match, or classes too small for the detector, before
            anything is stored.
    """
    from core.data.validation import with_validation

    dataset, split = with_validation(pool, validation, test_fraction=test_fraction, seed=seed, names=names)
    check_curatable(dataset)
    return store.add_dataset(dataset, split)


def dataset_embeddings(
    store: Store,
    dataset_id: int,
    *,
    backbone: str = "auto",
    device: str = "auto",
    reporter: Reporter | None = None,
) -> np.ndarray:
    """``(N, D)`` embeddings of a stored dataset, cached on disk beside the store.

    A backbone trained on the data (``small_cnn``) learns from the original labels
    of the training split only: validation and test labels never leak into it, and
    reviewing labels does not change the embedding space.
    """
    dataset, split = store.get_dataset(dataset_id)
    return embeddings_of(store, dataset, split, backbone=backbone, device=device, reporter=reporter)


def embeddings_of(
    store: Store, dataset: Dataset, split: Split, *, backbone: str, device: str, reporter: Reporter | None
) -> np.ndarray:
    """:func:`dataset_embeddings` of a dataset already read from the store (read it once per job)."""
    from core.embeddings import embed

    return embed(
        dataset,
        backbone=backbone,
        cache_dir=store.files_dir / "embeddings",
        device=device,
        reporter=reporter,
        train_rows=split.train,
    )


def detect(
    store: Store,
    dataset_id: int,
    *,
    backbone: str | None = None,
    seed: int | None = None,
    threshold: float | None = None,
    device: str = "auto",
    reporter: Reporter | None = None,
    embeddings: np.ndarray | None = None,
    executor: Executor | None = None,
) -> int:
    """Mislabel detection on the current labels with review decisions honoured.

    Excluded examples are left out (they keep their previous scores); examples whose
    label a reviewer verified are never flagged. Settings not given are taken from the
    newest mislabel result (else backbone ``"auto"``, seed 0, the estimated threshold).

    Args:
        embeddings: ``(N, D)`` embeddings of the dataset with ``backbone``, when the
            caller already has them (a selection job); ``None``: read or computed here.
        executor: Where the out-of-fold folds run (:mod:`core.cluster`); ``None``: here.

    Returns:
        The id of the stored mislabel result.
    """
    from core.mislabel import detect_mislabels
    from core.review import VERIFYING_ACTIONS

    reporter = reporter or NullReporter()
    old = store.latest_mislabels(dataset_id)
    prev = dict(old.attrs.get("settings") or {}) if old is not None else {}
    backbone = backbone if backbone is not None else prev.get("backbone", "auto")
    seed = int(seed if seed is not None else prev.get("seed", 0))
    threshold = threshold if threshold is not None else prev.get("threshold")
    emb = embeddings
    if emb is None:
        emb = dataset_embeddings(store, dataset_id, backbone=backbone, device=device,
                                 reporter=SubReporter(reporter, 0.0, 0.3))
    reporter.check_cancelled()
    info = store.dataset_info(dataset_id)
    labels, excluded = store.effective_labels(dataset_id)
    active = store.active_decisions(dataset_id)
    keep = ~excluded
    reporter.report("mislabel detection", 0.3, "scoring labels out of fold")
    res = detect_mislabels(emb[keep], labels[keep], n_classes=len(info.class_names), seed=seed,
                           threshold=threshold, executor=executor)
    n = info.n
    if old is not None:
        score = old["score"].to_numpy().copy()
        flagged = old["flagged"].to_numpy().copy()
        suggested = old["suggested_label"].to_numpy().astype(np.int64)
        confidence = old["suggested_confidence"].to_numpy().copy()
    else:
        score, flagged = np.zeros(n), np.zeros(n, bool)
        suggested, confidence = labels.copy(), np.ones(n)
    score[keep], flagged[keep] = res.score, res.flagged
    suggested[keep], confidence[keep] = res.suggested_label, res.suggested_confidence
    verified = [i for i, d in active.items() if d.action in VERIFYING_ACTIONS]
    flagged[verified] = False
    reporter.check_cancelled()
    rid = store.add_mislabel_result(
        dataset_id, score=score, flagged=flagged, suggested_label=suggested,
        suggested_confidence=confidence, noise_rate=res.noise_rate, threshold=res.threshold,
        settings={"backbone": backbone, "seed": seed, "threshold": threshold,
                  "n_excluded": int(excluded.sum()), "n_verified": len(verified)},
    )
    reporter.report("mislabel detection", 1.0, f"{int(flagged.sum())} examples flagged")
    return rid


def current_mislabels(
    store: Store, dataset_id: int, *, reporter: Reporter | None = None, **detect_options: Any
) -> pd.DataFrame:
    """The newest mislabel scores, recomputed first if labels changed since they were made."""
    df = store.latest_mislabels(dataset_id)
    if df is None or df.attrs["labels_revision"] != store.labels_revision(dataset_id):
        detect(store, dataset_id, reporter=reporter, **detect_options)
        df = store.latest_mislabels(dataset_id)
    return df


def candidate_rows(store: Store, dataset_id: int, split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training rows that are not excluded, validation rows, and the current labels."""
    labels, excluded = store.effective_labels(dataset_id)
    cand = split.train[~excluded[split.train]]
    val = split.val[~excluded[split.val]]
    if len(cand) == 0:
        raise ConfigError("Every training example is excluded; undo some exclusions first.")
    if len(val) == 0:
        raise ConfigError(
            "The validation split is empty; the dataset is too small. Add examples or "
            "import it with a larger validation fraction."
        )
    return cand, val, labels


def run_selection(
    store: Store,
    dataset_id: int,
    spec: SelectionSpec,
    *,
    reporter: Reporter | None = None,
    executor: Executor | None = None,
) -> int:
    """Run one selection method on the dataset's training split; returns the run id.

    Mislabel scores (recomputed if labels changed) are passed to the method as
    ``flagged`` and ``suspect``; methods that honour them never open flagged points.

    Args:
        executor: Where the detector's out-of-fold folds and, with ``spec.shards > 1``, the
            shards of HOST-CP's online passes run (:mod:`core.cluster`); ``None``: this process
            (shards then run one after another here, with the same result as on a cluster).
    """
    from core.valuation import SelectionTask, get_method

    reporter = reporter or NullReporter()
    info = store.dataset_info(dataset_id)
    dataset, split = store.get_dataset(dataset_id)  # read once: embedding, detection and split use it
    emb = embeddings_of(store, dataset, split, backbone=spec.backbone, device=spec.device,
                        reporter=SubReporter(reporter, 0.0, 0.1))
    del dataset  # an image stack is not needed past the embedding
    mis = current_mislabels(
        store,
        dataset_id,
        backbone=spec.backbone,
        device=spec.device,
        reporter=SubReporter(reporter, 0.1, 0.2),
        embeddings=emb,
        executor=executor,
    )
    cand, val, labels = candidate_rows(store, dataset_id, split)
    reporter.check_cancelled()
    from core.device import resolve_device

    task = SelectionTask(
        x_train=emb[cand].astype(np.float32),
        y_train=labels[cand],
        x_val=emb[val].astype(np.float32),
        y_val=labels[val],
        n_classes=len(info.class_names),
        budget=float(spec.budget),
        seed=int(spec.seed),
        flagged=mis["flagged"].to_numpy()[cand],
        suspect=mis["score"].to_numpy()[cand],
        device=str(resolve_device(spec.device)),
    )
    method = get_method(spec.method, **spec.config)
    if spec.shards > 1:  # SelectionSpec checked that the method has shards
        from core.cluster import LocalExecutor

        method.distribute(executor or LocalExecutor(), shards=spec.shards)
    result = method.fit(task, reporter=SubReporter(reporter, 0.2, 1.0)).result
    selected = np.zeros(info.n, dtype=bool)
    selected[cand] = result.selected
    value = np.full(info.n, np.nan)
    value[cand] = result.scores
    return store.add_run(
        dataset_id,
        method=spec.method,
        budget=spec.budget,
        seed=spec.seed,
        settings=asdict(spec),
        selected=selected,
        value=value,
        info={"k": int(result.selected.sum()), "n_candidates": int(len(cand)),
              "ran_on": executor.description if executor is not None else "this process",
              **_jsonable(result.info)},
    )


def _jsonable(info: dict) -> dict:
    """Keep only the entries of a result's ``info`` that JSON can hold."""
    out = {}
    for k, v in info.items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, np.generic):
            out[k] = v.item()
        elif isinstance(v, (list, tuple)) and len(v) <= 1000:
            out[k] = [x.item() if isinstance(x, np.generic) else x for x in v]
        elif isinstance(v, dict):  # e.g. the method's full settings: provenance of the run
            out[k] = _jsonable(v)
    return out


def selection_at_budget(run: RunRecord, budget: float) -> np.ndarray:
    """``(N,)`` preview of the subset at another budget, from the run's stored values.

    At the run's own budget this is exactly the run's subset; elsewhere it is the
    top of the run's per-point value among its candidates (ties by index).
    """
    from core.valuation.base import top_k_mask

    if abs(budget - run.budget) < 1e-9:
        return run.selected.copy()
    cand = ~np.isnan(run.value)
    k = max(0, min(int(round(float(budget) * cand.sum())), int(cand.sum())))
    return top_k_mask(run.value, k, allowed=cand)
