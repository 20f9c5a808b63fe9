"""The app's link to the engine: the project store, the job runner, cached reads and job launchers.

This is the only module with ``st.cache_*``. The store lives at
``$HOSTCP_HOME/hostcp.sqlite`` (``~/.hostcp`` by default); one
:class:`~core.jobs.JobRunner` per store serves the whole process, so a job
started in one browser tab is seen (and can be cancelled) from any other.
``st.session_state`` holds only ids and widget choices; everything durable is
in the store, so a refresh shows the same project.

Job functions built here run in worker threads and never call ``st``.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from app.markup import md
from core import review
from core.errors import HostcpError
from core.export import export_dataset, run_manifest_path
from core.jobs import JobRunner
from core.review_queue import build_queue, labels_in_force, latest_scores
from core.store import Decision, JobRecord, ReviewStamp, RunRecord, Store, default_store_path

__all__ = [
    "DEFAULT_DEMO",
    "MAX_UPLOAD_MB",
    "UMAP_KEY",
    "UNEXPECTED_ERROR",
    "active_job",
    "current_dataset_id",
    "engine_errors",
    "export_bytes",
    "export_files",
    "get_dataset",
    "get_run",
    "get_runner",
    "get_store",
    "hover_table",
    "remembered",
    "latest_job",
    "require_dataset",
    "ReviewReads",
    "review_reads",
    "run_shown_on_select",
    "parse_config",
    "set_current_dataset",
    "store_path",
    "submit",
]

#: The demo imported on a first launch so the app shows something at once.
DEFAULT_DEMO = "digits-noisy"
#: The upload limit, mirrored from ``.streamlit/config.toml`` (server.maxUploadSize).
MAX_UPLOAD_MB = 200
#: Key of the cached UMAP layout written by :func:`core.explain.compute_umap` with defaults.
UMAP_KEY = "auto|0"
#: Shown (after what was being done) for an error that is a bug; the traceback is in the server log.
UNEXPECTED_ERROR = "an unexpected error happened; the details are in the server log."

_log = logging.getLogger(__name__)

#: Jobs run in threads of the server process (core.jobs). With CPython's default GIL switch
#: interval (5 ms) a rerun next to a computing job (the map's UMAP) waits up to 5 ms for the
#: GIL after every SQLite query or file read: a review decision took twice as long.
GIL_SWITCH_INTERVAL_S = 0.001
sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))


# ----------------------------------------------------------------- resources
def store_path() -> Path:
    """The project database: ``$HOSTCP_HOME/hostcp.sqlite`` (read on every call)."""
    return default_store_path()


@st.cache_resource(show_spinner=False)
def _store(path: str) -> Store:
    return Store(Path(path))


@st.cache_resource(show_spinner=False)
def _runner(path: str) -> JobRunner:
    return JobRunner(_store(path))


def get_store() -> Store:
    """The process-wide :class:`Store` of the current project (thread-safe)."""
    return _store(str(store_path()))


def get_runner() -> JobRunner:
    """The process-wide :class:`JobRunner` of the current project."""
    return _runner(str(store_path()))


# -------------------------------------------------------------- cached reads
@st.cache_data(max_entries=4, show_spinner=False)
def _dataset(path: str, dataset_id: int, created_at: str):
    return _store(path).get_dataset(dataset_id)


def get_dataset(dataset_id: int):
    """``(Dataset, Split)`` of a stored dataset (cached; datasets never change once stored)."""
    store = get_store()
    info = store.dataset_info(dataset_id)
    return _dataset(str(store.path), dataset_id, info.created_at)


@st.cache_data(max_entries=16, show_spinner=False)
def _run(path: str, run_id: int) -> RunRecord:
    return _store(path).get_run(run_id)


def get_run(run_id: int) -> RunRecord:
    """A stored run with its per-example arrays (cached; runs never change once stored)."""
    return _run(str(store_path()), int(run_id))


@st.cache_data(max_entries=4, show_spinner=False)
def _export(
    path: str, dataset_id: int, run_id: int | None, what: str, fmt: str, revision: int, stamp: str
) -> tuple[bytes, str, str]:
    store = _store(path)
    with tempfile.TemporaryDirectory(prefix="hostcp-export-") as tmp:
        name = f"{store.dataset_info(dataset_id).name}-{what}.{fmt}"
        out = export_dataset(store, dataset_id, Path(tmp) / name, what=what, fmt=fmt, run_id=run_id)
        manifest = run_manifest_path(out).read_text(encoding="utf-8")
        return Path(out).read_bytes(), Path(out).name, manifest


def export_bytes(dataset_id: int, *, run_id: int | None, what: str, fmt: str) -> tuple[bytes, str]:
    """The exported file's bytes and name, via ``core.export.export_dataset`` in a temp dir.

    Cached per dataset, run, choice and review revision (a new decision makes a new file).
    """
    return export_files(dataset_id, run_id=run_id, what=what, fmt=fmt)[:2]


def export_files(dataset_id: int, *, run_id: int | None, what: str, fmt: str) -> tuple[bytes, str, str]:
    """:func:`export_bytes` and the JSON text of the export's run manifest (the same cached export)."""
    store = get_store()
    rev = store.labels_revision(dataset_id)
    stamp = store.dataset_info(dataset_id).created_at
    return _export(str(store.path), dataset_id, run_id, what, fmt, rev, stamp)


