"""The ``splitds`` command line: ``splitds demo`` and ``splitds info``.

``splitds demo`` writes a synthetic calcium-imaging movie (uint16, axes t, z, y, x) as a split
dataset, reopens it, computes its mean over time with dask and saves that mean as a PNG.
``splitds info`` describes an existing split dataset.

Exit codes: 0 on success, 1 when the package or the file system reports an error
(:class:`~splitds_dask.SplitDatasetError`, :class:`OSError`), 2 for bad command-line input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import math
import os
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

__all__ = [
    "DemoResult",
    "build_parser",
    "dataset_info",
    "format_bytes",
    "main",
    "mosaic",
    "parse_size",
    "run_demo",
    "synthetic_movie",
    "to_uint8",
]

PROG = "splitds"

#: Shape of one time point of the demo movie: z planes x y x x.
FRAME_SHAPE = (8, 256, 256)
#: Bytes of one time point (uint16).
FRAME_BYTES = math.prod(FRAME_SHAPE) * 2
DEFAULT_SIZE = "400MB"
#: Time points per block file: 32 MiB blocks.
DEFAULT_BLOCK_FRAMES = 32
#: Number of simulated cells.
N_CELLS = 64
#: Name of the dataset folder inside the demo folder, of the PNG beside it, and of the file that
#: marks a dataset as written by the demo (so that a re-run may replace it).
DEMO_DATASET = "demo"
PNG_NAME = "mean_projection.png"
DEMO_MARKER = "splitds_demo.json"
#: Black pixels between the z planes in the PNG mosaic.
MOSAIC_GAP = 4

_CAMERA_OFFSET = 100.0  # camera counts added to every pixel, as sCMOS cameras do
_KERNEL_FRAMES = 48  # frames a calcium transient lasts (its tail is negligible after that)


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


# --- sizes ------------------------------------------------------------------------------------

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?P<unit>[a-z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse a size such as ``400MB``, ``1.5GB``, ``512KiB`` or ``1000000`` into bytes.

    ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000; ``KiB``, ``MiB``, ``GiB``, ``TiB`` powers
    of 1024; a bare number is bytes. Case does not matter.

    Parameters
    ----------
    text : str
        The size.

    Returns
    -------
    int
        The size in bytes (rounded down).

    Raises
    ------
    ValueError
        ``text`` is not a positive size.
    """
    match = _SIZE_RE.match(text.lower())
    if match is None or match["unit"] not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r} (examples: 400MB, 1.5GB, 512KiB)")
    size = int(float(match["number"]) * _SIZE_UNITS[match["unit"]])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be positive")
    return size


def format_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (powers of 1000, as the throughputs)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(n) for n in shape)


# --- the synthetic movie ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """Everything about the synthetic sample that does not change over time."""

    static: np.ndarray  # expected photons per voxel without activity (z, y, x), float32
    boxes: tuple[tuple[slice, slice, slice], ...]  # where each cell's footprint lies
    footprints: tuple[np.ndarray, ...]  # each cell's resting photons over its box, float32
    rates: np.ndarray  # transient onsets per frame, per cell
    amplitudes: np.ndarray  # dF/F of one transient, per cell
    kernels: np.ndarray  # (_KERNEL_FRAMES, n_cells): calcium transient shape, peak 1


