"""The steps that show why a subset was chosen: value curves against the baselines, and the map.

Both read a stored dataset through :mod:`core.pipeline`'s helpers (embeddings, the current
mislabel scores, the candidate rows) and write their result back to the store, like every
other step (the CLI's ``curve`` and the Select page call them from here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.errors import ConfigError
from core.evaluate import DEFAULT_BUDGETS
from core.progress import NullReporter, Reporter, SubReporter
from core.store import Store

if TYPE_CHECKING:
    from core.cluster import Executor

__all__ = ["run_value_curve", "compute_umap"]


def run_value_curve(
    store: Store,
    dataset_id: int,
    *,
    methods: tuple[str, ...] | list[str] | None = None,
    budgets: tuple[float, ...] | list[float] = DEFAULT_BUDGETS,
    seeds: int = 3,
    backbone: str = "auto",
    device: str = "auto",
    reporter: Reporter | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Test accuracy of each method's subset at each budget over seeds; stored and returned.

    Columns: method, budget, seed, accuracy, n_selected (method ``full`` is all candidates).
    The test split is scored against the true labels when the dataset knows them (a
    demo with injected noise), else against the current (reviewed) labels. With an
    ``executor`` (:mod:`core.cluster`) every training is a piece of work of its own.
    """
    from core.evaluate import value_curve
    from core.pipeline import candidate_rows, current_mislabels, embeddings_of
    from core.valuation import available_methods

    reporter = reporter or NullReporter()
    methods = list(methods or available_methods())
    info = store.dataset_info(dataset_id)
    dataset, split = store.get_dataset(dataset_id)
    if len(split.test) == 0:
        raise ConfigError("This dataset has no test split, so subset value cannot be measured.")
    emb = embeddings_of(store, dataset, split, backbone=backbone, device=device,
                        reporter=SubReporter(reporter, 0, 0.05))
    mis = current_mislabels(
        store, dataset_id, backbone=backbone, device=device, reporter=SubReporter(reporter, 0.05, 0.1),
        embeddings=emb, executor=executor,
    )
    cand, val, labels = candidate_rows(store, dataset_id, split)
    test = split.test
    # Subset value is accuracy on a *clean* test split: where the true labels are known
    # (demos with injected noise) they score it; otherwise the reviewed labels do.
    y_test = dataset.true_labels[test] if dataset.true_labels is not None else labels[test]
    table = value_curve(
        emb[cand],
        labels[cand],
        emb[val],
        labels[val],
        emb[test],
        y_test,
        n_classes=len(info.class_names),
        budgets=list(budgets),
        methods=methods,
        seeds=list(range(seeds)),
        flagged=mis["flagged"].to_numpy()[cand],
        suspect=mis["score"].to_numpy()[cand],
        reporter=SubReporter(reporter, 0.1, 1.0),
        executor=executor,
    )
    key = f"{backbone}|{','.join(methods)}|{','.join(map(str, budgets))}|{seeds}"
    store.put_table(dataset_id, "curve", key, table)
    return table


def compute_umap(
    store: Store,
    dataset_id: int,
    *,
    backbone: str = "auto",
    device: str = "auto",
    seed: int = 0,
    reporter: Reporter | None = None,
) -> np.ndarray:
    """``(N, 2)`` UMAP layout of the embeddings, computed once per dataset and backbone."""
    key = f"{backbone}|{seed}"
    cached = store.get_artifact(dataset_id, "umap", key)
    if cached is not None:
        return cached
    from core.pipeline import dataset_embeddings

    reporter = reporter or NullReporter()
    emb = dataset_embeddings(
        store, dataset_id, backbone=backbone, device=device, reporter=SubReporter(reporter, 0, 0.3)
    )
    # no time promised: the fit reports nothing until it ends (53 s once where "~15 s" was said)
    reporter.report("umap", 0.3, f"laying out {len(emb):,} points (one step, no progress until it ends)")
    reporter.check_cancelled()
    import umap

    from core.processes import ENGINE_N_JOBS

    n_neighbors = int(min(15, max(2, len(emb) - 1)))
    layout = umap.UMAP(n_neighbors=n_neighbors, random_state=seed, n_jobs=ENGINE_N_JOBS).fit_transform(emb)
    layout = np.asarray(layout, dtype=np.float32)
    store.put_artifact(dataset_id, "umap", key, layout)
    reporter.report("umap", 1.0, "map ready")
    return layout
