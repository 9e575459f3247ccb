"""Peak memory of a mean over time through xarray: the ``splitds`` engine with and without chunks.

``xr.open_dataarray(path, engine="splitds")`` without ``chunks`` gives a lazily indexed numpy
variable (as netCDF and zarr do): nothing is read on opening, each selection reads only its
blocks, but a reduction over the whole array first loads all of it. With ``chunks={}`` the
variable is a dask array of one chunk per block and the reduction streams through the blocks.
Each way runs in a fresh child process, which reports its peak resident memory (``ru_maxrss``)
before and after the mean, and the mean's wall time; loading everything with numpy
(``np.asarray(ds)``) is the peer every row is compared with. Every result is checked against the
numpy mean.

Run from the repository root::

    python benchmarks/xarray_memory.py [--frames 250] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

FRAME = (8, 512, 512)  # uint16: 4.2 MB per time point
BLOCK_FRAMES = 10

WAYS = {
    "numpy: np.asarray(ds).mean(axis=0)": "np.asarray(sd.SplitDataset(path)).mean(axis=0)",
    'open_dataarray(engine="splitds").mean("t")': (
        'xr.open_dataarray(path, engine="splitds").mean("t").values'
    ),
    'open_dataarray(engine="splitds", chunks={}).mean("t")': (
        'xr.open_dataarray(path, engine="splitds", chunks={}).mean("t").values'
    ),
    'ds.to_xarray().mean("t")': 'sd.SplitDataset(path).to_xarray().mean("t").values',
}

CHILD = """
import json, resource, sys, time
import numpy as np
import xarray as xr
import splitds_dask as sd

path = sys.argv[1]
expected = np.load(sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = {way}
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
np.testing.assert_allclose(np.asarray(result), expected, rtol=1e-9)  # summation orders differ
print(json.dumps({{"before": before * 1024, "peak": after * 1024, "seconds": seconds}}))
"""


PREPARE = """
import json, sys
from pathlib import Path
import dask.array as da
import numpy as np
import splitds_dask as sd

path, frames, expected = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
frame, block = {frame}, {block}
if not (path.is_dir() and sd.SplitDataset(path).shape == (frames, *frame)):
    rng = da.random.default_rng(0)
    data = rng.integers(90, 4096, (frames, *frame), chunks=(block, *frame), dtype=np.uint16)
    sd.to_split_dataset(data, path, block_shape=block, overwrite=path.is_dir(), axes="tzyx")
ds = sd.SplitDataset(path)
np.save(expected, ds.to_dask().mean(axis=0).compute())
print(json.dumps({{"shape": ds.shape, "dtype": str(ds.dtype), "nbytes": ds.nbytes}}))
"""


def python(code: str, *args: object) -> dict:
    """Run ``code`` in a child Python; its last line of output, as JSON.

    Children are started by this small process (no numpy, no data): ``ru_maxrss`` is kept across
    ``exec``, so a child of a large process would start with the parent's peak.
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"a child failed:\n{out.stderr}")
    return json.loads(out.stdout.splitlines()[-1])


def run_child(way: str, path: Path, expected: Path) -> dict:
    return python(CHILD.format(way=way), path, expected)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="xarray-memory-"))
    folder = args.data_dir or scratch
    try:
        path = folder / "movie"
        expected = scratch / "expected.npy"
        prepare = PREPARE.format(frame=FRAME, block=BLOCK_FRAMES)
        info = python(prepare, path, args.frames, expected)
        nbytes = info["nbytes"]
        mb = nbytes / 1e6
        print(
            f"dataset {tuple(info['shape'])} {info['dtype']}, {mb:.0f} MB, "
            f"blocks of {BLOCK_FRAMES} frames"
        )
        print("| way | peak RSS | added by the mean | peak / data | vs numpy | MB/s |")
        print("|---|---|---|---|---|---|")
        rows = {name: run_child(way, path, expected) for name, way in WAYS.items()}
        peer = rows[next(iter(WAYS))]["peak"]
        for name, row in rows.items():
            print(
                f"| `{name}` | {row['peak'] / 1e6:.0f} MB | "
                f"{(row['peak'] - row['before']) / 1e6:.0f} MB | {row['peak'] / nbytes:.2f} | "
                f"{row['peak'] / peer:.2f} | {mb / row['seconds']:.0f} |"
            )
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
