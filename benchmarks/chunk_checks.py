"""What checking every chunk costs a full read: ``ds[...]`` of a ~200 MB Blosc dataset, read by
two source trees of the package in alternation (ABBA order), each read in a fresh process.

Usage (from the repository root)::

    python benchmarks/chunk_checks.py BASE_SRC NEW_SRC [--repeat 7] [--data-dir DIR]

``BASE_SRC`` and ``NEW_SRC`` are ``src`` folders (e.g. of the main checkout and of a branch).
Each sample is a new interpreter that opens the dataset, reads it whole once (``first``: the chunk
maps are built, every index entry checked) and then 5 more times (``again``: cached maps, every
header still checked), timing each. Reported: the median of each, both trees, and their ratio.
The page cache is warm (the dataset is read once before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = r"""
import json, sys, time
import splitds_dask as sd
ds = sd.SplitDataset(sys.argv[1])
t = time.perf_counter(); a = ds[...]; first = time.perf_counter() - t
again = []
for _ in range(5):
    t = time.perf_counter(); ds[...]; again.append(time.perf_counter() - t)
print(json.dumps({"first": first, "again": sorted(again)[2], "nbytes": a.nbytes}))
"""


# In NEW_SRC only: the checks alone against the work they guard, on the same chunks, min of 5.
_PARTS = r"""
import json, sys, time
from pathlib import Path
import h5py, numpy as np
from numcodecs import blosc
from splitds_dask._storage.blosc import ChunkMap, _decompress_chunk, check_chunk

def best(f):
    times = []
    for _ in range(5):
        t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
    return min(times)

chunks, maps = [], []
for path in sorted(Path(sys.argv[1]).glob("*.h5")):
    with h5py.File(path, "r") as f:
        dset = f["stack_3D"]
        maps.append((dset.id, dset.dtype))
        m = ChunkMap.of(dset, dset.dtype)
        raw = path.read_bytes()
        for o, n in zip(m.offsets, m.sizes):
            chunks.append(memoryview(raw)[o : o + n])
        nbytes = int(np.prod(m.chunk_shape)) * m.dtype.itemsize
        codec = m.codec
target = np.empty(nbytes, np.uint8)
check = best(lambda: [check_chunk(c, nbytes=nbytes, codec=codec) for c in chunks])
plain = best(lambda: [blosc.decompress(c, target) for c in chunks])
both = best(lambda: [_decompress_chunk(c, 0, target, codec) for c in chunks])
def build():
    for path in sorted(Path(sys.argv[1]).glob("*.h5")):
        with h5py.File(path, "r") as f:
            ChunkMap.of(f["stack_3D"], f["stack_3D"].dtype)
def opened():
    for path in sorted(Path(sys.argv[1]).glob("*.h5")):
        with h5py.File(path, "r") as f:
            f["stack_3D"].id.get_num_chunks()
print(json.dumps({"chunks": len(chunks), "check": check, "decompress": plain,
                  "checked_decompress": both, "maps": best(build), "open": best(opened)}))
"""


def _make(folder: Path) -> None:
    import numpy as np

    import splitds_dask as sd

    rng = np.random.default_rng(0)
    background = (np.indices((1000, 1000)).sum(axis=0) % 300).astype(np.float32) + 100
    frames = rng.poisson(background, size=(100, 1000, 1000)).astype(np.uint16)
    sd.to_split_dataset(frames, folder, block_shape=(10, 1000, 1000))


def _sample(src: str, folder: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=src)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.data_dir) as work:
        folder = Path(work) / "d"
        _make(folder)
        samples: dict[str, list[dict]] = {"base": [], "new": []}
        _sample(args.base, folder)  # page cache
        for i in range(args.repeat):
            # Alternate which tree goes first: a shared machine's load drifts.
            for name in ("base", "new") if i % 2 == 0 else ("new", "base"):
                samples[name].append(_sample(getattr(args, name), folder))
        parts = json.loads(
            subprocess.run(
                [sys.executable, "-c", _PARTS, str(folder)],
                env=dict(os.environ, PYTHONPATH=args.new),
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
    nbytes = samples["new"][0]["nbytes"]
    print(f"ds[...] of {nbytes / 1e6:.0f} MB, median of {args.repeat} fresh processes each")
    for kind in ("first", "again"):
        base = statistics.median(s[kind] for s in samples["base"])
        new = statistics.median(s[kind] for s in samples["new"])
        print(
            f"{kind:>5}: base {base * 1e3:.1f} ms ({nbytes / base / 1e9:.2f} GB/s), "
            f"new {new * 1e3:.1f} ms ({nbytes / new / 1e9:.2f} GB/s), new/base {new / base:.3f}"
        )

    n = parts["chunks"]
    print(
        f"checks alone ({n} chunks, one thread, min of 5): header checks "
        f"{parts['check'] * 1e3:.2f} ms = {parts['check'] / parts['decompress']:.1%} of "
        f"decompressing them ({parts['decompress'] * 1e3:.1f} ms; checked decompression "
        f"{parts['checked_decompress'] * 1e3:.1f} ms); building the maps of all blocks "
        f"(every entry checked) {parts['maps'] * 1e3:.1f} ms, opening the files and counting "
        f"their chunks {parts['open'] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
