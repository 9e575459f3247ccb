"""What checking the chunks' CRC32C costs a full read, against the same read with checks off.

A uint16 imaging movie (tissue-shaped background, Poisson shot noise; about 1 GB by default) is
written once with ``to_split_dataset`` (which records every chunk's CRC32C), its files are read
once to warm the page cache, then each workload is timed round-robin with
``splitds.checksums`` set to ``verify`` (the default) and to ``ignore``:

* ``getitem``: ``ds[...]``, the whole array through the Blosc fast path (pool threads);
* ``dask max``: ``ds.to_dask().max().compute()`` with the threaded scheduler.

Reported per workload: the median wall time of ``--repeat`` runs, the throughput in MB/s of
decompressed data, and the ratio verify / ignore (the cost of checking is ratio - 1); also the
median CPU time of this process (all its threads), which other programs loading the machine
disturb less than the wall time.

Run from the repository root::

    python benchmarks/checksum_cost.py [--frames 512] [--frame-shape 8 512 256] [--block 16]
        [--codec blosc] [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dask
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _data import warm_page_cache
from _machine import describe, format_machine
from _timing import Stat, stat_of

import splitds_dask as sd


def _movie(frames: int, frame_shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in frame_shape[1:]))
    tissue = np.exp(-sum(g**2 for g in grids) * 2.0).T
    bg = 100.0 + 250.0 * tissue[None] * np.linspace(1.0, 0.5, frame_shape[0])[:, None, None]
    pool = [rng.poisson(bg).astype(np.uint16) for _ in range(min(16, frames))]
    out = np.empty((frames, *frame_shape), np.uint16)
    for i in range(frames):
        out[i] = pool[i % len(pool)] + np.uint16(round(1.5 + 1.5 * math.sin(i / 15.0)))
    return out


def _interleaved(
    fns: dict[str, Callable[[], None]], repeat: int
) -> tuple[dict[str, Stat], dict[str, Stat]]:
    """Wall and CPU seconds of each call, round-robin after one untimed warm-up round."""
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeat + 1):
        for name, fn in fns.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if round_:
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
    return (
        {name: stat_of(v) for name, v in wall.items()},
        {name: stat_of(v) for name, v in cpu.items()},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=512)
    parser.add_argument("--frame-shape", type=int, nargs="+", default=[8, 512, 256])
    parser.add_argument("--block", type=int, default=16, help="frames per block file")
    parser.add_argument("--codec", default="blosc")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data", type=Path, default=None, help="folder for the dataset")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="checksum-cost-", dir=args.data))
    try:
        data = _movie(args.frames, tuple(args.frame_shape))
        root = work / "movie"
        sd.to_split_dataset(data, root, block_shape=args.block, compression=args.codec)
        nbytes = data.nbytes
        del data
        stored = sum(p.stat().st_size for p in root.glob("*.h5"))
        warm_page_cache([root])
        ds = sd.SplitDataset(root)

        def getitem() -> None:
            ds[...]

        def dask_max() -> None:
            ds.to_dask().max().compute(scheduler="threads")

        workloads = {"getitem": getitem, "dask max": dask_max}
        fns = {}
        for name, fn in workloads.items():
            for mode in ("verify", "ignore"):

                def run(fn=fn, mode=mode) -> None:
                    with dask.config.set({"splitds.checksums": mode}):
                        fn()

                fns[f"{name} / {mode}"] = run
        stats, cpu = _interleaved(fns, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(format_machine(describe()))
    print(
        f"dataset: {args.frames} x {tuple(args.frame_shape)} uint16, {nbytes / 1e6:.0f} MB "
        f"({stored / 1e6:.0f} MB stored, codec {args.codec}), blocks of {args.block} frames; "
        f"median of {args.repeat} runs, page cache warm"
    )
    report = {}
    for name in workloads:
        verify, ignore = stats[f"{name} / verify"], stats[f"{name} / ignore"]
        cpu_verify, cpu_ignore = cpu[f"{name} / verify"], cpu[f"{name} / ignore"]
        ratio = verify.median / ignore.median
        cpu_ratio = cpu_verify.median / cpu_ignore.median
        report[name] = {
            "verify": verify.as_json(),
            "ignore": ignore.as_json(),
            "cpu verify": cpu_verify.as_json(),
            "cpu ignore": cpu_ignore.as_json(),
            "ratio": ratio,
            "cpu ratio": cpu_ratio,
            "MB/s verify": nbytes / 1e6 / verify.median,
            "MB/s ignore": nbytes / 1e6 / ignore.median,
        }
        print(
            f"{name:>9}: verify {verify.median:.3f} s ({nbytes / 1e6 / verify.median:,.0f} MB/s,"
            f" {verify.low:.3f}-{verify.high:.3f}), ignore {ignore.median:.3f} s "
            f"({nbytes / 1e6 / ignore.median:,.0f} MB/s, {ignore.low:.3f}-{ignore.high:.3f}); "
            f"ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%); CPU {cpu_verify.median:.3f} s vs "
            f"{cpu_ignore.median:.3f} s, ratio {cpu_ratio:.3f} ({(cpu_ratio - 1) * 100:+.1f}%)"
        )
    print(f"load average at end: {', '.join(f'{x:.2f}' for x in _loadavg())}")
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def _loadavg() -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ()


if __name__ == "__main__":
    raise SystemExit(main())
