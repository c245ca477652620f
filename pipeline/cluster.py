"""Connecting to a Dask cluster for stage one (`sal3d extract --scheduler`).

The cluster is the user's: `dask scheduler` and `dask worker` processes they started (GPU workers
advertise ``--resources GPU=1``), reached by the scheduler's address. ``local:N`` starts a
`distributed.LocalCluster` of N single-threaded worker processes on this machine instead, for a
workstation or a test. dask.distributed is an optional dependency (``pip install 'sal3d[cluster]'``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sal3d.pipeline.device import usable_cpus
from sal3d.pipeline.errors import Sal3dError

LOCAL_PREFIX = "local:"
CONNECT_TIMEOUT_S = 30


class ClusterError(Sal3dError):
    """A cluster that cannot be used; the message names the address and the reason."""


def _distributed():
    try:
        import distributed  # noqa: PLC0415 (optional: only --scheduler needs it)
    except ImportError:
        raise ClusterError("--scheduler needs dask.distributed, which is not installed: "
                           "pip install 'sal3d[cluster]'") from None
    return distributed


def local_workers(address: str) -> int | None:
    """N for ``local:N``, None for a scheduler address; a malformed ``local:`` is refused."""
    if not address.startswith(LOCAL_PREFIX):
        return None
    count = address[len(LOCAL_PREFIX):]
    if not count.isdigit() or int(count) < 1:
        raise ClusterError(f"--scheduler {address!r}: expected local:N with N >= 1 worker processes")
    return int(count)


@contextmanager
def dask_client(address: str) -> Iterator[object]:
    """A `distributed.Client` for `address` (``tcp://HOST:8786``, ``local:N``...), closed on exit;
    a LocalCluster it started is shut down with it."""
    distributed = _distributed()
    workers = local_workers(address)
    if workers is not None:
        # processes, not threads: each worker holds its own trunk and decoders, and decord readers
        # must not cross a fork. One task at a time per worker, whose trunk gets the worker's share of
        # the cores: distributed would otherwise start every worker with OpenMP and MKL at 1 thread
        # (torch takes its thread count from MKL's).
        cores = str(max(1, usable_cpus() // workers))
        threads = {"OMP_NUM_THREADS": cores, "MKL_NUM_THREADS": cores}  # set before the task imports torch
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=":0", env=threads) as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(f"--scheduler {address}: cannot connect ({type(error).__name__}: {error})") from None
    with client:
        yield client


def cluster_workers(client) -> dict:
    """The scheduler's record of every worker: {address: {"resources": ..., "nthreads": ...}}."""
    try:
        info = client.scheduler_info(n_workers=-1)  # newer distributed lists only 5 workers by default
    except TypeError:
        info = client.scheduler_info()
    return info.get("workers", {})


def gpu_resources(client) -> dict | None:
    """``{"GPU": 1}`` when some worker of the cluster advertises a GPU resource (each video task then
    claims one), else None."""
    if any(info.get("resources", {}).get("GPU", 0) >= 1 for info in cluster_workers(client).values()):
        return {"GPU": 1}
    return None
