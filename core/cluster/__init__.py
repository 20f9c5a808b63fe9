"""Where a job's independent pieces of work run: in this process, or on a Ray cluster.

Engine code that has independent work (the trainings of a value curve, the folds of
the detector, the shards of a HOST-CP selection) hands it to an :class:`Executor`.
Without a cluster that is :class:`LocalExecutor`: the same loop, in this process, with
no Ray import. Given an address (``--ray ADDRESS``, ``--ray local``, or the app's
``HOSTCP_RAY_ADDRESS``) it is :class:`RayExecutor`: shared arrays go into Ray's
object store once per job, each piece is a Ray task retried when its worker dies,
and Cancel cancels the outstanding tasks. Results come back in the order of the
work, so a job gives the same numbers either way.
"""

from core.cluster.connect import (
    ADDRESS_ENV,
    configured_address,
    connect,
    describe_jobs_location,
    job_executor,
    reachable,
)
from core.cluster.executor import Executor, LocalExecutor, RayExecutor
from core.cluster.local import LocalCluster

__all__ = [
    "ADDRESS_ENV",
    "Executor",
    "configured_address",
    "describe_jobs_location",
    "LocalCluster",
    "LocalExecutor",
    "RayExecutor",
    "connect",
    "job_executor",
    "reachable",
]
