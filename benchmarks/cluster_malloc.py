"""The glibc malloc setting on dask.distributed workers: ``mean(axis=0)`` of a ~800 MB dataset.

Compares, on the same Blosc uint16 split dataset (written once to FOLDER):

- ``distributed.LocalCluster(2 worker processes x 1 thread)`` with distributed's defaults;
- ``splitds_dask.local_cluster(2)`` (the same, plus ``MALLOC_MMAP_THRESHOLD_=4194304``), and
  the same with ``MALLOC_MMAP_THRESHOLD_=1048576`` (1 MiB: the size of the HDF5 chunks this
  package writes; glibc ``mmap``-s requests at or above the threshold, so their buffers still
  are, and the README's "Clusters" section shows twice the page faults of 4 MiB);
- dask's threaded scheduler (2 threads).

With ``--serial`` it first times reading every block once, serially, in one process under
each malloc environment (the effect without a cluster).

Run: ``python benchmarks/cluster_malloc.py [FOLDER] [--repeats 5] [--rounds 3] [--serial]``. For each
setup it prints, over all runs of all rounds (the setups alternate, so that a busy moment of a
shared machine hits them all), the median and range of the wall time of
``ds.to_dask().mean(axis=0).compute()``, and the median CPU time (user + system) and minor page
faults that the computation cost in the processes doing the work (the workers, or this process
for threads). CPU time is what the malloc setting changes, and unlike wall time it does not
depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
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


CLUSTER_KWARGS = {"dashboard_address": ":0", "silence_logs": 40}


def _mmap_1mib() -> Any:
    key = "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_"
    with dask.config.set({key: 1 << 20}):
        return sd.local_cluster(2, **CLUSTER_KWARGS)


def _default_cluster() -> Any:
    import distributed

    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, **CLUSTER_KWARGS)


SETUPS: dict[str, Callable[[], Any] | None] = {
    "LocalCluster(2 x 1), distributed defaults": _default_cluster,
    "splitds_dask.local_cluster(2)": lambda: sd.local_cluster(2, **CLUSTER_KWARGS),
    "local_cluster(2), MALLOC_MMAP_THRESHOLD_=1 MiB": _mmap_1mib,
    "threaded scheduler (2 threads)": None,
}


def _one_setup(name: str, folder: Path, repeats: int) -> list:
    """Runs of one setup, in this (fresh) process."""
    import distributed

    ds = sd.SplitDataset(folder)
    make_cluster = SETUPS[name]
    if make_cluster is None:
        with dask.config.set(scheduler="threads", num_workers=2):
            return _run(ds, repeats, _usage)
    with make_cluster() as cluster, distributed.Client(cluster) as client:
        return _run(ds, repeats, _workers_usage(client))


# Environments of the serial read in one process (--serial): what distributed sets, and fixes.
SERIAL_ENVIRONMENTS = {
    "none (glibc's dynamic threshold)": {},
    "MALLOC_TRIM_THRESHOLD_=65536": {"MALLOC_TRIM_THRESHOLD_": "65536"},
    "the same + MALLOC_MMAP_THRESHOLD_=1048576": {
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "MALLOC_MMAP_THRESHOLD_": "1048576",
    },
    "the same + MALLOC_MMAP_THRESHOLD_=4194304": {
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "MALLOC_MMAP_THRESHOLD_": "4194304",
    },
}


def _serial_pass(folder: Path, repeats: int) -> list:
    """Read every block once, one after the other, in this process (its environment as given)."""
    ds = sd.SplitDataset(folder)
    x = ds.to_dask()

    def one_pass() -> None:
        for i in range(ds.grid.grid[0]):
            x.blocks[i].compute(scheduler="sync")

    runs = []
    one_pass()  # warm up
    for _ in range(repeats):
        cpu0, faults0 = _usage()
        t0 = time.perf_counter()
        one_pass()
        wall = time.perf_counter() - t0
        cpu1, faults1 = _usage()
        runs.append((wall, cpu1 - cpu0, faults1 - faults0))
    return runs


def _serial(folder: Path, repeats: int) -> None:
    print(f"{'serial reads, one process':<47} {'wall median':<22} {'CPU s':>6} {'faults':>8}")
    for name, extra in SERIAL_ENVIRONMENTS.items():
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
        proc = subprocess.run(
            [sys.executable, __file__, str(folder.parent), "--serial-pass"],
            capture_output=True,
            text=True,
            check=True,
            env={**env, **extra},
        )
        runs = json.loads(proc.stdout.splitlines()[-1])
        wall = statistics.median(w for w, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        faults = statistics.median(f for _, _, f in runs)
        print(f"{name:<47} {wall:.2f} s{'':<16} {cpu:>6.2f} {faults / 1000:>7.0f}k")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=None)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the setups")
    parser.add_argument(
        "--serial", action="store_true", help="also time serial reads in one process"
    )
    parser.add_argument("--setup", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--serial-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="splitds-malloc-")) / "movie"
    if args.setup is not None:
        print(json.dumps(_one_setup(args.setup, folder, args.repeats)))
        return
    if args.serial_pass:
        print(json.dumps(_serial_pass(folder, args.repeats)))
        return
    if not folder.exists():
        sd.to_split_dataset(synthetic_movie(N_FRAMES, block_frames=32), folder)
    ds = sd.SplitDataset(folder)
    print(f"dataset   {folder}: {ds.shape} {ds.dtype}, {ds.nbytes / 1e6:.0f} MB, {ds.grid.grid}")

    # Each setup runs in a new process: a nanny puts the worker environment into the
    # environment of the process that starts it, where later clusters would inherit it.
    results: dict[str, list] = {}
    for _ in range(args.rounds):
        for name in SETUPS:
            command = [sys.executable, __file__, str(folder.parent), "--setup", name]
            proc = subprocess.run(
                [*command, "--repeats", str(args.repeats)],
                capture_output=True,
                text=True,
                check=True,
            )
            results.setdefault(name, []).extend(json.loads(proc.stdout.splitlines()[-1]))

    if args.serial:
        _serial(folder, args.repeats)
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