# ------------------------------------------------------------- review reads
@st.cache_data(max_entries=4, show_spinner=False)
def _mislabels(path: str, dataset_id: int, result_id: int) -> pd.DataFrame | None:
    return _store(path).latest_mislabels(dataset_id)  # result_id (the newest one's) keys the cache


@st.cache_data(max_entries=8, show_spinner=False)
def _review_log(path: str, dataset_id: int, revision: int) -> list[Decision]:
    return _store(path).decisions(dataset_id)  # revision (the newest entry's id) keys the cache


@st.cache_data(max_entries=16, show_spinner=False)
def _queue(path: str, dataset_id: int, stamp: ReviewStamp, examples: tuple[int, ...] | None) -> pd.DataFrame:
    mislabels = _mislabels(path, dataset_id, stamp.result_id)
    if mislabels is None:
        latest_scores(_store(path), dataset_id)  # raises the ConfigError that says what to run
    dataset, _ = _dataset(path, dataset_id, stamp.created_at)
    run = _run(path, stamp.run_id) if stamp.run_id else None
    return build_queue(dataset, mislabels, _review_log(path, dataset_id, stamp.revision),
                       in_subset=None if run is None else run.selected,
                       examples=None if examples is None else list(examples))


@st.cache_data(max_entries=256, show_spinner=False)
def _nearest(path: str, dataset_id: int, created_at: str, result_id: int, example_index: int, k: int):
    from core.pipeline import dataset_embeddings

    backbone = review.neighbour_backbone(_mislabels(path, dataset_id, result_id))
    emb = dataset_embeddings(_store(path), dataset_id, backbone=backbone, device="cpu")
    return review.nearest_examples(emb, example_index, k=k)


@dataclass(frozen=True)
class ReviewReads:
    """The review page's reads of one dataset at one :class:`~core.store.ReviewStamp` (one query).

    Each piece is cached under the part of the stamp it depends on: after a decision only
    the review log is read again and the queue rebuilt from it; the dataset, the scores,
    the run's subset and the neighbours come from their caches.
    """

    path: str
    dataset_id: int
    stamp: ReviewStamp

    @cached_property
    def dataset(self):
        """The stored dataset (:func:`get_dataset`'s), taken from the cache once per rerun."""
        return _dataset(self.path, self.dataset_id, self.stamp.created_at)[0]

    def queue(self, *, examples: list[int] | None = None) -> pd.DataFrame:
        """:func:`core.review.review_queue` (of exactly ``examples`` when given)."""
        scope = None if examples is None else tuple(sorted({int(i) for i in examples}))
        return _queue(self.path, self.dataset_id, self.stamp, scope)

    def neighbours(self, example_index: int, *, k: int = 6) -> pd.DataFrame:
        """:func:`core.review.neighbours`: found once per example, labelled as they are now."""
        order, dist = _nearest(self.path, self.dataset_id, self.stamp.created_at, self.stamp.result_id,
                               int(example_index), int(k))
        dataset = self.dataset
        labels = labels_in_force(dataset.labels, _review_log(self.path, self.dataset_id, self.stamp.revision))
        return review.neighbour_table(dataset, labels, order, dist)


def review_reads(dataset_id: int) -> ReviewReads:
    """The :class:`ReviewReads` of a dataset as it is now (one small read)."""
    store = get_store()
    return ReviewReads(str(store.path), int(dataset_id), store.review_stamp(dataset_id))


def run_shown_on_select(dataset_id: int) -> int | None:
    """The run the Select page shows for this dataset (kept by the router in ``_run_shown``), if any."""
    shown = st.session_state.get("_run_shown") or {}
    return shown.get(dataset_id)


# ----------------------------------------------------------- current dataset
def current_dataset_id(*, auto_demo: bool = False) -> int | None:
    """The dataset this session works on: the chosen one if it still exists, else the newest.

    With ``auto_demo`` an empty project first imports :data:`DEFAULT_DEMO`.
    """
    store = get_store()
    datasets = store.list_datasets()
    if not datasets and auto_demo:
        with engine_errors():
            from core.data import load_demo
            from core.pipeline import import_dataset

            did = import_dataset(store, load_demo(DEFAULT_DEMO), seed=0)
            st.session_state["dataset_id"] = did
            st.toast(f"Loaded the built-in demo **{DEFAULT_DEMO}** to start with.")
            return did
    ids = [d.id for d in datasets]
    chosen = st.session_state.get("dataset_id")
    if chosen in ids:
        return int(chosen)
    return ids[0] if ids else None


def set_current_dataset(dataset_id: int) -> None:
    """Make ``dataset_id`` current for this session (takes effect on the next run)."""
    st.session_state["dataset_id"] = int(dataset_id)
    st.session_state["_pending_dataset_select"] = int(dataset_id)


