"""The peer report's workloads, each timed for splitds_dask and its peers on the same files.

Only the library's public API is used: ``SplitDataset``, ``ds[...]``, ``ds.to_dask()`` and
``to_split_dataset``. Each function returns table rows; ``Row.peers`` holds the peers' timings
and ``ratio = peer time / our time`` (above 1: we are faster).
"""

from __future__ import annotations

import functools
import gc
import json
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import _cluster_probe
import dask
import dask.array as da
import h5py
import hdf5plugin
import numpy as np
from _data import BLOSC, CLUSTER_BLOCK, KEY, OUR_COMPRESSION, Datasets, block_files, name_width
from _oldpeer import run_old_spec
from _timing import Stat, measure, measure_interleaved, stat_of

import splitds_dask as sd
from splitds_dask._daskmodes import store_chunks

__all__ = ["WORKLOADS", "Context", "Row"]

OLD, H5PY, ZARR, OTHER = "old 0.4.4", "h5py loop", "zarr+dask", "other"


@dataclass
class Row:
    id: str
    workload: str
    ours: Stat
    peers: dict[str, Stat] = field(default_factory=dict)
    other_label: str = ""  # what the OTHER peer is
    nbytes: int | None = None  # uncompressed bytes our call delivers (for MB/s)
    target: str = ""
    passed: bool | None = None
    notes: str = ""
    # Further measured quantities of the same runs: name -> {"ours"/peer: Stat}.
    extra: dict[str, dict[str, Stat]] = field(default_factory=dict)

    def ratio(self, peer: str) -> float:
        return self.peers[peer].median / self.ours.median

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "workload": self.workload,
            "ours": self.ours.as_json(),
            "peers": {k: v.as_json() for k, v in self.peers.items()},
            "other_label": self.other_label,
            "ratios": {k: self.ratio(k) for k in self.peers},
            "nbytes": self.nbytes,
            "target": self.target,
            "passed": self.passed,
            "notes": self.notes,
            "extra": {
                name: {k: v.as_json() for k, v in stats.items()}
                for name, stats in self.extra.items()
            },
        }


@dataclass
class Context:
    data: Datasets
    repeat: int
    ceiling: dict[str, Stat] = field(default_factory=dict)

    def old(self, spec: dict[str, Any]) -> dict[str, Any]:
        return run_old_spec({**spec, "repeat": self.repeat})


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(f"peers disagree: {what}")


def _old_sel(sel: tuple) -> list:
    return [None if s == slice(None) else s for s in sel]


def _from_zarr(path: Path) -> da.Array:
    """What dask's from_zarr does (one dask chunk per zarr chunk), written out because dask's
    array-expr mode does not implement from_zarr."""
    import zarr

    z = zarr.open_array(str(path), mode="r")
    return da.from_array(z, chunks=z.chunks)


# --- ceiling ------------------------------------------------------------------------------------


def ceiling(ctx: Context) -> list[Row]:
    """A numpy copy of the movie's bytes: into a preallocated buffer, and with allocation."""
    src = np.load(ctx.data.npy)
    dst = np.empty_like(src)
    dst.fill(1)  # touch every page, so that copyto measures the copy alone
    copyto = measure(lambda: np.copyto(dst, src), ctx.repeat)
    dst.resize(0, refcheck=False)  # free it before the alloc+copy runs
    alloc = measure(lambda: src.copy(), ctx.repeat)
    ctx.ceiling = {"copyto": copyto, "alloc": alloc}
    n = src.nbytes
    return [
        Row("0a", "ceiling: `np.copyto(dst, src)`, dst preallocated", copyto, nbytes=n),
        Row(
            "0b",
            "ceiling: `src.copy()` (alloc+copy; the 100 % of '% ceiling')",
            alloc,
            nbytes=n,
        ),
    ]


# --- 1 full read ----------------------------------------------------------------------------------


def _h5py_full(files: list[Path], shape: tuple[int, ...], bt: int) -> np.ndarray:
    out = np.empty(shape, np.uint16)
    for i, path in enumerate(files):
        with h5py.File(path, "r") as f:
            d = f[KEY]
            d.read_direct(out, dest_sel=np.s_[i * bt : i * bt + d.shape[0]])
    return out


