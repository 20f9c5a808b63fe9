"""Plotly figures shared by the app and the CLI: subset value curves and the UMAP map."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["value_curve_figure", "map_figure", "METHOD_COLORS"]

#: One colour per method, stable across charts (HOST-CP stands out).
METHOD_COLORS = {
    "hostcp": "#d62728",
    "random": "#7f7f7f",
    "clean_random": "#2ca02c",
    "facility_location": "#1f77b4",
    "kcenter": "#9467bd",
    "knn_shapley": "#8c564b",
    "data_oob": "#e377c2",
    "full": "#000000",
}


def value_curve_figure(
    table: pd.DataFrame, *, current_budget: float | None = None, labels: dict[str, str] | None = None
) -> go.Figure:
    """Test accuracy against budget per method, mean with a band of one standard deviation.

    Args:
        table: Rows of (method, budget, seed, accuracy); method ``full`` is drawn as a line.
        current_budget: Marked with a vertical line when given.
        labels: Display names of methods.
    """
    labels = labels or {}
    fig = go.Figure()
    stats = table.groupby(["method", "budget"])["accuracy"].agg(["mean", "std", "count"]).reset_index()
    stats["std"] = stats["std"].fillna(0.0)
    for method, g in stats[stats["method"] != "full"].groupby("method", sort=False):
        g = g.sort_values("budget")
        color = METHOD_COLORS.get(method, None)
        x = (100 * g["budget"]).tolist()
        fig.add_trace(
            go.Scatter(
                x=x + x[::-1],
                y=(g["mean"] + g["std"]).tolist() + (g["mean"] - g["std"]).tolist()[::-1],
                fill="toself",
                line={"width": 0},
                fillcolor=color,
                opacity=0.15,
                hoverinfo="skip",
                showlegend=False,
                legendgroup=method,
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=g["mean"],
                mode="lines+markers",
                name=labels.get(method, method),
                line={"color": color, "width": 3 if method == "hostcp" else 1.5},
                legendgroup=method,
                customdata=np.stack([g["std"], g["count"]], axis=1),
                hovertemplate="%{x:.0f}%: %{y:.3f} ± %{customdata[0]:.3f} (%{customdata[1]} seeds)",
            )
        )
    full = stats[stats["method"] == "full"]
    if len(full):
        fig.add_hline(
            y=float(full["mean"].mean()),
            line_dash="dash",
            line_color="black",
            annotation_text="all training data",
            annotation_position="bottom right",
        )
    if current_budget is not None:
        fig.add_vline(
            x=100 * current_budget, line_dash="dot", line_color="#444", annotation_text="current budget"
        )
    fig.update_layout(
        xaxis_title="budget (% of training data)",
        yaxis_title="test accuracy",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "y": -0.3, "yanchor": "top"},
        height=460,
    )
    return fig


def map_figure(
    layout: np.ndarray,
    *,
    selected: np.ndarray,
    flagged: np.ndarray,
    candidate: np.ndarray,
    hover: pd.DataFrame,
) -> go.Figure:
    """The 2-D map: chosen versus discarded candidates, flagged points ringed, others faint.

    Args:
        layout: ``(N, 2)`` UMAP coordinates.
        selected: ``(N,)`` bool, in the chosen subset.
        flagged: ``(N,)`` bool, likely mislabelled.
        candidate: ``(N,)`` bool, could be selected (training rows not excluded).
        hover: ``N`` rows of columns shown on hover (id, label, value, mislabel score...).
    """
    fig = go.Figure()
    hover = hover.reset_index(drop=True)
    cols = list(hover.columns)
    template = "<br>".join(f"{c}: %{{customdata[{i}]}}" for i, c in enumerate(cols)) + "<extra></extra>"
    groups = [
        ("held out (validation/test)", ~candidate, "#dddddd", 4),
        ("discarded", candidate & ~selected, "#9ecae1", 6),
        ("chosen", candidate & selected, "#d62728", 7),
    ]
    for name, mask, color, size in groups:
        idx = np.flatnonzero(mask)
        fig.add_trace(
            go.Scattergl(
                x=layout[idx, 0],
                y=layout[idx, 1],
                mode="markers",
                name=f"{name} ({len(idx)})",
                marker={"color": color, "size": size, "opacity": 0.85},
                customdata=hover.iloc[idx].to_numpy(),
                hovertemplate=template,
            )
        )
    idx = np.flatnonzero(flagged)
    fig.add_trace(
        go.Scattergl(
            x=layout[idx, 0],
            y=layout[idx, 1],
            mode="markers",
            name=f"flagged ({len(idx)})",
            marker={"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": "black", "width": 1.5}},
            customdata=hover.iloc[idx].to_numpy(),
            hovertemplate=template,
        )
    )
    fig.update_layout(
        xaxis={"visible": False},
        yaxis={"visible": False},
        height=520,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        legend={"orientation": "h", "y": -0.05},
    )
    return fig
