"""Runs INSIDE the old split_dataset 0.4.4 venv (python -c, numpy<2): never imported by the suite.

Usage: ``python -c <this file's text> '<json spec>' <benchmarks folder>``; prints one JSON object
on its last line.
Every timing is one untimed warm-up call, then ``repeat`` timed calls, as in ``_timing.measure``.
Specs:

* ``{"op": "read", "root": R, "selections": {name: sel}, "repeat": n}``: ``ds[sel]`` on an
  already opened ``SplitDataset(R)``; ``sel`` is a list of ints, ``null`` (``:``) and
  ``[start, stop]`` (a slice). Returns seconds per selection, and the shape and integer sum of
  the result (so the suite can check it read the same data as the others).
* ``{"op": "write", "npy": F, "frames": t, "out": D, "block_size": [...], "repeat": n}``: the
  first ``t`` volumes of ``F`` are loaded into memory first (untimed), then
  ``save_to_split_dataset(data, D, block_size=...)`` with its default ``compression="blosc"`` is
  timed; ``D`` is removed (untimed) before each call and the last output is left for checking.
* ``{"op": "open", "root": R, "index": i, "repeat": n}``: ``SplitDataset(R)`` then ``ds[i]``.
* ``{"op": "write_blocks", "npy": F, "out": D, "block_frames": b, "key": K}``: writes the block
  files exactly as sashimi does, ``fl.save(D/"{:04d}.h5", {K: block}, compression="blosc")``.
"""

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _sel(spec):
    return tuple(
        slice(None) if s is None else slice(*s) if isinstance(s, list) else s for s in spec
    )


def _timed(fn, repeat, setup=None):
    """Samples of ``measure`` (imported from the suite: stdlib only) and the warm-up's result."""
    from _timing import measure

    if setup is not None:
        setup()
    result = fn()  # the untimed warm-up
    return measure(fn, repeat, setup=setup, warmup=False).samples, result


def main(spec):
    op = spec["op"]
    if op == "write_blocks":
        import flammkuchen as fl

        data = np.load(spec["npy"], mmap_mode="r")
        out = Path(spec["out"])
        out.mkdir(parents=True, exist_ok=True)
        b = spec["block_frames"]
        for i, t0 in enumerate(range(0, data.shape[0], b)):
            block = np.ascontiguousarray(data[t0 : t0 + b])
            fl.save(str(out / f"{i:04d}.h5"), {spec["key"]: block}, compression="blosc")
        return {"blocks": i + 1}

    from split_dataset import SplitDataset, save_to_split_dataset

    repeat = spec["repeat"]
    if op == "read":
        ds = SplitDataset(spec["root"])
        out = {}
        for name, sel in spec["selections"].items():
            key = _sel(sel)
            samples, arr = _timed(lambda key=key: ds[key], repeat)
            out[name] = {
                "samples": samples,
                "shape": list(arr.shape),
                "sum": int(arr.sum(dtype=np.uint64)),
            }
        return out
    if op == "write":
        data = np.array(np.load(spec["npy"], mmap_mode="r")[: spec["frames"]])
        target = Path(spec["out"])

        def clean():
            shutil.rmtree(target, ignore_errors=True)

        samples, _ = _timed(
            lambda: save_to_split_dataset(data, str(target), block_size=tuple(spec["block_size"])),
            repeat,
            setup=clean,
        )
        return {"samples": samples}
    if op == "open":
        opened, indexed = [], []

        def once():
            t0 = time.perf_counter()
            ds = SplitDataset(spec["root"])
            t1 = time.perf_counter()
            ds[spec["index"]]
            t2 = time.perf_counter()
            opened.append(t1 - t0)
            indexed.append(t2 - t1)

        _timed(once, repeat)
        return {"open": opened[1:], "index": indexed[1:]}
    raise ValueError(op)


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[2])  # the benchmarks folder, for _timing
    print(json.dumps(main(json.loads(sys.argv[1]))))