@functools.lru_cache(maxsize=4)
def _scene(seed: int, frame_shape: tuple[int, int, int], n_cells: int) -> _Scene:
    """The sample: a tissue-shaped smooth background and Gaussian cells (same for every block)."""
    rng = np.random.default_rng([seed, 0xCE11])
    nz, ny, nx = frame_shape
    z = np.arange(nz, dtype=np.float32)[:, None, None]
    y = (np.arange(ny, dtype=np.float32)[None, :, None] + 0.5) / ny - 0.5
    x = (np.arange(nx, dtype=np.float32)[None, None, :] + 0.5) / nx - 0.5
    # Tissue: an ellipse that narrows with depth, with a soft edge, dimmer in deeper planes.
    depth = z / max(nz - 1, 1)
    ry, rx = 0.36 - 0.06 * depth, 0.42 - 0.08 * depth
    radius = np.sqrt((y / ry) ** 2 + (x / rx) ** 2)
    tissue = 1.0 / (1.0 + np.exp((radius - 1.0) / 0.04))
    texture = np.zeros((1, ny, nx), dtype=np.float32)
    for _ in range(6):  # low spatial frequency autofluorescence
        cy, cx = rng.uniform(-0.35, 0.35, 2)
        width = rng.uniform(0.08, 0.2)
        texture += rng.uniform(0.3, 1.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / width**2)
    static = (3.0 + tissue * (25.0 + 20.0 * texture) * (1.0 - 0.4 * depth)).astype(np.float32)

    boxes: list[tuple[slice, slice, slice]] = []
    footprints: list[np.ndarray] = []
    while len(boxes) < n_cells:
        cz = rng.uniform(0, nz - 1) if nz > 1 else 0.0
        cy, cx = rng.uniform(-0.5, 0.5, 2)
        d = cz / max(nz - 1, 1)
        if (cy / (0.36 - 0.06 * d - 0.04)) ** 2 + (cx / (0.42 - 0.08 * d - 0.04)) ** 2 > 1:
            continue  # cells lie inside the tissue
        cy, cx = (cy + 0.5) * ny - 0.5, (cx + 0.5) * nx - 0.5
        sigma = rng.uniform(2.5, 4.0) * min(ny, nx) / 256
        sigma_z = 0.6
        resting = rng.uniform(40.0, 110.0)
        zs = slice(max(0, math.floor(cz - 2)), min(nz, math.ceil(cz + 2) + 1))
        ys = slice(max(0, math.floor(cy - 3 * sigma)), min(ny, math.ceil(cy + 3 * sigma) + 1))
        xs = slice(max(0, math.floor(cx - 3 * sigma)), min(nx, math.ceil(cx + 3 * sigma) + 1))
        bz, by, bx = np.ogrid[zs, ys, xs]
        blob = np.exp(
            -((bz - cz) ** 2) / (2 * sigma_z**2)
            - ((by - cy) ** 2 + (bx - cx) ** 2) / (2 * sigma**2)
        )
        footprint = (resting * blob).astype(np.float32)
        static[zs, ys, xs] += footprint
        boxes.append((zs, ys, xs))
        footprints.append(footprint)

    rates = rng.uniform(0.01, 0.06, n_cells)
    amplitudes = rng.uniform(0.8, 2.5, n_cells)
    # Fast rise (under a frame), exponential decay over 3 to 10 frames.
    lag = np.arange(_KERNEL_FRAMES, dtype=np.float64)[:, None]
    tau_decay = rng.uniform(3.0, 10.0, n_cells)
    kernels = np.exp(-lag / tau_decay) - np.exp(-lag / 0.5)
    kernels /= kernels.max(axis=0)
    return _Scene(
        static=static,
        boxes=tuple(boxes),
        footprints=tuple(footprints),
        rates=rates,
        amplitudes=amplitudes,
        kernels=kernels.astype(np.float32),
    )


def _activity(scene: _Scene, seed: int, start: int, stop: int) -> np.ndarray:
    """dF/F of every cell for frames ``start:stop``: (stop - start, n_cells).

    Transient onsets of frame ``t`` come from a generator seeded with ``(seed, 1, t)``, so the
    activity of a frame does not depend on how the movie is cut into blocks.
    """
    n_cells = len(scene.rates)
    first = max(0, start - _KERNEL_FRAMES + 1)
    onsets = np.empty((stop - first, n_cells), dtype=np.float32)
    for i, t in enumerate(range(first, stop)):
        onsets[i] = np.random.default_rng([seed, 1, t]).poisson(scene.rates)
    onsets *= scene.amplitudes.astype(np.float32)
    trace = np.zeros((stop - start, n_cells), dtype=np.float32)
    for lag in range(_KERNEL_FRAMES):
        # trace[t] += onsets[t - lag] * kernel[lag], for the t whose t - lag is generated
        lo = max(start, first + lag)
        if lo >= stop:
            break
        trace[lo - start :] += onsets[lo - lag - first : stop - lag - first] * scene.kernels[lag]
    return trace


