"""Select page: run HOST-CP or a baseline at a budget, preview other budgets, value curves and the map.

The run shown is in the URL (``?run=7``); the controls take that run's own settings from the
store (:mod:`app.components.run_settings`), so a reload or a bookmark lands with them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import services
from app.components import url_state
from app.components.jobs import job_panel
from app.components.map_pick import open_in_review
from app.components.run_settings import SEED_MAX, control, follow_run
from app.markup import chart_text
from core.evaluate import DEFAULT_BUDGETS, parse_budgets
from core.valuation import available_methods


def _run_to_show(dataset_id: int, runs: list[dict]) -> int | None:
    """The run the "Showing" box will show (its ``run_choice`` state), put in the URL now.

    A run that appeared since this session last looked (a job finished) is shown at once;
    else the box's own choice (or the one the router adopted from the URL) if it still exists.
    The URL gets it in this run, not only on the next one, so a reload right after a run
    finished lands on that run.
    """
    if not runs:
        return None
    newest = runs[0]["id"]
    if st.session_state.get("_newest_run_seen") != (dataset_id, newest):  # a new run appeared: show it
        st.session_state["_newest_run_seen"] = (dataset_id, newest)
        st.session_state["run_choice"] = newest
    if st.session_state.get("run_choice") not in [r["id"] for r in runs]:
        st.session_state["run_choice"] = newest
    chosen = int(st.session_state["run_choice"])
    st.session_state.setdefault("_run_shown", {})[dataset_id] = chosen  # the router's shadow of the box
    url_state.publish("run", chosen)
    return chosen


def _keep_run_choice() -> None:
    """On a pick in "Showing": make it the only value kept under the box's key.

    The router sets ``run_choice`` through ``st.session_state`` on pages without the box
    (from the URL, or its shadow); Streamlit keeps that value under the key beside the
    box's own and brings it back once a visit to another page dropped the box, which
    used to undo the pick. Deleting the key and setting the pick leaves only the pick.
    """
    chosen = st.session_state["run_choice"]
    del st.session_state["run_choice"]
    st.session_state["run_choice"] = chosen


st.title("Select")
st.caption(
    "Choose the training subset of highest value at a budget; flagged (likely mislabelled) "
    "examples are kept out by HOST-CP."
)

store = services.get_store()
did = services.require_dataset()

info = store.dataset_info(did)
methods = available_methods()

# ------------------------------------------------------------------ the run shown
runs = store.list_runs(did)
run_id = _run_to_show(did, runs)
follow_run(did, next((r for r in runs if r["id"] == run_id), None), methods)  # a reload lands on its settings

# ------------------------------------------------------------------ controls
options = list(methods)
c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
budget_pct = c1.slider(
    "Budget (% of training data)",
    min_value=1,
    max_value=100,
    step=1,
    key="budget_pct",
    on_change=control("budget_pct", valid=lambda v: 1 <= v <= 100),
    help="Moving it after a run previews that budget from the run's stored values.",
)
budget = budget_pct / 100.0
method = c2.selectbox(
    "Method",
    options,
    key="method",
    on_change=control("method", default="hostcp" if "hostcp" in options else next(iter(options), None),
                      valid=options.__contains__),
    format_func=lambda m: methods.get(m, m),
    disabled=not methods,
)
with st.expander("Advanced settings"):
    seed = st.number_input(
        "Seed", min_value=0, max_value=SEED_MAX, step=1, key="seed", on_change=control("seed")
    )
    config_text = st.text_area(
        "Method settings (JSON)",
        key="method_config",
        height=68,
        on_change=control("method_config"),
        placeholder='{"epochs": 2}',
        help="Passed to the method, e.g. HOST-CP's HostCPConfig fields; leave empty for the defaults.",
    )

st.caption(services.jobs_location())
running = job_panel(did, "selection", title="Selection")
if c3.button(
    "Run", type="primary", disabled=running or not methods, key="run_selection", use_container_width=True
):
    with services.engine_errors("Starting the selection"):
        from core.pipeline import SelectionSpec, run_selection

        spec = SelectionSpec(
            method=method, budget=budget, seed=int(seed), config=services.parse_config(config_text)
        )
        services.submit(
            "selection",
            services.on_cluster(lambda reporter, ex: {
                "run_id": run_selection(store, did, spec, reporter=reporter, executor=ex)}),
            dataset_id=did,
            params={"method": method, "budget": budget},
        )
        st.rerun()

# ------------------------------------------------------------------- results
if run_id is None:
    st.info("No run yet on this dataset: pick a method and press **Run**.")
    st.stop()

labels_of = {
    r["id"]: f"run #{r['id']} · {methods.get(r['method'], r['method'])} at {r['budget']:.0%}"
    + (" (re-scored)" if r["info"].get("rescored_from") else "")
    for r in runs
}
run_id = st.selectbox("Showing", [r["id"] for r in runs], format_func=labels_of.get, key="run_choice",
                      on_change=_keep_run_choice)

with services.engine_errors("Showing the run"):
    from core.charts import map_figure, value_curve_figure
    from core.pipeline import selection_at_budget

    run = services.get_run(run_id)
    dataset, split = services.get_dataset(did)
    labels, excluded = store.effective_labels(did)
    mis = store.latest_mislabels(did)
    flagged = mis["flagged"].to_numpy() if mis is not None else np.zeros(info.n, dtype=bool)
    candidate = ~np.isnan(run.value)
    chosen = selection_at_budget(run, budget)
    at_run_budget = abs(budget - run.budget) < 1e-9

    m = st.columns(4)
    m[0].metric("Chosen", f"{int(chosen.sum()):,}", help="Examples in the subset at this budget.")
    m[1].metric(
        "Discarded",
        f"{int((candidate & ~chosen).sum()):,}",
        help="Training examples left out at this budget.",
    )
    m[2].metric(
        "Flagged among chosen",
        int((chosen & flagged).sum()),
        help="Likely mislabelled examples inside the subset.",
    )
    m[3].metric("Flagged overall", int(flagged.sum()))
    if run.info.get("shift_detected"):  # HOST-CP found the pool unlike the validation set
        st.info(f"**Target:** {run.info['target']}.", icon=":material/target:")
    if run.info.get("readout_val_accuracy"):  # which of HOST-CP's read-outs the validation set kept
        from core.selection.readout_choice import readout_line  # only then: core.selection loads torch

        line = readout_line(run.info)
        st.caption(line[0].upper() + line[1:] + ".")
    if not at_run_budget:
        st.info(
            f"Preview at **{budget_pct}%** from the stored values of run #{run.id} "
            f"(which ran at {run.budget:.0%}); the engine was not rerun."
        )
        if st.button(
            f"Run {methods.get(run.method, run.method)} at exactly {budget_pct}%",
            disabled=running or run.method not in methods,
            key="rerun_at_budget",
        ):
            with services.engine_errors("Starting the selection"):
                from core.pipeline import SelectionSpec, run_selection
                from core.settings import current_settings

                s = run.settings
                spec = SelectionSpec(
                    method=run.method,
                    budget=budget,
                    seed=int(run.seed),
                    backbone=s.get("backbone", "auto"),
                    device=s.get("device", "auto"),
                    # an old run's settings that the method has since dropped are left out (logged)
                    config=current_settings(run.method, dict(s.get("config") or {})),
                )
                services.submit(
                    "selection",
                    services.on_cluster(lambda reporter, ex: {
                        "run_id": run_selection(store, did, spec, reporter=reporter, executor=ex)}),
                    dataset_id=did,
                    params={"method": run.method, "budget": budget},
                )
                st.rerun()

    map_tab, curve_tab, table_tab = st.tabs(["Map", "Value curves", "Chosen examples"])

    with map_tab:
        layout = store.get_artifact(did, "umap", services.UMAP_KEY)
        if layout is None:
            umap_running = job_panel(did, "umap", title="Map layout (UMAP)")
            if not umap_running:
                if services.latest_job(did, "umap") is None:  # first visit: lay out once, in the background
                    from core.explain import compute_umap

                    services.submit(
                        "umap",
                        lambda reporter: {"shape": list(compute_umap(store, did, reporter=reporter).shape)},
                        dataset_id=did,
                    )
                    st.rerun()
                if st.button("Compute the map", key="compute_map"):
                    from core.explain import compute_umap

                    services.submit(
                        "umap",
                        lambda reporter: {"shape": list(compute_umap(store, did, reporter=reporter).shape)},
                        dataset_id=did,
                    )
                    st.rerun()
        else:
            hover = services.hover_table(dataset, labels, run.value, mis).map(chart_text)  # ids, class names
            fig = map_figure(layout, selected=chosen, flagged=flagged, candidate=candidate, hover=hover)
            event = st.plotly_chart(
                fig, key="selection_map", on_select="rerun", selection_mode=("box", "lasso")
            )
            open_in_review(did, event, hover)
            st.caption(
                "Each point is an example laid out by UMAP on its embedding; red = chosen, "
                "blue = discarded, grey = validation/test, ringed = flagged as likely mislabelled."
            )

    with curve_tab:
        table = store.get_table(did, "curve")
        curve_running = job_panel(did, "curve", title="Value curves")
        with st.form("curve_form", border=False):
            cc = st.columns([3, 2, 1], vertical_alignment="bottom")
            default_methods = [x for x in ("hostcp", "random", "clean_random", "knn_shapley") if x in methods]
            curve_methods = cc[0].multiselect(
                "Methods", list(methods), default=default_methods, format_func=lambda x: methods.get(x, x)
            )
            budgets_text = cc[1].text_input(
                "Budgets (fractions)", value=",".join(str(b) for b in DEFAULT_BUDGETS)
            )
            seeds = cc[2].number_input(
                "Seeds",
                min_value=1,
                max_value=10,
                value=1,
                help="Repeats per method and budget; 1 is quick, 3+ shows spread.",
            )
            go_curve = st.form_submit_button("Compute value curves", disabled=curve_running or not methods)
        if go_curve:
            with services.engine_errors("Starting the value curves"):
                from core.errors import ConfigError
                from core.explain import run_value_curve

                budgets = parse_budgets(budgets_text)
                if not curve_methods:
                    raise ConfigError("Choose at least one method for the value curves.")
                chosen_methods = list(curve_methods)
                services.submit(
                    "curve",
                    services.on_cluster(lambda reporter, ex: {
                        "rows": len(
                            run_value_curve(
                                store,
                                did,
                                methods=chosen_methods,
                                budgets=budgets,
                                seeds=int(seeds),
                                reporter=reporter,
                                executor=ex,
                            )
                        )
                    }),
                    dataset_id=did,
                )
                st.rerun()
        if table is not None and len(table):
            st.plotly_chart(
                value_curve_figure(table, current_budget=budget, labels=methods), key="value_curves"
            )
            st.caption(
                "Test accuracy of a model trained on each method's subset, by budget "
                "(mean ± one standard deviation over seeds)."
            )
        else:
            st.caption("No value curves yet for this dataset.")

    with table_tab:
        names = np.asarray(dataset.class_names, dtype=object)
        per_class = pd.DataFrame(
            {
                "class": [chart_text(c) for c in names],  # tick labels of the chart below
                "chosen": np.bincount(labels[chosen], minlength=len(names)),
                "candidates": np.bincount(labels[candidate], minlength=len(names)),
            }
        )
        fig = go.Figure(
            [
                go.Bar(
                    name="candidates", x=per_class["class"], y=per_class["candidates"], marker_color="#9ecae1"
                ),
                go.Bar(name="chosen", x=per_class["class"], y=per_class["chosen"], marker_color="#d62728"),
            ]
        )
        fig.update_layout(
            barmode="overlay",
            height=260,
            margin={"l": 10, "r": 10, "t": 10, "b": 10},
            xaxis_type="category",
            legend={"orientation": "h"},
        )
        st.plotly_chart(fig, key="per_class")
        idx = np.flatnonzero(candidate)
        rows = pd.DataFrame(
            {
                "id": np.asarray(dataset.ids)[idx].astype(str),
                "label": names[labels[idx]],
                "value": run.value[idx],
                "chosen": chosen[idx],
                "flagged": flagged[idx],
            }
        ).sort_values("value", ascending=False)
        st.dataframe(rows, hide_index=True, height=320)
