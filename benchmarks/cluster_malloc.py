"""The glibc malloc setting on dask.distributed workers: ``mean(axis=0)`` of a ~800 MB dataset.

Compares, on the same Blosc uint16 split dataset (written once to FOLDER):

- ``distributed.LocalCluster(2 worker processes x 1 thread)`` with distributed's defaults;
- ``splitds_dask.local_cluster(2)`` (the same, plus ``MALLOC_MMAP_THRESHOLD_=4194304``), and
  the same with ``MALLOC_MMAP_THRESHOLD_=1048576`` (the value in the reference notes, measured on
  datasets with smaller HDF5 chunks);
- dask's threaded scheduler (2 threads).

Run: ``python benchmarks/cluster_malloc.py [FOLDER] [--repeats 5] [--rounds 3]``. For each
setup it prints, over all runs of all rounds (the setups alternate, so that a busy moment of a
shared machine hits them all), the median and range of the wall time of
``ds.to_dask().mean(axis=0).compute()``, and the median CPU time (user + system) and minor page
faults that the computation cost in the processes doing the work (the workers, or this process
for threads). CPU time is what the malloc setting changes, and unlike wall time it does not
depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask

import splitds_dask as sd
from splitds_dask._synthetic import synthetic_movie

N_FRAMES = 768  # 768 x 8 x 256 x 256 uint16 = 805 MB, in 24 blocks of 32 time points (34 MB)


def _usage() -> tuple[float, int]:
    """CPU seconds (user + system) and minor page faults of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_minflt


def _run(ds: sd.SplitDataset, repeats: int, usage: Callable[[], tuple[float, int]]) -> list:
    ds.to_dask().mean(axis=0).compute()  # warm up: workers started, files in the OS cache
    runs = []
    for _ in range(repeats):
        cpu0, faults0 = usage()
        t0 = time.perf_counter()
        ds.to_dask().mean(axis=0).compute()
        wall = time.perf_counter() - t0
        cpu1, faults1 = usage()
        runs.append((wall, cpu1 - cpu0, faults1 - faults0))
    return runs


def _workers_usage(client: Any) -> Callable[[], tuple[float, int]]:
    def usage() -> tuple[float, int]:
        per_worker = client.run(_usage).values()
        return sum(c for c, _ in per_worker), sum(f for _, f in per_worker)

    return usage


def main() -> None:
    import distributed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the setups")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="splitds-malloc-")) / "movie"
    if not folder.exists():
        sd.to_split_dataset(synthetic_movie(N_FRAMES, block_frames=32), folder)
    ds = sd.SplitDataset(folder)
    print(f"dataset   {folder}: {ds.shape} {ds.dtype}, {ds.nbytes / 1e6:.0f} MB, {ds.grid.grid}")

    cluster_kwargs = {"dashboard_address": ":0", "silence_logs": 40}

    def mmap_1mib() -> distributed.LocalCluster:
        key = "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_"
        with dask.config.set({key: 1 << 20}):
            return sd.local_cluster(2, **cluster_kwargs)

    clusters = {
        "LocalCluster(2 x 1), distributed defaults": lambda: distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, **cluster_kwargs
        ),
        "splitds_dask.local_cluster(2)": lambda: sd.local_cluster(2, **cluster_kwargs),
        "local_cluster(2), MALLOC_MMAP_THRESHOLD_=1 MiB": mmap_1mib,
    }
    results: dict[str, list] = {}
    for _ in range(args.rounds):
        for name, make_cluster in clusters.items():
            with make_cluster() as cluster, distributed.Client(cluster) as client:
                runs = _run(ds, args.repeats, _workers_usage(client))
            results.setdefault(name, []).extend(runs)
        with dask.config.set(scheduler="threads", num_workers=2):
            runs = _run(ds, args.repeats, _usage)
        results.setdefault("threaded scheduler (2 threads)", []).extend(runs)

    print(f"{'':<47} {'wall median (range)':<22} {'CPU s':>6} {'faults':>8}  runs")
    for name, runs in results.items():
        walls = [w for w, _, _ in runs]
        wall = statistics.median(walls)
        cpu = statistics.median(c for _, c, _ in runs)
        faults = statistics.median(f for _, _, f in runs)
        print(
            f"{name:<47} {wall:.2f} s ({min(walls):.2f}-{max(walls):.2f}) {cpu:>8.2f} "
            f"{faults / 1000:>7.0f}k  {len(runs)}"
        )


if __name__ == "__main__":
    main()
