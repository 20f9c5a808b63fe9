"""The Select page's controls (budget, method, seed, method settings) take the settings of the run shown.

A reload or a bookmark starts a new session, where every widget would go back to its
default. The URL names the run shown (``?run=7``, see :mod:`app.components.url_state`) and
the store holds that run's own settings, so nothing else needs to be in the URL: the
controls take the run's settings whenever the run shown is new to this session (a reload,
a bookmark, another run picked in "Showing", a run that just finished, another dataset).
Between those moments the widgets own their values (the user moves the slider to preview
another budget or prepares the next run); each value is shadowed in ``st.session_state``
so it also survives a visit to another page, which drops a widget's state.

The widgets are drawn with ``key=`` and no ``value=``: their value is always the session
state set here, so Streamlit never sees two defaults for one widget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Any

import streamlit as st

from core.settings import current_settings

__all__ = ["CONTROLS", "control", "follow_run", "run_controls"]

#: The controls and their values before any run: widget key -> default.
CONTROLS: dict[str, Any] = {"budget_pct": 10, "method": "hostcp", "seed": 0, "method_config": ""}
SEED_MAX = 10_000  # the seed box's upper bound
_FOLLOWED = "_controls_follow_run"  # (dataset id, run id) whose settings the controls took last


def _shadow(key: str) -> str:
    return f"_keep_{key}"  # the same shadow entry as services.remembered


def run_controls(run: dict[str, Any]) -> dict[str, Any]:
    """The control values that reproduce ``run`` (a row of :meth:`core.store.Store.list_runs`).

    The budget is shown in whole percent (a CLI run at 12.5 % shows 12 %, previewed from the
    run's values); the method settings are the JSON the run was given (``""`` for none).
    """
    # as the method takes them today: a setting it no longer has (an old run's ablation) is dropped
    config = current_settings(str(run["method"]), (run.get("settings") or {}).get("config") or {})
    return {
        "budget_pct": min(100, max(1, round(float(run["budget"]) * 100))),
        "method": str(run["method"]),
        "seed": int(run["seed"]),
        "method_config": json.dumps(config) if config else "",
    }


def follow_run(dataset_id: int, run: dict[str, Any] | None, methods: Collection[str]) -> None:
    """Set the controls from ``run``'s settings when it is not the run they last followed.

    Call before the controls are drawn. A value the widget cannot show (a method not
    installed here, a seed beyond the box's range) leaves that control as it is.

    Args:
        dataset_id: The dataset on screen.
        run: The run shown (a :meth:`~core.store.Store.list_runs` row), or ``None`` before any run.
        methods: The method names the method box offers.
    """
    shown = (int(dataset_id), None if run is None else int(run["id"]))
    if st.session_state.get(_FOLLOWED) == shown:
        return
    st.session_state[_FOLLOWED] = shown
    if run is None:
        return
    for key, value in run_controls(run).items():
        if (key == "method" and value not in methods) or (key == "seed" and not 0 <= value <= SEED_MAX):
            continue
        st.session_state[key] = st.session_state[_shadow(key)] = value


def control(
    key: str, *, default: Any = None, valid: Callable[[Any], bool] | None = None
) -> Callable[[], None]:
    """Give widget ``key`` its value before it is drawn; returns the widget's ``on_change``.

    The value is the widget's shadow (the user's last change, or the run followed last),
    else its state, else ``default`` (:data:`CONTROLS`' by default); one that ``valid``
    refuses (a method that is not installed) becomes ``default``. The shadow wins over the
    state because Streamlit keeps a value once set through ``st.session_state`` under the
    key and brings it back when the widget was dropped by a visit to another page.
    """
    shadow = _shadow(key)
    default = CONTROLS[key] if default is None else default
    value = st.session_state.get(shadow, st.session_state.get(key, default))
    if valid is not None and not valid(value):
        value = default
    if key not in st.session_state or st.session_state[key] != value:
        st.session_state[key] = value

    def on_change() -> None:
        st.session_state[shadow] = st.session_state[key]

    return on_change
