"""Sustained append rate of ``SplitDatasetWriter`` against a plain h5py write loop.

Both write the same frames (a synthetic calcium-imaging movie, uint16) as block files of
``--block`` frames with the same codec (hdf5plugin Blosc LZ4, level 5, byte shuffle) and the
same HDF5 chunks. The "camera" hands frames over as fast as the writer takes them; a pool of
distinct frames is made in advance so that generating data is not timed.

* plain h5py: the caller buffers a block, then writes it (compression on the caller's thread);
* ``SplitDatasetWriter``: ``append(frame)`` per frame; blocks are compressed and written by the
  background thread, with the metadata committed and files fsynced after every block.

Rates count from the first frame to the moment every block is on disk (``close()`` returned).
Also reported: how long the caller's ``append`` call takes (median, 99th percentile, max), i.e.
how long a camera thread would be held up.

Run from the repository root::

    python benchmarks/stream_append.py [--frames 300] [--frame-shape 8 512 512] [--block 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

import splitds_dask as sd
from splitds_dask._storage.atomic import fsync_file
from splitds_dask._storage.block_file import block_chunk_shape
from splitds_dask._synthetic import synthetic_movie


def plain_h5py(
    folder: Path, pool: np.ndarray, n_frames: int, block: int, *, fsync: bool = False
) -> float:
    folder.mkdir()
    buffer = np.empty((block, *pool.shape[1:]), pool.dtype)
    # Chunked as the package chunks block files: for the full block, the short last one too.
    chunks = block_chunk_shape(buffer.shape, buffer.itemsize)
    codec = hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)
    start = time.perf_counter()
    fill = n_block = 0
    for i in range(n_frames):
        buffer[fill] = pool[i % len(pool)]
        fill += 1
        if fill == block or i == n_frames - 1:
            with h5py.File(folder / f"{n_block:04d}.h5", "w") as f:
                data = buffer[:fill]
                f.create_dataset(
                    "stack_4D",
                    data=data,
                    chunks=chunks,
                    maxshape=buffer.shape,
                    **codec,
                )
            if fsync:  # the durability SplitDatasetWriter gives each block
                fsync_file(folder / f"{n_block:04d}.h5")
            fill = 0
            n_block += 1
    return time.perf_counter() - start


def stream(
    folder: Path, pool: np.ndarray, n_frames: int, block: int, *, rate: float | None = None
) -> tuple[float, list]:
    """Append every frame; with ``rate``, frames arrive at ``rate`` per second, like a camera."""
    latencies = []
    start = time.perf_counter()
    with sd.SplitDatasetWriter(
        folder, frame_shape=pool.shape[1:], dtype=pool.dtype, block_length=block
    ) as writer:
        for i in range(n_frames):
            if rate is not None:
                time.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t = time.perf_counter()
            writer.append(pool[i % len(pool)])
            latencies.append(time.perf_counter() - t)
    return time.perf_counter() - start, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--frame-shape", type=int, nargs=3, default=(8, 512, 512))
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()

    pool = synthetic_movie(40, frame_shape=tuple(args.frame_shape), block_frames=40).compute()
    frame_mb = pool[0].nbytes / 1e6
    total_mb = frame_mb * args.frames
    print(
        f"{args.frames} frames of {tuple(args.frame_shape)} uint16 ({frame_mb:.1f} MB each, "
        f"{total_mb / 1e3:.2f} GB), blocks of {args.block} frames, Blosc lz4 5 shuffle"
    )
    print(f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.1f}")
    base = Path(tempfile.mkdtemp(dir=args.folder, prefix="stream-bench-"))
    results: dict[str, list[float]] = {
        "plain h5py loop": [],
        "plain loop + fsync": [],
        "SplitDatasetWriter": [],
    }
    latencies: list[float] = []
    try:
        for r in range(args.repeat):
            results["plain h5py loop"].append(
                plain_h5py(base / f"plain{r}", pool, args.frames, args.block)
            )
            results["plain loop + fsync"].append(
                plain_h5py(base / f"plainsync{r}", pool, args.frames, args.block, fsync=True)
            )
            shutil.rmtree(base / f"plainsync{r}")
            seconds, lat = stream(base / f"stream{r}", pool, args.frames, args.block)
            results["SplitDatasetWriter"].append(seconds)
            latencies += lat
            ds = sd.SplitDataset(base / f"stream{r}")
            assert ds.shape == (args.frames, *args.frame_shape)
            assert np.array_equal(ds[args.frames - 1], pool[(args.frames - 1) % len(pool)])
            ratio = ds.nbytes / sum(p.stat().st_size for p in ds.files.flat)
            shutil.rmtree(base / f"plain{r}")
            shutil.rmtree(base / f"stream{r}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name, times in results.items():
        t = statistics.median(times)
        print(
            f"{name:<20} {args.frames / t:8.1f} frames/s  {total_mb / t:8.1f} MB/s  "
            f"(median of {len(times)}: {', '.join(f'{x:.2f}' for x in times)} s)"
        )
    lat = np.array(latencies) * 1e3
    print(
        f"append() call, camera as fast as possible: median {np.median(lat):.2f} ms, "
        f"p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.1f} ms; "
        f"compression ratio {ratio:.2f}"
    )
    # A camera at 80% of the writer's sustained rate: how long is its thread held up?
    rate = 0.8 * args.frames / statistics.median(results["SplitDatasetWriter"])
    paced = Path(tempfile.mkdtemp(dir=args.folder, prefix="stream-bench-"))
    try:
        seconds, lat = stream(paced / "run", pool, args.frames, args.block, rate=rate)
    finally:
        shutil.rmtree(paced, ignore_errors=True)
    lat = np.array(lat) * 1e3
    print(
        f"append() call, camera at {rate:.0f} frames/s: median {np.median(lat):.2f} ms, "
        f"p99 {np.percentile(lat, 99):.2f} ms, max {lat.max():.1f} ms "
        f"(all on disk {seconds - (args.frames - 1) / rate:.2f} s after the last frame)"
    )


if __name__ == "__main__":
    main()