def remembered(key: str, default: Any) -> tuple[Any, Callable[[], None]]:
    """A widget value that survives page switches and reruns: ``(value, on_change)``.

    Streamlit forgets a widget's state when a page that does not draw it runs.
    Draw the widget with ``key=key``, ``value=value`` (or the matching index) and
    ``on_change=on_change``: the callback copies each change to a shadow entry
    of ``st.session_state`` that is never cleaned up.
    """
    shadow = f"_keep_{key}"

    def on_change() -> None:
        st.session_state[shadow] = st.session_state[key]

    return st.session_state.get(shadow, default), on_change


# ---------------------------------------------------------------------- jobs
@st.cache_data(ttl=30, show_spinner=False)
def _jobs_location(address: str) -> str:
    from core.cluster import describe_jobs_location

    return describe_jobs_location(address)


def jobs_location() -> str:
    """Where jobs run, in one line (this process, or the Ray cluster of ``HOSTCP_RAY_ADDRESS``)."""
    from core.cluster import configured_address

    return _jobs_location(configured_address())


def on_cluster(fn: Callable[[Any, Any], Any]) -> Callable[[Any], Any]:
    """``fn(reporter, executor)`` as a job: joined to the app's Ray cluster (if any) for that job only.

    ``executor`` is ``None`` without ``HOSTCP_RAY_ADDRESS`` (the job runs in this process).
    The server is never joined between jobs: Ray ends a driver whose cluster dies.
    """

    def job(reporter):
        from core.cluster import job_executor

        with job_executor() as executor:
            return fn(reporter, executor)

    return job


def submit(kind: str, fn, *, dataset_id: int | None, params: dict | None = None) -> int:
    """Start ``fn(reporter)`` as a background job; returns the job id."""
    return get_runner().submit(kind, fn, dataset_id=dataset_id, params=params)


def latest_job(dataset_id: int, kind: str) -> JobRecord | None:
    """The newest job of a kind for a dataset (any status), or ``None``."""
    for job in get_store().list_jobs(dataset_id, limit=200):
        if job.kind == kind:
            return job
    return None


def active_job(dataset_id: int, kind: str) -> JobRecord | None:
    """The newest queued or running job of a kind for a dataset, or ``None``."""
    job = latest_job(dataset_id, kind)
    if job is None or job.finished:
        return None
    if not get_runner().is_alive(job.id):
        # queued or started by a process that is gone (or another runner): let the store settle it
        get_store().fail_interrupted_jobs()
        job = get_store().get_job(job.id)
        return None if job.finished else job
    return job


# -------------------------------------------------------------------- errors
@contextmanager
def engine_errors(what: str = "") -> Iterator[None]:
    """Show the errors a user can fix as ``st.error``; log any other one with its traceback.

    :class:`HostcpError` (bad input or settings) shows its own message, which
    says what to fix. Any other exception is a bug: a user cannot act on its
    message and it may hold internals, so it is logged with its traceback
    (``logging.exception``) and the page shows only :data:`UNEXPECTED_ERROR`
    (the page tests fail on that text). Streamlit's rerun/stop signals are
    ``BaseException`` and pass through. Messages and ``what`` may carry
    dataset strings (file, column, class names), so they are shown escaped.

    Args:
        what: What the block does (``"Importing data.csv"``), put before the message.
    """
    prefix = f"{md(what)}: " if what else ""
    try:
        yield
    except HostcpError as e:
        st.error(f"{prefix}{md(e)}")
    except Exception:  # a bug, not bad input: the traceback goes to the server log, not to the user
        _log.exception("Unexpected error in the app%s", f" ({what})" if what else "")
        st.error(f"{prefix}{UNEXPECTED_ERROR}" if what else UNEXPECTED_ERROR.capitalize())


def parse_config(text: str) -> dict:
    """Method settings typed as JSON (``{"epochs": 2}``); raises HostcpError when malformed."""
    text = (text or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise HostcpError(
            f'Method settings must be a JSON object such as {{"seed": 1}}; got {text!r} ({e.msg}).'
        ) from e
    if not isinstance(value, dict):
        raise HostcpError(f"Method settings must be a JSON object; got {type(value).__name__}.")
    return value


def hover_table(
    dataset, labels: np.ndarray, value: np.ndarray | None, mislabels: pd.DataFrame | None
) -> pd.DataFrame:
    """Per-example columns shown when hovering a point of the map."""
    names = np.asarray(dataset.class_names, dtype=object)
    table = pd.DataFrame({"id": np.asarray(dataset.ids).astype(str), "label": names[labels]})
    if value is not None:
        table["value"] = np.where(np.isnan(value), "-", np.char.mod("%.4f", np.nan_to_num(value)))
    if mislabels is not None:
        table["mislabel score"] = np.char.mod("%.3f", mislabels["score"].to_numpy())
        table["suggested"] = names[mislabels["suggested_label"].to_numpy()]
    return table


def require_dataset() -> int:
    """The current dataset's id; without one, point to the Data page and stop this page."""
    did = current_dataset_id()
    if did is None:
        st.info("No dataset yet.")
        st.page_link("app_pages/data.py", label="Import one on the Data page", icon=":material/dataset:")
        st.stop()
    return did