def full_read(ctx: Context) -> list[Row]:
    d, cfg = ctx.data, ctx.data.config
    files = block_files(d.movie)
    ds = sd.SplitDataset(d.movie)
    ours_fn = lambda: ds[:]
    h5_fn = lambda: _h5py_full(files, cfg.movie_shape, cfg.block_frames)
    zarr_fn = lambda: _from_zarr(d.zarr).compute()
    a = ours_fn()
    _check(np.array_equal(a, h5_fn()), "ds[:] vs h5py")
    _check(np.array_equal(a, zarr_fn()), "ds[:] vs zarr")
    total = int(a.sum(dtype=np.uint64))
    del a
    t = measure_interleaved(
        {"ours": ours_fn, "h5": h5_fn, "zarr": zarr_fn}, ctx.repeat, warmup=False
    )
    ours, h5, zr = t["ours"], t["h5"], t["zarr"]
    old = ctx.old({"op": "read", "root": str(d.movie), "selections": {"full": [None]}})["full"]
    _check(old["sum"] == total, "ds[:] vs old")
    row = Row(
        "1",
        "full read `ds[:]`",
        ours,
        {OLD: stat_of(old["samples"]), H5PY: h5, ZARR: zr},
        nbytes=d.raw_bytes,
        target="≥2.5x old, ≥1.3x h5py, ≥40 % ceiling",
    )
    row.passed = (
        row.ratio(OLD) >= 2.5 and row.ratio(H5PY) >= 1.3 and _ceiling_fraction(ctx, row) >= 0.40
    )
    return [row]


def _ceiling_fraction(ctx: Context, row: Row) -> float:
    """Our throughput over alloc+copy's, both on the movie's bytes."""
    return ctx.ceiling["alloc"].median / row.ours.median


# --- 2 mean over time ---------------------------------------------------------------------------


def _h5py_mean(files: list[Path], shape: tuple[int, ...], bt: int) -> np.ndarray:
    acc = np.zeros(shape[1:], np.float64)
    buf = np.empty((bt, *shape[1:]), np.uint16)
    for path in files:
        with h5py.File(path, "r") as f:
            d = f[KEY]
            n = d.shape[0]
            d.read_direct(buf, dest_sel=np.s_[:n])
        acc += buf[:n].sum(axis=0, dtype=np.float64)
    return acc / shape[0]


def _first_element(block: np.ndarray) -> np.ndarray:
    return block[(slice(0, 1),) * block.ndim]


def _with_cpu(fn: Callable[[], Any], cpu: list[float]) -> Callable[[], Any]:
    """``fn``, recording the process's CPU time (all threads) of each call in ``cpu``."""

    def timed() -> Any:
        c0 = time.process_time()
        try:
            return fn()
        finally:
            cpu.append(time.process_time() - c0)

    return timed


