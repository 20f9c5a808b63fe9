"""Helpers of the page tests: where the app is, reading metrics, waiting for background jobs."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.store import Store

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "streamlit_app.py")
BUDGET = 0.1  # budget of the pre-filled run


def store_of(home: Path) -> Store:
    return Store(home / "hostcp.sqlite")


def wait_for_jobs(store: Store, timeout: float = 60.0) -> None:
    """Block until every job in the store has finished."""
    deadline = time.monotonic() + timeout
    while any(not j.finished for j in store.list_jobs()):
        if time.monotonic() > deadline:
            raise TimeoutError([(j.kind, j.status, j.stage) for j in store.list_jobs()])
        time.sleep(0.2)


def open_page(page: str) -> AppTest:
    """The app run once, then switched to ``app_pages/<page>.py``, with no exception."""
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    """The value of the metric with this label."""
    for m in at.metric:
        if m.label == label:
            return m.value
    raise KeyError(f"no metric {label!r}; have {[m.label for m in at.metric]}")