def _movie_block(
    seed: int,
    frame_shape: tuple[int, int, int],
    n_cells: int,
    block_frames: int,
    n_frames: int,
    block_id: tuple[int, ...],
) -> np.ndarray:
    """Frames ``block_id[0] * block_frames`` on, as camera counts (uint16)."""
    scene = _scene(seed, frame_shape, n_cells)
    start = block_id[0] * block_frames
    stop = min(start + block_frames, n_frames)
    trace = _activity(scene, seed, start, stop)
    out = np.empty((stop - start, *frame_shape), dtype=np.uint16)
    photons = np.empty(frame_shape, dtype=np.float32)
    noise = np.empty(frame_shape, dtype=np.float32)
    for i, t in enumerate(range(start, stop)):
        photons[...] = scene.static
        for c, (box, footprint) in enumerate(zip(scene.boxes, scene.footprints, strict=True)):
            if trace[i, c] > 0.01:
                photons[box] += trace[i, c] * footprint
        # Shot noise: Poisson(photons), drawn with its normal approximation N(λ, λ) for speed
        # (exact Poisson sampling would make generating the data slower than writing it).
        np.random.default_rng([seed, 2, t]).standard_normal(dtype=np.float32, out=noise)
        noise *= np.sqrt(photons)
        photons += noise
        photons += _CAMERA_OFFSET
        np.clip(photons, 0, 65535, out=photons)
        np.rint(photons, out=photons)
        out[i] = photons
    return out


def synthetic_movie(
    n_frames: int,
    *,
    frame_shape: tuple[int, int, int] = FRAME_SHAPE,
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    n_cells: int = N_CELLS,
    seed: int = 0,
) -> Any:
    """A lazy synthetic calcium-imaging movie (``uint16``, axes t, z, y, x) as a dask array.

    A smooth tissue-shaped background and ``n_cells`` Gaussian cells whose fluorescence follows
    random calcium transients (fast rise, exponential decay), plus shot noise and a camera
    offset. Each chunk is computed independently (memory stays bounded by a few chunks), and
    every frame's randomness is seeded by ``(seed, frame)``: the data does not depend on the
    chunking or the scheduler.

    Parameters
    ----------
    n_frames : int
        Number of time points.
    frame_shape : tuple of int, optional
        ``(z, y, x)`` of one time point.
    block_frames : int, optional
        Time points per chunk.
    n_cells : int, optional
        Number of cells.
    seed : int, optional
        Seed of everything random.

    Returns
    -------
    dask.array.Array
        Chunked ``(block_frames, *frame_shape)``.
    """
    import dask.array as da
    from dask.base import tokenize

    if n_frames < 1 or block_frames < 1:
        raise ValueError("n_frames and block_frames must be positive")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    frame_shape = (int(frame_shape[0]), int(frame_shape[1]), int(frame_shape[2]))
    full, rest = divmod(n_frames, block_frames)
    chunks_t = (block_frames,) * full + ((rest,) if rest else ())
    token = tokenize(seed, frame_shape, n_cells, block_frames, n_frames)
    return da.map_blocks(
        _movie_block,
        seed,
        frame_shape,
        n_cells,
        block_frames,
        n_frames,
        chunks=(chunks_t, *((n,) for n in frame_shape)),
        dtype=np.uint16,
        meta=np.empty((0, 0, 0, 0), dtype=np.uint16),
        name=f"synthetic-movie-{token}",
    )


# --- images -----------------------------------------------------------------------------------


def mosaic(volume: np.ndarray, gap: int = MOSAIC_GAP, fill: float = np.nan) -> np.ndarray:
    """Tile the planes of a (z, y, x) volume into one 2-D image, row by row.

    ``rows = floor(sqrt(z))`` and ``columns = ceil(z / rows)`` (8 planes → 2x4); tiles are
    separated by ``gap`` pixels of ``fill``.

    Parameters
    ----------
    volume : numpy.ndarray
        3-D array (a 2-D array is one tile).
    gap : int, optional
        Pixels between tiles.
    fill : float, optional
        Value of the gaps and of unused tiles.

    Returns
    -------
    numpy.ndarray
        2-D float64 array.
    """
    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim == 2:
        volume = volume[None]
    if volume.ndim != 3:
        raise ValueError(f"expected a (z, y, x) volume, got shape {volume.shape}")
    nz, ny, nx = volume.shape
    rows = max(1, math.isqrt(nz))
    cols = math.ceil(nz / rows)
    out = np.full((rows * ny + (rows - 1) * gap, cols * nx + (cols - 1) * gap), fill)
    for k in range(nz):
        r, c = divmod(k, cols)
        out[r * (ny + gap) : r * (ny + gap) + ny, c * (nx + gap) : c * (nx + gap) + nx] = volume[k]
    return out