def mean(ctx: Context) -> list[Row]:
    d, cfg = ctx.data, ctx.data.config
    files = block_files(d.movie)
    ds = sd.SplitDataset(d.movie)
    bt = cfg.block_frames
    # The floor rows: the same dask reduction with nothing read (the movie in memory, same
    # chunks), the reading alone through dask, and numpy's float64 sums alone.
    movie = np.load(d.npy)
    in_memory = da.from_array(movie, chunks=ds.to_dask().chunks)

    def numpy_sums() -> np.ndarray:
        acc = np.zeros(movie.shape[1:], np.float64)
        for t0 in range(0, movie.shape[0], bt):
            acc += movie[t0 : t0 + bt].sum(axis=0, dtype=np.float64)
        return acc / movie.shape[0]

    fns = {
        "ours": lambda: ds.to_dask().mean(axis=0).compute(),
        "h5": lambda: _h5py_mean(files, cfg.movie_shape, bt),
        "zarr": lambda: _from_zarr(d.zarr).mean(axis=0).compute(),
        "floor": lambda: in_memory.mean(axis=0).compute(),
        "read": lambda: (
            ds.to_dask()
            .map_blocks(_first_element, chunks=(1,) * ds.ndim, dtype=ds.dtype)
            .sum()
            .compute()
        ),
        "numpy": numpy_sums,
        "pairs": lambda: ds.to_dask(blocks_per_chunk=2).mean(axis=0).compute(),
    }
    m = fns["ours"]()
    _check(fns["read"]() == movie[::bt, :1, :1, :1].sum(), "first elements vs numpy")
    _check(np.allclose(m, fns["h5"]()), "mean vs h5py")
    _check(np.allclose(m, fns["zarr"]()), "mean vs zarr")
    _check(np.allclose(m, fns["floor"]()), "mean vs in-memory dask")
    _check(np.allclose(m, numpy_sums()), "mean vs numpy")
    _check(np.allclose(m, fns["pairs"]()), "mean vs two blocks per chunk")
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    t = measure_interleaved(
        {k: _with_cpu(fn, cpu[k]) for k, fn in fns.items()}, ctx.repeat, warmup=False
    )
    for k, stat in t.items():
        stat.parts["cpu_s"] = float(np.median(cpu[k]))
    ours, h5, zr = t["ours"], t["h5"], t["zarr"]

    def cpu_note(*keys: str) -> str:
        return "CPU time (all threads): " + ", ".join(
            f"{k} {_fmt_s(t[k].parts['cpu_s'])}" for k in keys
        )

    row = Row(
        "2",
        "`ds.to_dask().mean(axis=0).compute()`, default (threads) scheduler",
        ours,
        {H5PY: h5, ZARR: zr},
        nbytes=d.raw_bytes,
        target="≥1.3x h5py, ≥1.0x zarr",
        notes=cpu_note("ours", "h5"),
    )
    row.passed = row.ratio(H5PY) >= 1.3 and row.ratio(ZARR) >= 1.0
    ours_label = "`ds.to_dask().mean`"
    floor = Row(
        "2b",
        "dask floor: the same `.mean(axis=0)` on the movie in memory, same chunks "
        "(`da.from_array(movie, chunks=ds.to_dask().chunks)`): nothing read",
        t["floor"],
        {H5PY: h5, OTHER: ours},
        other_label=ours_label,
        nbytes=d.raw_bytes,
        target="none: the best row 2 can do with dask's mean",
        notes=f"dask's mean alone takes {t['floor'].median / ours.median:.0%} of row 2's time; "
        + cpu_note("floor", "numpy"),
    )
    read = Row(
        "2c",
        "reading alone through dask: `x.map_blocks(first element).sum().compute()`",
        t["read"],
        {H5PY: h5, OTHER: ours},
        other_label=ours_label,
        nbytes=d.raw_bytes,
        target="none: row 2's reading",
        notes=cpu_note("read"),
    )
    sums = Row(
        "2d",
        "numpy alone: float64 sums of the in-memory movie's blocks, one thread (no dask, no reading)",
        t["numpy"],
        {H5PY: h5, OTHER: t["floor"]},
        other_label="dask floor (2b)",
        nbytes=d.raw_bytes,
        target="none: the arithmetic every peer does",
        notes=cpu_note("numpy"),
    )
    pairs = Row(
        "2e",
        "`ds.to_dask(blocks_per_chunk=2).mean(axis=0).compute()`: half the chunks, so half the "
        "float64 partials for dask to combine",
        t["pairs"],
        {H5PY: h5, OTHER: ours},
        other_label=ours_label,
        nbytes=d.raw_bytes,
        target="none: what grouping blocks buys",
        notes=cpu_note("pairs"),
    )
    return [row, floor, read, sums, pairs]


# --- 3 small reads --------------------------------------------------------------------------------


