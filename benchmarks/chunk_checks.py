"""What checking every chunk costs a full read: ``ds[...]`` of a ~200 MB Blosc dataset, read by
two source trees of the package in alternation, each read in a fresh process.

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
        for _ in range(args.repeat):
            samples["base"].append(_sample(args.base, folder))
            samples["new"].append(_sample(args.new, folder))
    nbytes = samples["new"][0]["nbytes"]
    print(f"ds[...] of {nbytes / 1e6:.0f} MB, median of {args.repeat} fresh processes each")
    for kind in ("first", "again"):
        base = statistics.median(s[kind] for s in samples["base"])
        new = statistics.median(s[kind] for s in samples["new"])
        print(
            f"{kind:>5}: base {base * 1e3:.1f} ms ({nbytes / base / 1e9:.2f} GB/s), "
            f"new {new * 1e3:.1f} ms ({nbytes / new / 1e9:.2f} GB/s), new/base {new / base:.3f}"
        )


if __name__ == "__main__":
    main()
