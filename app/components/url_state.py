"""Where the user is (dataset, run, example) kept in the URL, so reload, bookmarks and Back land there.

``st.session_state`` dies with the browser tab's session: a reload starts a new
session, which used to land on the newest dataset. The URL survives it. Each value
has one owner in ``st.session_state`` (the dataset select box, the review card...);
the URL mirrors it:

* :func:`adopt` reads a query parameter when it is *new to this session*: a reload or
  a bookmark (a fresh session), or the browser's Back and Forward buttons (the URL
  changed under a running session). The page then makes it its current value.
* :func:`publish` writes the current value back after each run, so the next reload
  finds it.

"New" means different from what this session last adopted or published; without that
rule the URL would undo every choice the user makes in the page (the choice changes
the state first and the URL only at the end of the run).
"""

from __future__ import annotations

from collections.abc import Collection

import streamlit as st

__all__ = ["adopt", "adopt_text", "publish"]


def _seen(param: str) -> str:
    return f"_url_seen_{param}"


def adopt(param: str, valid: Collection[int]) -> int | None:
    """The int in query parameter ``param`` when this session has not seen it yet and it is valid.

    Args:
        param: The query parameter (``dataset``, ``run``, ``example``).
        valid: The values that may be adopted (ids that exist); anything else in the
            URL (a deleted dataset, a typo) is ignored.

    Returns:
        The value to make current, or ``None`` to keep the session's own.
    """
    raw = st.query_params.get(param)
    if raw is None or raw == st.session_state.get(_seen(param)):
        return None
    st.session_state[_seen(param)] = raw
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value in valid else None


def adopt_text(param: str, *, max_len: int = 100) -> str | None:
    """Like :func:`adopt` for a free-text parameter (the reviewer's name): stripped, at most
    ``max_len`` characters, ``None`` when empty or already seen by this session."""
    raw = st.query_params.get(param)
    if raw is None or raw == st.session_state.get(_seen(param)):
        return None
    st.session_state[_seen(param)] = raw
    return raw.strip()[:max_len] or None


def publish(param: str, value: int | str | None) -> None:
    """Put ``value`` in the URL as ``param`` (``None`` removes it); nothing is sent if it is there."""
    text = None if value is None else value if isinstance(value, str) else str(int(value))
    if st.query_params.get(param) != text:
        if text is None:
            del st.query_params[param]
        else:
            st.query_params[param] = text
    st.session_state[_seen(param)] = text