def to_uint8(image: np.ndarray, low: float = 0.5, high: float = 99.8) -> np.ndarray:
    """Contrast-stretch to 8 bit: the ``low`` percentile → 0, the ``high`` percentile → 255.

    NaN pixels (mosaic gaps) become 0 and are left out of the percentiles.

    Parameters
    ----------
    image : numpy.ndarray
        Any real array.
    low, high : float, optional
        Percentiles mapped to 0 and 255.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of the same shape.
    """
    image = np.asarray(image, dtype=np.float64)
    valid = image[np.isfinite(image)]
    if valid.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    lo, hi = np.percentile(valid, [low, high])
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    scaled = np.nan_to_num((image - lo) * scale, nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# --- the demo ---------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What :func:`run_demo` made and measured.

    Attributes
    ----------
    dataset : SplitDataset
        The written dataset, reopened.
    mean : numpy.ndarray
        Its mean over time (z, y, x), float64.
    png : Path
        The mean projection image.
    write_seconds, mean_seconds : float
        Wall time of the write (including generating the data) and of the mean.
    bytes_on_disk : int
        Total size of the block files.
    """

    dataset: Any
    mean: np.ndarray
    png: Path
    write_seconds: float
    mean_seconds: float
    bytes_on_disk: int


def _bytes_on_disk(files: Iterator[Path]) -> tuple[int, int]:
    """Total size of the files, and how many of them are missing."""
    total = missing = 0
    for path in files:
        try:
            total += os.stat(path).st_size
        except FileNotFoundError:
            missing += 1
    return total, missing


def _is_split_dataset(path: Path) -> bool:
    from ._metadata import find_metadata_file

    return path.is_dir() and find_metadata_file(path) is not None


def _is_demo_output(path: Path) -> bool:
    return _is_split_dataset(path) and (path / DEMO_MARKER).is_file()


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[None]:
    if show:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stdout):
            yield
    else:
        yield


def run_demo(
    folder: str | os.PathLike[str],
    *,
    size: int = parse_size(DEFAULT_SIZE),
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    scheduler: str = "threads",
    seed: int = 0,
    progress: bool = False,
    out: TextIO | None = None,
) -> DemoResult:
    """Write a synthetic movie as a split dataset in ``folder/demo``, average it, save a PNG.

    Parameters
    ----------
    folder : str or Path
        Created if needed. The dataset goes to ``folder/demo`` (replaced only if an earlier demo
        wrote it) and the image to ``folder/mean_projection.png``.
    size : int, optional
        Approximate uncompressed size in bytes; the number of time points is
        ``size // FRAME_BYTES`` (at least 1).
    block_frames : int, optional
        Time points per block file.
    scheduler : {"threads", "processes", "sync"}, optional
        The dask scheduler used for writing and for the mean.
    seed : int, optional
        Seed of the synthetic data.
    progress : bool, optional
        Show dask progress bars on stdout.
    out : file, optional
        Where to print the report (default: stdout).

    Returns
    -------
    DemoResult

    Raises
    ------
    FileExistsError
        ``folder/demo`` exists and was not written by the demo.
    """
    import dask

    from ._dataset import SplitDataset
    from ._png import write_png
    from ._writer import to_split_dataset

    out = sys.stdout if out is None else out
    folder = Path(folder)
    target = folder / DEMO_DATASET
    n_frames = max(1, size // FRAME_BYTES)
    if scheduler not in ("threads", "processes", "sync"):
        raise ValueError(f"unknown scheduler {scheduler!r}")
    overwrite = _is_demo_output(target)
    if not overwrite and _is_split_dataset(target):
        raise FileExistsError(
            f"{target} is a split dataset that splitds demo did not write; refusing to replace "
            "it (choose another folder)"
        )
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(
            f"{target} exists and is not a split dataset written by splitds demo; refusing to "
            "write there (choose another folder)"
        )
    folder.mkdir(parents=True, exist_ok=True)
    movie = synthetic_movie(n_frames, block_frames=block_frames, seed=seed)
    nbytes = movie.nbytes

    def say(label: str, text: str) -> None:
        print(f"{label:<9} {text}", file=out, flush=True)

    say("dataset", str(target))
    say(
        "writing",
        f"{_plural(n_frames, 'time point')} of {_shape(FRAME_SHAPE)} uint16 "
        f"({format_bytes(nbytes)}), "
        f"{block_frames} per block file, with to_split_dataset ({scheduler} scheduler)",
    )
    with dask.config.set(scheduler=scheduler):
        t0 = time.perf_counter()
        with _progress(progress):
            to_split_dataset(
                movie,
                target,
                block_shape=(block_frames, *FRAME_SHAPE),
                compression="blosc",
                overwrite=overwrite,
            )
        write_seconds = time.perf_counter() - t0
        marker = {"written_by": f"{PROG} demo", "seed": seed, "n_frames": n_frames}
        (target / DEMO_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")

        ds = SplitDataset(target)
        say("reading", f"ds.to_dask().mean(axis=0).compute() ({scheduler} scheduler)")
        t0 = time.perf_counter()
        with _progress(progress):
            mean = ds.to_dask().mean(axis=0).compute()
        mean_seconds = time.perf_counter() - t0

    on_disk, _ = _bytes_on_disk(ds.files.flat)
    png = write_png(folder / PNG_NAME, to_uint8(mosaic(mean)))
    mb = ds.nbytes / 1e6
    last = ds.shape[0] - (ds.grid.grid[0] - 1) * ds.shape_block[0]
    say("shape", f"{ds.shape} (t, z, y, x), dtype {ds.dtype}")
    say(
        "blocks",
        f"grid {ds.grid.grid} of block shape {ds.shape_block}"
        + (f" (last block: {_plural(last, 'time point')})" if last != ds.shape_block[0] else ""),
    )
    names = [p.name for p in ds.files.flat]
    listing = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"
    say("files", f"{_plural(len(names), 'block file')} ({listing}) + stack_metadata.json")
    say(
        "size",
        f"{format_bytes(ds.nbytes)} uncompressed, {format_bytes(on_disk)} on disk "
        f"(Blosc LZ4, compression ratio {ds.nbytes / max(on_disk, 1):.2f})",
    )
    say(
        "write",
        f"{write_seconds:.2f} s, {mb / write_seconds:.0f} MB/s "
        "(generate the data + compress + write the block files)",
    )
    say(
        "mean",
        f"{mean_seconds:.2f} s, {mb / mean_seconds:.0f} MB/s "
        "(read + decompress + average; files just written, likely in the OS cache)",
    )
    say("png", f"{png} (the mean, z planes tiled left to right, top to bottom)")
    return DemoResult(
        dataset=ds,
        mean=mean,
        png=png,
        write_seconds=write_seconds,
        mean_seconds=mean_seconds,
        bytes_on_disk=on_disk,
    )


# --- info -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def dataset_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of the split dataset at ``path``, as JSON-serialisable values.

    Parameters
    ----------
    path : str or Path
        The dataset folder.

    Returns
    -------
    dict
        ``path``, ``shape``, ``dtype``, ``shape_block``, ``grid``, ``padding``, ``n_files``,
        ``missing_files``, ``data_key``, ``metadata_file``, ``metadata_keys``, ``metadata``,
        ``resolution``, ``axis_order``, ``nbytes`` (uncompressed), ``bytes_on_disk`` (block
        files) and ``compression_ratio``.

    Raises
    ------
    SplitDatasetError
        ``path`` is not a readable split dataset.
    """
    from ._dataset import SplitDataset

    ds = SplitDataset(path)
    on_disk, missing = _bytes_on_disk(ds.files.flat)
    metadata = ds.metadata
    source = ds.parsed_metadata.source
    return {
        "path": str(ds.root),
        "shape": list(ds.shape),
        "dtype": str(ds.dtype),
        "shape_block": list(ds.shape_block),
        "grid": list(ds.grid.grid),
        "padding": list(ds.padding),
        "n_files": int(ds.files.size),
        "missing_files": missing,
        "data_key": ds.data_key,
        "metadata_file": str(source) if source is not None else None,
        "metadata_keys": list(metadata),
        "metadata": json.loads(json.dumps(metadata, default=_jsonable)),
        "resolution": list(ds.resolution),
        "axis_order": ds.parsed_metadata.axis_order,
        "nbytes": int(ds.nbytes),
        "bytes_on_disk": on_disk,
        "compression_ratio": round(ds.nbytes / on_disk, 3) if on_disk else None,
    }


def _print_info(info: dict[str, Any], out: TextIO) -> None:
    def say(label: str, text: object) -> None:
        print(f"{label:<13} {text}", file=out)

    def tup(values: list[int]) -> str:
        return str(tuple(values))

    say("path", info["path"])
    say(
        "shape",
        f"{tup(info['shape'])}" + (f" ({info['axis_order']})" if info["axis_order"] else ""),
    )
    say("dtype", info["dtype"])
    say("block shape", tup(info["shape_block"]))
    say("grid", f"{tup(info['grid'])} blocks")
    if any(info["padding"]):
        say("padding", tup(info["padding"]))
    files = f"{info['n_files']}"
    if info["missing_files"]:
        files += f" ({info['missing_files']} missing)"
    say("files", files)
    say("data key", info["data_key"])
    metadata_file = info["metadata_file"]
    where = Path(metadata_file).name if metadata_file else "(legacy, inside the block files)"
    say("metadata", f"{where}: {', '.join(info['metadata_keys'])}")
    say("resolution", tup(info["resolution"]))
    say("uncompressed", f"{format_bytes(info['nbytes'])} ({info['nbytes']:,} bytes)")
    ratio = info["compression_ratio"]
    say(
        "on disk",
        f"{format_bytes(info['bytes_on_disk'])} ({info['bytes_on_disk']:,} bytes)"
        + (f", compression ratio {ratio:.2f}" if ratio else ""),
    )


# --- command line -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (raised, so ``main`` returns 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _size_arg(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size < FRAME_BYTES:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is less than one time point ({_shape(FRAME_SHAPE)} uint16 = "
            f"{format_bytes(FRAME_BYTES)})"
        )
    return size


