"""Running on ``dask.distributed``: a correctly configured local cluster, and its configuration.

distributed starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
``distributed.nanny.pre-spawn-environ``). Setting any glibc malloc threshold turns off glibc's
dynamic mmap threshold, which then stays at 128 KiB: every decompressed chunk buffer of a block
read (1 MiB HDF5 chunks in the files this package writes) is ``mmap``-ed, page-faulted in and
unmapped again. Reading a split dataset then takes 1.5 to 1.7 times the CPU time and 4 to 5
times the page faults (figures in the README's "Clusters" section). Setting
``MALLOC_MMAP_THRESHOLD_`` to 4 MiB, above those buffers, before the worker process starts
restores the speed while keeping distributed's trimming.

``distributed`` is optional (the ``distributed`` extra): it is imported only when a function here
needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dask

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

__all__ = [
    "MALLOC_MMAP_THRESHOLD",
    "connect",
    "distributed_config",
    "local_cluster",
    "worker_environment",
]

#: Bytes: allocations at least this large are ``mmap``-ed by the workers' glibc malloc.
MALLOC_MMAP_THRESHOLD = 4 << 20

_PRE_SPAWN = "distributed.nanny.pre-spawn-environ"
_MMAP_VAR = "MALLOC_MMAP_THRESHOLD_"


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            "this needs dask.distributed; install it with: pip install 'splitds-dask[distributed]'"
        ) from exc
    return distributed


def worker_environment() -> dict[str, str]:
    """The environment variables dask worker processes should start with.

    distributed's own ``distributed.nanny.pre-spawn-environ`` (as configured now, variables
    already set in this process's environment taking precedence, as the nanny does) plus
    ``MALLOC_MMAP_THRESHOLD_=4194304`` unless a value for it is already configured or set.

    Returns
    -------
    dict of str to str
        Variable names and values, e.g. to ``export`` in a batch job script.
    """
    configured: Mapping[str, Any] = dask.config.get(_PRE_SPAWN, default={}) or {}
    env = {k: os.environ.get(k, str(v)) for k, v in configured.items() if v is not None}
    # A value configured as None means "unset" in distributed's convention: respect it.
    if _MMAP_VAR not in configured:
        env[_MMAP_VAR] = os.environ.get(_MMAP_VAR, str(MALLOC_MMAP_THRESHOLD))
    return env


def distributed_config() -> dict[str, Any]:
    """dask configuration that gives worker processes :func:`worker_environment`.

    For clusters started some other way than :func:`local_cluster`, in the process that starts
    the workers' nannies, before it starts them::

        with dask.config.set(splitds_dask.distributed_config()):
            cluster = distributed.LocalCluster(...)

    Returns
    -------
    dict
        ``{"distributed.nanny.pre-spawn-environ": worker_environment()}``.
    """
    return {_PRE_SPAWN: worker_environment()}


_nanny_class: Any = None


def _configured_nanny() -> Any:
    """A Nanny that reads :func:`distributed_config` whenever it is created (also on scaling)."""
    global _nanny_class
    if _nanny_class is None:
        from distributed import Nanny

        class SplitdsNanny(Nanny):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                with dask.config.set(distributed_config()):
                    super().__init__(*args, **kwargs)

        _nanny_class = SplitdsNanny
    return _nanny_class


def local_cluster(
    n_workers: int | None = None, *, threads_per_worker: int = 1, **kwargs: Any
) -> LocalCluster:
    """Start a ``distributed.LocalCluster`` of worker processes configured for split datasets.

    h5py runs one HDF5 call at a time per process, so parallel reads need worker processes; each
    worker starts with :func:`worker_environment` (the malloc setting that keeps block reads
    fast), also workers added later by ``cluster.scale``. As for any distributed ``Nanny``, the
    variables are also set in this process's ``os.environ`` (that is how they reach the worker
    processes), so processes started from here later inherit them.

    Parameters
    ----------
    n_workers : int, optional
        Worker processes (default: distributed's choice, one per core with one thread each).
    threads_per_worker : int, optional
        Threads in each worker process.
    **kwargs
        Passed to ``distributed.LocalCluster`` (``memory_limit``, ``dashboard_address``, ...).

    Returns
    -------
    distributed.LocalCluster
        Use as a context manager, with ``distributed.Client(cluster)``.

    Raises
    ------
    ImportError
        ``distributed`` is not installed.
    TypeError
        ``processes=False`` or ``worker_class`` was passed.
    """
    distributed = _import_distributed()
    if not kwargs.pop("processes", True):
        raise TypeError("local_cluster starts worker processes; processes=False is not supported")
    if "worker_class" in kwargs:
        raise TypeError(
            "local_cluster chooses the worker_class; to use your own, start "
            "distributed.LocalCluster inside dask.config.set(splitds_dask.distributed_config())"
        )
    cluster: LocalCluster = distributed.LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        processes=True,
        worker_class=_configured_nanny(),
        **kwargs,
    )
    return cluster


def connect(address: str, **kwargs: Any) -> Client:
    """Connect to a running dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``.

    The workers behind it should have been started with :func:`worker_environment` (see the
    README's "Clusters" section for a dask-jobqueue recipe).

    Parameters
    ----------
    address : str
        The scheduler's address.
    **kwargs
        Passed to ``distributed.Client`` (e.g. ``timeout``).

    Returns
    -------
    distributed.Client
        Also the default scheduler for ``.compute()`` until it is closed.
    """
    distributed = _import_distributed()
    client: Client = distributed.Client(address, **kwargs)
    return client
