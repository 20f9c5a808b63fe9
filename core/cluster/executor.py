"""Run independent pieces of work, in order of submission, here or as Ray tasks.

An :class:`Executor` has two verbs: :meth:`~Executor.put` a value every piece needs
(once per job), and :meth:`~Executor.map` a module-level function over the pieces.
``fn(shared, item)`` must be importable by name (a Ray worker imports it) and must
not depend on the process it runs in: the same seed gives the same result anywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from core.cluster.address import reachable
from core.errors import ClusterError
from core.progress import NullReporter, Reporter

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "TASK_RETRIES"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Times Ray re-runs a task whose worker process died (killed, out of memory, its machine lost).
TASK_RETRIES = 3

#: Seconds between checks for Cancel while tasks run.
_POLL_S = 0.25

#: Seconds between checks that the cluster still answers, while no result comes in.
_CHECK_S = 2.0


class Executor(Protocol):
    """What engine code may ask of the place its work runs."""

    #: Where the work runs, in words ("this process", "Ray cluster at 10.0.0.5:6379, 32 CPUs").
    description: str
    #: Pieces that run at once (CPUs of the cluster; 1 in this process).
    parallelism: int

    def put(self, value: Any) -> Any:
        """A handle to ``value`` that :meth:`map` passes to every piece as ``shared``."""

    def map(
        self,
        fn: Callable[[Any, T], R],
        items: Sequence[T],
        *,
        shared: Any = None,
        reporter: Reporter | None = None,
        stage: str = "",
        label: Callable[[T], str] | None = None,
        num_cpus: float = 1.0,
    ) -> list[R]:
        """``[fn(shared, item) for item in items]``, reporting each finished piece; checks Cancel."""


class LocalExecutor:
    """The pieces one after another in this process: exactly the engine without a cluster."""

    description = "this process"
    parallelism = 1

    def put(self, value: Any) -> Any:
        return value

    def map(
        self,
        fn: Callable[[Any, T], R],
        items: Sequence[T],
        *,
        shared: Any = None,
        reporter: Reporter | None = None,
        stage: str = "",
        label: Callable[[T], str] | None = None,
        num_cpus: float = 1.0,
    ) -> list[R]:
        reporter = reporter or NullReporter()
        out = []
        for i, item in enumerate(items):
            reporter.check_cancelled()
            out.append(fn(shared, item))
            reporter.report(stage, (i + 1) / len(items), _progress(label, item, i + 1, len(items)))
        return out


def _progress(label: Callable[[Any], str] | None, item: Any, done: int, total: int) -> str:
    """The progress message after a piece: its label, else how many pieces are done."""
    return label(item) if label else f"{done}/{total}"


def _call(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """Body of every Ray task (engine code sets its own thread counts, so a worker needs no set-up)."""
    return fn(shared, item)


class RayExecutor:
    """Each piece a Ray task on an initialised Ray connection (see :func:`core.cluster.connect`)."""

    def __init__(self, address: str, *, on_lost: Callable[[RayExecutor], None] | None = None) -> None:
        import ray

        self.address = address
        self._on_lost = on_lost  # called once the cluster is seen gone (core.cluster.connect leaves it)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.parallelism = max(cpus, 1)
        self.description = f"Ray cluster at {address}, {cpus} CPUs"
        self._task = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(_call)

    def put(self, value: Any) -> Any:
        import ray

        if not reachable(self.address, timeout=_CHECK_S):
            raise self._lost(ConnectionError(f"nothing answers at {self.address} any more"))
        try:
            return ray.put(value)
        except ray.exceptions.RaySystemError as e:
            raise self._lost(e) from e

    def map(
        self,
        fn: Callable[[Any, T], R],
        items: Sequence[T],
        *,
        shared: Any = None,
        reporter: Reporter | None = None,
        stage: str = "",
        label: Callable[[T], str] | None = None,
        num_cpus: float = 1.0,
    ) -> list[R]:
        import ray
        from ray.exceptions import RayTaskError

        reporter = reporter or NullReporter()
        reporter.check_cancelled()
        task = self._task.options(num_cpus=num_cpus)
        refs = [task.remote(fn, shared, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        out: list[Any] = [None] * len(refs)
        pending, finished, checked = list(refs), 0, time.monotonic()
        try:
            while pending:
                reporter.check_cancelled()
                done, pending = ray.wait(pending, num_returns=len(pending), timeout=_POLL_S)
                if not done and time.monotonic() - checked > _CHECK_S:
                    checked = time.monotonic()
                    if not reachable(self.address, timeout=_CHECK_S):
                        raise self._lost(ConnectionError(f"nothing answers at {self.address} any more"))
                for ref in done:
                    i = index[ref]
                    try:
                        out[i] = ray.get(ref)
                    except RayTaskError as e:  # the work itself raised: the engine's own error
                        raise e.as_instanceof_cause() from None
                    finished += 1
                    reporter.report(stage, finished / len(refs),
                                    _progress(label, items[i], finished, len(refs)))
        except ray.exceptions.RayError as e:
            self._cancel(pending)
            if isinstance(e, RayTaskError):
                raise
            raise self._lost(e) from e
        except BaseException:  # JobCancelled, KeyboardInterrupt, an engine error: stop the rest
            self._cancel(pending)
            raise
        return out

    def _cancel(self, refs: list) -> None:
        import ray

        if not refs or not ray.is_initialized():
            return
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # the cluster may be gone already; nothing left to stop then
                log.debug("could not cancel %s", ref, exc_info=True)

    def _lost(self, e: BaseException) -> ClusterError:
        """The error for a cluster gone; the connection is left first, so Ray does not end this process."""
        if self._on_lost is not None:
            self._on_lost(self)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return ClusterError(
            f"The Ray cluster at {self.address} lost this job's work ({type(e).__name__}: {first[:200]}). "
            "Check that the cluster is up (ray status), then run the job again."
        )

