"""What dask's array-expr mode costs: the same reads through ``to_dask()`` in both dask modes.

dask's array-expr mode ("query planning", ``DASK_ARRAY__QUERY_PLANNING=True``) fuses no slice
into a ``from_array`` task, so ``x[t]`` reads the whole block holding ``t`` and then slices it;
the default (legacy graph) mode hands the slice to the read. Each mode runs in its own process
(the mode is fixed when ``dask.array`` is first imported), on the same files, from a warm page
cache; ``ds[...]`` (no dask) is timed in both as the reference.

    python benchmarks/array_expr.py                  # 64 x 12 x 512 x 512 uint16, 8-frame blocks
    python benchmarks/array_expr.py --frames 16 --repeat 3 --data-dir /tmp/expr
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _selections(frames: int) -> dict[str, tuple]:
    t = frames // 2 + 1  # not the first frame of a block
    return {
        "x[t]": (t,),
        "x[:, z]": (slice(None), 3),
        "x[:, z, y, x]": (slice(None), 3, 200, 300),
        "x[::7]": (slice(None, None, 7),),
    }


def _write(root: Path, frames: int, block_frames: int) -> None:
    import splitds_dask as sd

    rng = np.random.default_rng(0)
    background = rng.integers(100, 350, (12, 512, 512), dtype=np.uint16)
    movie = np.stack([background + rng.poisson(20, (1, 512, 512)).astype(np.uint16)[0]] * frames)
    sd.to_split_dataset(movie, root, block_shape=block_frames, overwrite=True)


def _measure(root: str, repeat: int) -> dict[str, dict[str, float]]:
    """In this process (one dask mode): median seconds of each read, through dask and not."""
    import dask.array as da

    import splitds_dask as sd

    ds = sd.SplitDataset(root)
    x = ds.to_dask()
    out: dict[str, dict[str, float]] = {"mode": {"array_expr": float(da.array_expr_enabled())}}
    for label, index in _selections(ds.shape[0]).items():
        np.testing.assert_array_equal(x[index].compute(), ds[index])
        calls = {"dask": x[index].compute, "direct": lambda i=index: ds[i]}
        timings: dict[str, list[float]] = {kind: [] for kind in calls}
        for _ in range(repeat):  # interleaved, so that load changes hit both alike
            for kind, call in calls.items():
                start = time.perf_counter()
                call()
                timings[kind].append(time.perf_counter() - start)
        out[label] = {kind: statistics.median(values) for kind, values in timings.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--block-frames", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: the dataset
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(args.measure, args.repeat)))
        return 0
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        root = Path(tmp) / "movie"
        _write(root, args.frames, args.block_frames)
        results = {}
        for mode in ("False", "True"):
            env = dict(os.environ, DASK_ARRAY__QUERY_PLANNING=mode)
            proc = subprocess.run(
                [sys.executable, __file__, "--measure", str(root), "--repeat", str(args.repeat)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                sys.exit(f"array-expr mode {mode}: the measurement failed:\n{proc.stderr}")
            results[mode] = json.loads(proc.stdout.splitlines()[-1])
    block_mb = args.block_frames * 12 * 512 * 512 * 2 / 1e6
    print(
        f"{args.frames} x 12 x 512 x 512 uint16, blocks of {args.block_frames} frames "
        f"({block_mb:.0f} MB), median of {args.repeat}\n"
    )
    print(
        "| read | `ds[...]` | legacy `x[...].compute()` | array-expr `x[...].compute()` "
        "| array-expr / legacy |"
    )
    print("|---|---|---|---|---|")
    for label in _selections(args.frames):
        legacy, expr = results["False"][label], results["True"][label]
        print(
            f"| `{label}` | {legacy['direct'] * 1e3:.1f} ms | {legacy['dask'] * 1e3:.1f} ms | "
            f"{expr['dask'] * 1e3:.1f} ms | {expr['dask'] / legacy['dask']:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
