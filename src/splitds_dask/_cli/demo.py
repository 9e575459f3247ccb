"""The ``splitds demo`` run: a synthetic movie written, reopened, averaged and pictured.

:func:`run_demo` writes a synthetic calcium-imaging movie as a split dataset, reopens it,
computes its mean over time with dask, saves that mean as a PNG (its z planes tiled by
:func:`mosaic`, contrast-stretched by :func:`to_uint8`) and reports sizes and throughputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from splitds_dask._cli.sizes import bytes_on_disk, format_bytes, format_shape, parse_size
from splitds_dask._cli.synthetic import (
    DEFAULT_BLOCK_FRAMES,
    FRAME_BYTES,
    FRAME_SHAPE,
    synthetic_movie,
)
from splitds_dask._format.metadata import is_split_dataset

__all__ = [
    "DEFAULT_SIZE",
    "DEMO_DATASET",
    "DEMO_MARKER",
    "MOSAIC_GAP",
    "PNG_NAME",
    "DemoResult",
    "mosaic",
    "run_demo",
    "to_uint8",
]

#: Uncompressed size of the demo movie unless told otherwise.
DEFAULT_SIZE = "400MB"
#: Name of the dataset folder inside the demo folder, of the PNG beside it, and of the file that
#: marks a dataset as written by the demo (so that a re-run may replace it).
DEMO_DATASET = "demo"
PNG_NAME = "mean_projection.png"
DEMO_MARKER = "splitds_demo.json"
#: Black pixels between the z planes in the PNG mosaic.
MOSAIC_GAP = 4


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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


def _is_demo_output(path: Path) -> bool:
    return is_split_dataset(path) and (path / DEMO_MARKER).is_file()


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
    scheduler: Any = "threads",
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
    scheduler : {"threads", "processes", "sync"} or distributed.Client, optional
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

    from splitds_dask._cli.png import write_png
    from splitds_dask._daskmodes import array_nbytes
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._write.array import to_split_dataset

    out = sys.stdout if out is None else out
    folder = Path(folder)
    target = folder / DEMO_DATASET
    n_frames = max(1, size // FRAME_BYTES)
    if isinstance(scheduler, str) and scheduler not in ("threads", "processes", "sync"):
        raise ValueError(f"unknown scheduler {scheduler!r}")
    label = scheduler if isinstance(scheduler, str) else "distributed"  # a Client
    overwrite = _is_demo_output(target)
    if not overwrite and is_split_dataset(target):
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
    nbytes = array_nbytes(movie)

    def say(label: str, text: str) -> None:
        print(f"{label:<9} {text}", file=out, flush=True)

    say("dataset", str(target))
    say(
        "writing",
        f"{_plural(n_frames, 'time point')} of {format_shape(FRAME_SHAPE)} uint16 "
        f"({format_bytes(nbytes)}), "
        f"{block_frames} per block file, with to_split_dataset ({label} scheduler)",
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
        marker = {"written_by": "splitds demo", "seed": seed, "n_frames": n_frames}
        (target / DEMO_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")

        ds = SplitDataset(target)
        say("reading", f"ds.to_dask().mean(axis=0).compute() ({label} scheduler)")
        t0 = time.perf_counter()
        with _progress(progress):
            mean = ds.to_dask().mean(axis=0).compute()
        mean_seconds = time.perf_counter() - t0

    on_disk, _ = bytes_on_disk(ds.files.flat)
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
