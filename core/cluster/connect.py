"""Joining a Ray cluster for as long as work needs it, and leaving it after.

``address`` is what a user types: ``None`` or ``""`` for this process (no Ray
import at all), ``"local"`` for a cluster of this machine started for the command
and stopped after it (:class:`~core.cluster.local.LocalCluster`), or
``HOST:PORT`` of a running cluster (``ray start --head`` prints it).

Two facts of Ray shape this module. An address where nothing listens makes
``ray.init`` wait for minutes, so the port is tried first and fails at once with one
line. And a driver whose cluster's GCS dies is ended by Ray itself, 60 s later,
whatever it is doing: in the app's server that would be the whole app. So a
process is joined to a cluster only while a job needs it (joining costs about a
second), the executor checks the cluster between results and leaves at once when
it is gone (:meth:`~core.cluster.executor.RayExecutor.map`), and uses of one
process at the same time (a job and the page that shows where jobs run) share one
connection, counted.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from core.cluster.address import reachable
from core.cluster.executor import Executor, LocalExecutor, RayExecutor
from core.cluster.local import LocalCluster
from core.errors import ClusterError, ConfigError

__all__ = ["ADDRESS_ENV", "configured_address", "connect", "describe_jobs_location", "job_executor",
           "reachable"]

log = logging.getLogger(__name__)

#: Environment variable the app reads: the Ray cluster its jobs run on (unset: this process).
ADDRESS_ENV = "HOSTCP_RAY_ADDRESS"

_lock = threading.RLock()
_joined: dict = {"address": None, "executor": None, "users": 0}
_cpus_seen: dict[str, int] = {}  # CPUs of each cluster joined, for the UI's line without joining again


def _check_reachable(address: str) -> None:
    if not reachable(address):
        raise ClusterError(
            f"No Ray cluster answers at {address}. Start one with `ray start --head`, use --ray local for "
            "a cluster of this machine, or leave --ray out to run in this process."
        )


def _join(address: str) -> RayExecutor:
    import ray

    _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as e:
        raise ClusterError(f"Could not join the Ray cluster at {address}: {e}") from e
    executor = RayExecutor(address, on_lost=_lost)
    _cpus_seen[address] = executor.parallelism
    return executor


def _leave() -> None:
    import ray

    _joined.update(address=None, executor=None, users=0)
    try:
        ray.shutdown()
    except Exception:  # the cluster is gone already: nothing of ours is left to close
        log.warning("ray.shutdown failed", exc_info=True)


def _lost(executor: RayExecutor) -> None:
    """The executor saw its cluster go: leave now, before Ray ends this process for it."""
    with _lock:
        if _joined["executor"] is executor:
            _leave()


@contextmanager
def _joined_to(address: str) -> Iterator[RayExecutor]:
    with _lock:
        if _joined["executor"] is not None and _joined["address"] != address:
            _check_reachable(address)
            raise ClusterError(f"This process is using the Ray cluster at {_joined['address']}; "
                               f"it cannot join {address} at the same time.")
        if _joined["executor"] is None:
            _joined.update(address=address, executor=_join(address), users=0)
        _joined["users"] += 1
        executor = _joined["executor"]
    try:
        yield executor
    finally:
        with _lock:
            if _joined["executor"] is executor:
                _joined["users"] -= 1
                if _joined["users"] <= 0:
                    _leave()


@contextmanager
def connect(address: str | None, *, num_cpus: int | None = None) -> Iterator[Executor]:
    """An executor for a piece of work; the connection (and a ``"local"`` cluster) ends with it.

    Args:
        address: ``None``/``""`` (this process), ``"local"``, or ``HOST:PORT``.
        num_cpus: CPUs of a ``"local"`` cluster (default: this machine's).

    Raises:
        ConfigError: a malformed address.
        ClusterError: nothing answers at the address, Ray would not start, or this process
            is joined to another cluster.
    """
    if not address:
        yield LocalExecutor()
        return
    cluster = None
    if address == "local":
        cluster = LocalCluster(num_cpus or os.cpu_count() or 1)
        address = cluster.address
    try:
        with cluster.driver_env() if cluster is not None else nullcontext(), _joined_to(address) as executor:
            yield executor
    finally:
        if cluster is not None:
            cluster.stop()


def configured_address() -> str:
    """The app's cluster: ``$HOSTCP_RAY_ADDRESS`` stripped (``""``: jobs run in this process)."""
    return os.environ.get(ADDRESS_ENV, "").strip()


@contextmanager
def job_executor(address: str | None = None) -> Iterator[RayExecutor | None]:
    """For one job of a long-lived process: the cluster at ``address`` (default the app's), or ``None``.

    ``None`` means this process, which is what the engine does without an executor.

    Raises:
        ConfigError: a malformed address, or ``local`` (a server does not start clusters).
        ClusterError: nothing answers at the address.
    """
    address = (address if address is not None else configured_address()).strip()
    if not address:
        yield None
        return
    if address == "local":
        raise ConfigError(f"{ADDRESS_ENV}=local is not supported: start a cluster with `ray start --head` "
                          "and give its HOST:PORT.")
    with _joined_to(address) as executor:
        yield executor


def describe_jobs_location(address: str | None = None) -> str:
    """One line for the UI: "this process", or the cluster's address and CPUs, or why it is unreachable."""
    address = (address if address is not None else configured_address()).strip()
    if not address:
        return "Jobs run in this process (set HOSTCP_RAY_ADDRESS to use a Ray cluster)."
    try:
        if not reachable(address, timeout=2.0):
            return (f"Jobs are set to run on the Ray cluster at {address} ({ADDRESS_ENV}), but nothing "
                    "answers there: they will fail until it is up.")
        if address not in _cpus_seen:
            with job_executor(address):
                pass
    except (ClusterError, ConfigError) as e:
        return f"Jobs are set to run on a Ray cluster, but: {e}"
    return f"Jobs run on the Ray cluster at {address}, {_cpus_seen[address]} CPUs."