def _int_at_least(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The ``splitds`` argument parser."""
    from . import __version__

    parser = _Parser(
        prog=PROG,
        description="Split datasets (folders of numbered HDF5 block files) with dask.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    demo = commands.add_parser(
        "demo",
        help="write a synthetic calcium-imaging movie, average it with dask, save a PNG",
        description=(
            "Write a synthetic calcium-imaging movie (uint16, axes t, z, y, x; "
            f"{_shape(FRAME_SHAPE)} per time point) as a split dataset in FOLDER/{DEMO_DATASET}, "
            "reopen it, compute its mean over time with dask, report sizes and throughputs, and "
            f"save the mean as FOLDER/{PNG_NAME}."
        ),
    )
    demo.add_argument(
        "folder",
        nargs="?",
        metavar="FOLDER",
        help="where to write (created if needed; default: a new temporary folder)",
    )
    demo.add_argument(
        "--size",
        type=_size_arg,
        default=DEFAULT_SIZE,
        metavar="SIZE",
        help=f"uncompressed size, e.g. 32MB, 1.5GB, 512MiB (default: {DEFAULT_SIZE})",
    )
    demo.add_argument(
        "--block-frames",
        type=_int_at_least(1, "a positive integer"),
        default=DEFAULT_BLOCK_FRAMES,
        metavar="N",
        help=f"time points per block file (default: {DEFAULT_BLOCK_FRAMES}, "
        f"{format_bytes(DEFAULT_BLOCK_FRAMES * FRAME_BYTES)})",
    )
    demo.add_argument(
        "--scheduler",
        choices=("sync", "threads", "processes"),
        default="threads",
        help="dask scheduler (default: threads)",
    )
    demo.add_argument(
        "--seed",
        type=_int_at_least(0, "a non-negative integer"),
        default=0,
        help="seed of the synthetic data (default: 0)",
    )
    demo.add_argument("--no-progress", action="store_true", help="do not show progress bars")

    info = commands.add_parser(
        "info",
        help="describe a split dataset",
        description="Print the shape, dtype, blocks, files, metadata and sizes of a split dataset.",
    )
    info.add_argument("path", metavar="PATH", help="the dataset folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines()) or type(exc).__name__


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.folder is None:
        folder = Path(tempfile.mkdtemp(prefix="splitds-demo-"))
        print(f"folder    {folder} (new temporary folder)", flush=True)
    else:
        folder = Path(args.folder)
    progress = not args.no_progress and sys.stdout.isatty()
    run_demo(
        folder,
        size=args.size,
        block_frames=args.block_frames,
        scheduler=args.scheduler,
        seed=args.seed,
        progress=progress,
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = dataset_info(args.path)
    for warning in caught:
        print(f"{PROG}: warning: {_one_line(warning.message)}", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info, sys.stdout)
    return 0


def _silence_stdout() -> None:
    """Send what is left of stdout to /dev/null, so that exiting does not fail flushing it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``splitds`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success, 1 error reported by the package or the file system, 2 bad
        command-line input, 130 interrupted.
    """
    from ._errors import SplitDatasetError

    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    command = {"demo": _cmd_demo, "info": _cmd_info}[args.command]
    try:
        return command(args)
    except BrokenPipeError:  # output piped into a program that stopped reading (`| head`)
        _silence_stdout()
        return 1
    except (SplitDatasetError, OSError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
