"""Where the commands compute: the ``--scheduler`` choice, and progress shown on a terminal.

``sync``, ``threads``, ``processes``, ``local`` (:func:`~splitds_dask.local_cluster`) or the
address of a running dask scheduler. Progress goes to stderr (stdout is for results), and only
when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["SCHEDULERS", "Runner", "scheduler_arg", "show_progress", "use_scheduler"]

SCHEDULERS = ("sync", "threads", "processes", "local")
_ADDRESS = re.compile(r"^([a-z0-9+]+://)?[\w.\-\[\]:]+:\d+$", re.IGNORECASE)


def scheduler_arg(text: str) -> str:
    """The ``--scheduler`` argument type: a scheduler's name or a dask scheduler's address."""
    if text in SCHEDULERS or ("://" in text and len(text) > 6) or _ADDRESS.match(text):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid scheduler {text!r}: expected sync, threads, processes, local, or a dask "
        "scheduler's address such as tcp://10.0.0.5:8786"
    )


@contextlib.contextmanager
def use_scheduler(spec: str) -> Iterator[Any]:
    """Run the dask computations of the block on ``spec``; yields the distributed Client, if any."""
    import dask

    if spec in ("sync", "threads", "processes"):
        with dask.config.set(scheduler=spec):
            yield None
        return
    from splitds_dask._integrations.cluster import _import_distributed, connect, local_cluster

    distributed = _import_distributed()
    if spec == "local":
        with (
            local_cluster(dashboard_address=":0", silence_logs=40) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    else:
        with connect(spec, timeout="10s") as client:
            yield client


def show_progress(args: argparse.Namespace) -> bool:
    """Whether to draw progress: not asked away with ``--no-progress``, and stderr a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


class Runner:
    """Computes dask collections on the chosen scheduler, with a progress bar on a terminal."""

    def __init__(self, client: Any, progress: bool) -> None:
        self.client = client
        self.progress = progress

    def compute(self, *collections: Any) -> tuple[Any, ...]:
        """``dask.compute(*collections)`` on the client, if any, with a progress bar if shown."""
        import dask

        if self.client is not None:
            futures = self.client.compute(list(collections))
            if self.progress:
                from distributed import progress

                # distributed draws its bar on stdout; stdout is for results here.
                with contextlib.redirect_stdout(sys.stderr):
                    progress(futures)
            return tuple(self.client.gather(futures))
        if self.progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar(out=sys.stderr):
                return tuple(dask.compute(*collections))
        return tuple(dask.compute(*collections))

    def quiet(self, *collections: Any) -> tuple[Any, ...]:
        """:meth:`compute` without a progress bar (for slabs, counted by :meth:`on_slab`)."""
        return Runner(self.client, False).compute(*collections)

    def on_slab(self, done: int, total: int) -> None:
        """One progress line for a file written slab by slab."""
        if self.progress:
            end = "\n" if done == total else ""
            print(f"\rwritten {done} of {total} slabs", end=end, file=sys.stderr, flush=True)