def _h5py_region(files: list[Path], shape: tuple[int, ...], bt: int, sel: tuple) -> np.ndarray:
    """What a user writes for one region: open only the file(s) holding it, read, close.

    Across files it fills a preallocated output with ``out[...] = dset[sel]``: h5py's
    ``read_direct`` with a selection that drops an axis is ~50x slower on these files.
    """
    t = sel[0]
    if isinstance(t, int):  # one time point: one file
        with h5py.File(files[t // bt], "r") as f:
            return f[KEY][(t % bt, *sel[1:])]
    full = (*sel, *(slice(None),) * (len(shape) - len(sel)))
    rest = tuple(n for n, s in zip(shape[1:], full[1:], strict=True) if isinstance(s, slice))
    out = np.empty((shape[0], *rest), np.uint16)
    for i, path in enumerate(files):
        with h5py.File(path, "r") as f:
            dset = f[KEY]
            out[i * bt : i * bt + dset.shape[0]] = dset[full]
    return out


def small_reads(ctx: Context) -> list[Row]:
    d, cfg = ctx.data, ctx.data.config
    T, Z, Y, X = cfg.movie_shape
    bt = cfg.block_frames
    files = block_files(d.movie)
    ds = sd.SplitDataset(d.movie)
    t, z, y, x = T // 2 + 1, Z // 2, Y // 2, X // 2
    selections = {
        "t": ((t,), "one time point `ds[t]`"),
        "z": ((slice(None), z), "one z-plane across time `ds[:, z]`"),
        "px": ((slice(None), z, y, x), "one pixel's time series `ds[:, z, y, x]`"),
    }
    old = ctx.old(
        {
            "op": "read",
            "root": str(d.movie),
            "selections": {k: _old_sel(s) for k, (s, _) in selections.items()},
        }
    )
    rows, dask_rows = [], []
    for letter, (name, (sel, label)) in zip("abc", selections.items(), strict=True):
        ours_fn = lambda sel=sel: ds[sel]
        h5_fn = lambda sel=sel: _h5py_region(files, cfg.movie_shape, bt, sel)
        dask_fn = lambda sel=sel: ds.to_dask()[sel].compute()
        a = ours_fn()
        _check(np.array_equal(a, h5_fn()), f"{label} vs h5py")
        _check(np.array_equal(a, dask_fn()), f"{label} vs dask")
        _check(old[name]["sum"] == int(a.sum(dtype=np.uint64)), f"{label} vs old")
        t = measure_interleaved(
            {"ours": ours_fn, "h5": h5_fn, "dask": dask_fn}, ctx.repeat, warmup=False
        )
        ours, h5, dk = t["ours"], t["h5"], t["dask"]
        row = Row(
            f"3{letter}",
            label,
            ours,
            {OLD: stat_of(old[name]["samples"]), H5PY: h5},
            nbytes=a.nbytes,
            target="within 1.3x h5py (ratio ≥0.77), ≥3x old",
        )
        row.passed = row.ratio(H5PY) >= 1 / 1.3 and row.ratio(OLD) >= 3
        rows.append(row)
        drow = Row(
            f"3{'def'[len(dask_rows)]}",
            f"same through dask: `ds.to_dask()[...].compute()` ({name})",
            dk,
            {OTHER: ours},
            other_label="`ds[...]`",
            nbytes=a.nbytes,
            target="within 2x `ds[...]` (ratio ≥0.5)",
        )
        drow.passed = drow.ratio(OTHER) >= 0.5
        dask_rows.append(drow)
    return rows + dask_rows


# --- 4 scale ------------------------------------------------------------------------------------


def _opened_bytes(root: Path) -> tuple[int, int]:
    """Python heap bytes held by ``SplitDataset(root).to_dask()``, and the peak while making it.

    Measured with tracemalloc (allocations through Python's allocators: every object, and
    numpy's buffers), so the figure is the dataset's own, not the process's RSS.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        ds = sd.SplitDataset(root)
        x = ds.to_dask()
        gc.collect()
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del ds, x
    return held - before, peak - before


#: Open + graph time limits of rows 4a-4c (10k, 100k, 1M blocks): 5, 3 and 2 µs per block.
_SCALE_LIMITS = {10_000: 0.050, 100_000: 0.300, 1_000_000: 2.0}
_BYTES_PER_BLOCK = 200


def scale(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    per_block: dict[int, float] = {}
    counts = sorted(ctx.data.many)
    for letter, n in zip("abc", counts, strict=True):
        root = ctx.data.many[n]
        limit = _SCALE_LIMITS.get(n, 5e-6 * n)
        parts: dict[str, list[float]] = {"open": [], "to_dask": [], "x[5]": []}

        def once(root=root, parts=parts):
            t0 = time.perf_counter()
            ds = sd.SplitDataset(root)
            t1 = time.perf_counter()
            x = ds.to_dask()
            t2 = time.perf_counter()
            v = x[5].compute()
            t3 = time.perf_counter()
            parts["open"].append(t1 - t0)
            parts["to_dask"].append(t2 - t1)
            parts["x[5]"].append(t3 - t2)
            return v

        _check(np.array_equal(once(), np.arange(16, dtype=np.uint16).reshape(4, 4)), "x[5]")
        for v in parts.values():
            v.clear()
        total = measure(once, ctx.repeat, warmup=False)
        med = {k: float(np.median(v)) for k, v in parts.items()}
        graph = stat_of([o + g for o, g in zip(parts["open"], parts["to_dask"], strict=True)])
        total.parts = med
        held, peak = _opened_bytes(root)
        total.parts |= {"held_bytes": held, "peak_bytes": peak}
        old = ctx.old({"op": "open", "root": str(root), "index": 5})
        old_total = stat_of([a + b for a, b in zip(old["open"], old["index"], strict=True)])
        per_block[n] = graph.median / n
        us = {k: med[k] / n * 1e6 for k in ("open", "to_dask")}
        row = Row(
            f"4{letter}",
            f"open + `to_dask()` + `x[5].compute()`, {n:,} block files",
            total,
            {OLD: old_total},
            target=f"open+graph < {_fmt_s(limit)}; held < {_BYTES_PER_BLOCK} B/block",
            notes=(
                f"open {_fmt_s(med['open'])} ({us['open']:.2f} µs/block), to_dask "
                f"{_fmt_s(med['to_dask'])} ({us['to_dask']:.2f} µs/block), x[5] "
                f"{_fmt_s(med['x[5]'])}; open+graph {_fmt_s(graph.median)}; opened dataset + "
                f"graph hold {held / n:.0f} B/block (peak while opening {peak / n:.0f} "
                f"B/block, tracemalloc); old = open + ds[5]"
            ),
        )
        row.passed = graph.median < limit and held / n < _BYTES_PER_BLOCK
        rows.append(row)
    small, large = counts[0], counts[-1]
    lin = per_block[large] / per_block[small]
    rows.append(
        Row(
            "4d",
            f"linearity: open+graph time per block at {large:,} / at {small:,} blocks",
            stat_of([lin], unit="x"),
            target="≤ 1 (cost grows no faster than linearly)",
            passed=lin <= 1.0,
            notes=" → ".join(f"{per_block[n] * 1e6:.2f}" for n in counts)
            + " µs/block at "
            + ", ".join(f"{n:,}" for n in counts),
        )
    )
    return rows


def _fmt_s(s: float) -> str:
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1e3:.1f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} µs"


# --- 5 write ------------------------------------------------------------------------------------


def _h5py_write(data: np.ndarray, out: Path, bt: int) -> None:
    out.mkdir()
    codec = hdf5plugin.Blosc(cname=BLOSC["cname"], clevel=BLOSC["clevel"], shuffle=1)
    for i, t0 in enumerate(range(0, data.shape[0], bt)):
        block = data[t0 : t0 + bt]
        with h5py.File(out / f"{i:04d}.h5", "w") as f:
            # One (y, x) plane per HDF5 chunk: a natural hand-written choice.
            f.create_dataset(KEY, data=block, chunks=(1, 1, *block.shape[2:]), **codec)
    meta = {"shape_full": list(data.shape), "shape_block": [bt, *data.shape[1:]]}
    (out / "stack_metadata.json").write_text(json.dumps(meta))


def _zarr_write(data: np.ndarray, path: Path, bt: int) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    # What dask's to_zarr does (create the array, store every chunk without a lock), written
    # out because dask's array-expr mode implements neither to_zarr nor store.
    x = da.from_array(data, chunks=(bt, *data.shape[1:]))
    z = zarr.create_array(
        store=str(path),
        shape=x.shape,
        chunks=(bt, *data.shape[1:]),
        dtype=x.dtype,
        compressors=[BloscCodec(typesize=data.dtype.itemsize, **BLOSC)],
    )
    dask.compute(store_chunks(x, z))


def write(ctx: Context) -> list[Row]:
    d, cfg = ctx.data, ctx.data.config
    bt, n = cfg.block_frames, cfg.write_frames
    data = np.array(np.load(d.npy, mmap_mode="r")[:n])
    outs = {k: d.root / f"write_{k}" for k in ("ours", "ours_scratch", "h5py", "old")}

    def cleaner(path: Path) -> Callable[[], None]:
        return lambda: shutil.rmtree(path, ignore_errors=True)

    cname, level = OUR_COMPRESSION
    zpath = d.root / "write_zarr"
    t = measure_interleaved(
        {
            "ours": lambda: sd.to_split_dataset(
                data, outs["ours"], block_shape=bt, compression=cname, compression_level=level
            ),
            "scratch": lambda: sd.to_split_dataset(
                data,
                outs["ours_scratch"],
                block_shape=bt,
                compression=cname,
                compression_level=level,
                durable=False,
            ),
            "h5": lambda: _h5py_write(data, outs["h5py"], bt),
            "zarr": lambda: _zarr_write(data, zpath, bt),
        },
        ctx.repeat,
        setups={
            "ours": cleaner(outs["ours"]),
            "scratch": cleaner(outs["ours_scratch"]),
            "h5": cleaner(outs["h5py"]),
            "zarr": cleaner(zpath),
        },
    )
    ours, scratch, h5, zr = t["ours"], t["scratch"], t["h5"], t["zarr"]
    old = ctx.old(
        {
            "op": "write",
            "npy": str(d.npy),
            "frames": n,
            "out": str(outs["old"]),
            "block_size": [bt, *cfg.movie_shape[1:]],
        }
    )
    _check(np.array_equal(_from_zarr(zpath).compute(), data), "write zarr read back")
    sizes = {"zarr": sum(p.stat().st_size for p in zpath.rglob("*") if p.is_file())}
    shutil.rmtree(zpath)
    for k, path in outs.items():
        _check(np.array_equal(sd.SplitDataset(path)[:], data), f"write {k} read back")
        sizes[k] = sum(p.stat().st_size for p in block_files(path))
        shutil.rmtree(path)
    peers = {OLD: stat_of(old["samples"]), H5PY: h5, ZARR: zr}
    notes = "compression ratio: " + ", ".join(
        f"{k} {data.nbytes / v:.2f}" for k, v in sizes.items()
    )
    call = f"`to_split_dataset(arr, ..., compression='{cname}', compression_level={level})`"
    rows = []
    # 5b is like for like: neither the h5py loop, the old package nor zarr flush to stable storage.
    for row_id, what, times, note in (
        ("5", f"write {n} volumes: {call}", ours, notes),
        (
            "5b",
            "the same with `durable=False` (no flush to stable storage, as the peers)",
            scratch,
            "",
        ),
    ):
        row = Row(
            row_id, what, times, peers, nbytes=data.nbytes, target="≥2x old, ≥1.3x h5py", notes=note
        )
        row.passed = row.ratio(OLD) >= 2 and row.ratio(H5PY) >= 1.3
        rows.append(row)
    return rows


# --- 6 memory -----------------------------------------------------------------------------------

_MEMORY_SCRIPT = """
import json, resource, sys, time
import dask, dask.array, h5py, hdf5plugin, numpy
import splitds_dask as sd
def vmhwm_kib():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmHWM:")[1].split()[0])
def made(block_info=None):
    return numpy.full(block_info[None]["chunk-shape"], 7, numpy.uint16)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
x = sd.SplitDataset(sys.argv[1]).to_dask()
if sys.argv[2] == "floor":
    x = dask.array.map_blocks(made, chunks=x.chunks, dtype=x.dtype)
x.mean(axis=0).compute()
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"base_kib": base, "peak_kib": peak, "hwm_kib": vmhwm_kib(), "seconds": seconds}))
"""


def _memory_run(root: Path, mode: str) -> dict[str, float]:
    # Through a shell, not straight from here: Linux carries the RSS high-water mark of the
    # process that forks over into the child's ru_maxrss, and this process holds GBs. The shell
    # is small, and it forks (it does not exec) the measured python.
    script = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, "-c", _MEMORY_SCRIPT]
    proc = subprocess.run(
        [*script, str(root), mode],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ.copy(),
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory(ctx: Context) -> list[Row]:
    cfg = ctx.data.config
    rows: list[Row] = []
    peaks: dict[str, list[float]] = {"ours": [], "floor": []}
    # Runs of the two modes alternate, so that a change of load affects both alike.
    for n in sorted(ctx.data.long):
        _memory_run(ctx.data.long[n], "ours")  # warm-up (page cache; links to the movie's files)
    runs = {(n, mode): [] for n in sorted(ctx.data.long) for mode in ("ours", "floor")}
    for _ in range(ctx.repeat):
        for (n, mode), done in runs.items():
            done.append(_memory_run(ctx.data.long[n], mode))
    labels = {
        "ours": ("ab", ""),
        "floor": ("cd", "dask floor: blocks made in the tasks, not read; "),
    }
    for mode, (letters, prefix) in labels.items():
        for letter, n in zip(letters, sorted(ctx.data.long), strict=True):
            done = runs[n, mode]
            nbytes = n * cfg.block_bytes
            peak = stat_of([r["peak_kib"] / 1024 for r in done], unit="MB")
            base = float(np.median([r["base_kib"] / 1024 for r in done]))
            hwm = float(np.median([r["hwm_kib"] / 1024 for r in done]))
            secs = float(np.median([r["seconds"] for r in done]))
            peaks[mode].append(peak.median)
            first = letter in "ac"
            row = Row(
                f"6{letter}",
                f"{prefix}peak RSS of the mean, fresh process, {nbytes / 1e6:,.0f} MB movie "
                f"({n} blocks)",
                peak,
                notes=f"after imports {base:.0f} MB; VmHWM {hwm:.0f} MB; open + mean took "
                f"{_fmt_s(secs)} = {nbytes / secs / 1e6:.0f} MB/s",
            )
            if mode == "ours":
                row.target = "< 1 GB" + ("" if first else "; growth from 6a < 100 MB")
                row.passed = peak.median < 1024
            else:
                row.target = "none: dask's own peak for the same chunks"
            if not first:
                growth = peaks[mode][1] - peaks[mode][0]
                row.notes += f"; growth from 6{letters[0]} {growth:+.0f} MB"
                if mode == "ours":
                    row.passed = row.passed and growth < 100
            rows.append(row)
    return rows


# --- 7 distributed ------------------------------------------------------------------------------


def _default_cluster() -> Any:
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")


def _fixed_cluster() -> Any:
    """The package's :func:`splitds_dask.local_cluster`: workers keep a sane malloc.

    distributed sets ``MALLOC_TRIM_THRESHOLD_`` in its workers' environment, which freezes
    glibc's mmap threshold at 128 KiB, so every chunk buffer becomes an mmap/munmap;
    ``local_cluster`` also sets ``MALLOC_MMAP_THRESHOLD_`` before the workers start.
    """
    import splitds_dask as sd

    return sd.local_cluster(2, threads_per_worker=1, dashboard_address=":0")


def _malloc_env() -> dict[str, str]:
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")}


def distributed(ctx: Context) -> list[Row]:
    from dask.distributed import Client

    d = ctx.data
    ds = sd.SplitDataset(d.movie)
    on_client = lambda: ds.to_dask().mean(axis=0).compute()
    on_threads = lambda: ds.to_dask().mean(axis=0).compute(scheduler="threads")
    expected = on_threads()
    rows = []
    for letter, (label, make) in zip(
        "ab",
        [("default config", _default_cluster), ("`splitds_dask.local_cluster`", _fixed_cluster)],
        strict=True,
    ):
        with make() as cluster, Client(cluster) as client:
            _check(np.allclose(on_client(), expected), f"distributed mean ({label})")
            # Interleaved with the threaded scheduler (the idle workers stay up meanwhile).
            t = measure_interleaved(
                {"cluster": on_client, "threads": on_threads}, ctx.repeat, warmup=False
            )
            ours, threads = t["cluster"], t["threads"]
            envs = client.run(_malloc_env)
        row = Row(
            f"7{letter}",
            f"mean on `LocalCluster(n_workers=2, threads_per_worker=1)`, {label}",
            ours,
            {OTHER: threads},
            other_label="threaded scheduler",
            nbytes=d.raw_bytes,
            target="≥1.0x threads",
            notes="workers' env: " + "; ".join(sorted({str(e) for e in envs.values()})),
        )
        row.passed = row.ratio(OTHER) >= 1.0
        rows.append(row)
    return rows


# --- 8 cluster: the cost of a task on a real cluster --------------------------------------------

#: Ours within this factor of the minimal reader, on every measured column.
CLUSTER_TARGET = 1.15
#: Blocks each reader reads per computation, summed over repeats, at most: a task costs
#: milliseconds on a cluster, so large block counts get fewer repeats (at least one).
_CLUSTER_BLOCK_BUDGET = 10_000
_GROUP = 64  # blocks per chunk in the grouped rows
_STEP = 7


class _ClusterRun(NamedTuple):
    """One computation on a fresh cluster (counters: after minus before the compute)."""

    value: int
    wall: float
    worker_cpu: float  # summed over the workers
    sent: int  # bytes, scheduler -> workers
    peak_mb: float  # VmHWM, max over the workers
    base_mb: float  # RSS after warming up, max over the workers
    tasks: int  # run by the workers


def _minimal_array(root: Path, n: int) -> da.Array:
    """The least a user can write: one map_blocks task per file, carrying its own file's name."""
    shape = (n, *CLUSTER_BLOCK[1:])
    return da.map_blocks(
        functools.partial(_cluster_probe.read_numbered, str(root), name_width(n)),
        chunks=tuple((b,) * (s // b) for s, b in zip(shape, CLUSTER_BLOCK, strict=True)),
        dtype=np.uint16,
        meta=np.empty((0,) * len(shape), np.uint16),
    )


def _on_fresh_cluster(
    build: Callable[[], da.Array], op: Callable[[da.Array], da.Array], warm_path: Path
) -> _ClusterRun:
    from dask.distributed import Client, LocalCluster

    probe = _cluster_probe
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        client.run(probe.warm, str(warm_path))
        expr = op(build())
        before = client.run(probe.counters)
        sent = client.run_on_scheduler(probe.scheduler_sent)
        t0 = time.perf_counter()
        value = int(expr.compute())
        wall = time.perf_counter() - t0
        # Let the scheduler release the keys (messages to the workers, part of the cost).
        while client.run_on_scheduler(probe.scheduler_tasks):
            time.sleep(0.01)
        time.sleep(0.2)
        sent = client.run_on_scheduler(probe.scheduler_sent) - sent
        after = client.run(probe.counters)
    return _ClusterRun(
        value=value,
        wall=wall,
        worker_cpu=sum(after[w].cpu - before[w].cpu for w in after),
        sent=sent,
        peak_mb=max(c.hwm_mb for c in after.values()),
        base_mb=max(c.rss_mb for c in before.values()),
        tasks=sum(after[w].executed - before[w].executed for w in after),
    )


def _ratio_of(ours: Stat, peer: Stat) -> float:
    return ours.median / peer.median


def cluster(ctx: Context) -> list[Row]:
    d = ctx.data
    block_sum = int(np.arange(256, dtype=np.uint64).sum())
    ops = {
        "`x.sum()`": (lambda x: x.sum(), 1),
        f"`x[::{_STEP}].sum()`": (lambda x: x[::_STEP].sum(), _STEP),
    }
    rows: list[Row] = []
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    rounds = 0
    for i, n in enumerate(sorted(d.cluster)):
        root = d.cluster[n]
        warm_path = root / f"{0:0{name_width(n)}d}.h5"
        readers = {
            "ours": lambda root=root: sd.SplitDataset(root).to_dask(),
            "grouped": lambda root=root: sd.SplitDataset(root).to_dask(blocks_per_chunk=_GROUP),
            "minimal": lambda root=root, n=n: _minimal_array(root, n),
        }
        if i == 0:  # untimed warm-up of this process (first compute, imports), every reader
            for build in readers.values():
                _on_fresh_cluster(build, lambda x: x[::_STEP].sum(), warm_path)
        repeats = max(1, min(ctx.repeat, _CLUSTER_BLOCK_BUDGET // n))
        for label, (op, step) in ops.items():
            expected = -(-n // step) * block_sum
            runs: dict[str, list[_ClusterRun]] = {k: [] for k in readers}
            for _ in range(repeats):
                # Round-robin as measure_interleaved, starting with a different reader each
                # round: a cluster may still be winding down when the next one starts.
                names = list(readers)
                rounds += 1
                for name in names[rounds % len(names) :] + names[: rounds % len(names)]:
                    run = _on_fresh_cluster(readers[name], op, warm_path)
                    _check(run.value == expected, f"{label} at {n} blocks, {name}: {run.value}")
                    runs[name].append(run)
            minimal = _cluster_stats(runs["minimal"])
            for name, what in (
                ("ours", "`to_dask()`"),
                ("grouped", f"`to_dask(blocks_per_chunk={_GROUP})`"),
            ):
                ours = _cluster_stats(runs[name])
                rows.append(_cluster_row(next(letters), label, what, n, step, ours, minimal))
    return rows


def _cluster_stats(runs: list[_ClusterRun]) -> dict[str, Stat]:
    return {
        "wall": stat_of([r.wall for r in runs]),
        "worker_cpu": stat_of([r.worker_cpu for r in runs]),
        "sent": stat_of([r.sent for r in runs], unit=" B"),
        "peak_rss": stat_of([r.peak_mb for r in runs], unit="MB"),
        "rss_after_warmup": stat_of([r.base_mb for r in runs], unit="MB"),
        "tasks": stat_of([r.tasks for r in runs], unit=" tasks"),
        "wall_per_task": stat_of([r.wall / r.tasks for r in runs]),
        "sent_per_task": stat_of([r.sent / r.tasks for r in runs], unit=" B"),
    }


def _cluster_row(
    letter: str,
    op: str,
    what: str,
    n: int,
    step: int,
    ours: dict[str, Stat],
    minimal: dict[str, Stat],
) -> Row:
    columns = {"wall": "wall", "worker_cpu": "worker CPU", "sent": "sent", "peak_rss": "peak RSS"}
    ratios = {k: _ratio_of(ours[k], minimal[k]) for k in columns}
    med = lambda s: s.median
    per_block = lambda s, stats: med(stats[s]) / -(-n // step)  # per block read
    notes = (
        "ours/minimal: "
        + ", ".join(f"{label} {ratios[k]:.2f}x" for k, label in columns.items())
        + "; ours vs minimal: "
        f"per task {_fmt_s(med(ours['wall_per_task']))} vs "
        f"{_fmt_s(med(minimal['wall_per_task']))}, "
        f"{med(ours['sent_per_task']):,.0f} vs {med(minimal['sent_per_task']):,.0f} B sent "
        f"({med(ours['tasks']):,.0f} vs {med(minimal['tasks']):,.0f} tasks); "
        f"per block read {per_block('sent', ours):,.0f} vs {per_block('sent', minimal):,.0f} B "
        "sent; "
        f"worker CPU {med(ours['worker_cpu']):.2f} vs {med(minimal['worker_cpu']):.2f} s; "
        f"peak RSS {med(ours['peak_rss']):.0f} vs {med(minimal['peak_rss']):.0f} MB "
        f"(after warm-up {med(ours['rss_after_warmup']):.0f} vs "
        f"{med(minimal['rss_after_warmup']):.0f}); repeats {len(ours['wall'].samples)}"
    )
    row = Row(
        f"8{letter}",
        f"{op}, 2-worker `LocalCluster`, {what}, {n:,} blocks",
        ours["wall"],
        {OTHER: minimal["wall"]},
        other_label="minimal reader",
        target=f"ours ≤ {CLUSTER_TARGET}x minimal: wall, worker CPU, sent, peak RSS",
        notes=notes,
        extra={k: {"ours": ours[k], "minimal": minimal[k]} for k in ours if k != "wall"},
    )
    row.passed = all(r <= CLUSTER_TARGET for r in ratios.values())
    return row


WORKLOADS: dict[str, Callable[[Context], list[Row]]] = {
    "read": full_read,
    "mean": mean,
    "small": small_reads,
    "scale": scale,
    "write": write,
    "memory": memory,
    "distributed": distributed,
    "cluster": cluster,
}
