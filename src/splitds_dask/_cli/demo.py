"""``splitds demo``: a synthetic movie written, reopened, averaged and pictured.

:func:`run_demo` writes a synthetic calcium-imaging movie as a split dataset, with the physical
metadata of a zebrafish larva imaged with a light-sheet microscope (:data:`~splitds_dask._synthetic.MOVIE_SCALE`), reopens
it, computes its mean over time with dask, saves that mean as a PNG (its z planes tiled by
:func:`~splitds_dask._cli.images.mosaic`, contrast-stretched by
:func:`~splitds_dask._cli.images.to_uint8`) and reports sizes and throughputs. The files are kept,
to open in napari or xarray afterwards: the report ends with where they are, their size and the
command that removes them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

import numpy as np

from splitds_dask._cli.arguments import Commands, add_scheduler, int_at_least
from splitds_dask._cli.schedulers import use_scheduler
from splitds_dask._cli.sizes import bytes_on_disk, format_bytes, format_shape, parse_size
from splitds_dask._format.metadata import is_split_dataset
from splitds_dask._synthetic import (
    DEFAULT_BLOCK_FRAMES,
    FRAME_BYTES,
    FRAME_SHAPE,
    MOVIE_AXES,
    MOVIE_SCALE,
    MOVIE_UNITS,
    synthetic_movie,
)

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = [
    "DEFAULT_SIZE",
    "DEMO_DATASET",
    "DEMO_MARKER",
    "PNG_NAME",
    "DemoResult",
    "add_parser",
    "run",
    "run_demo",
]

#: Uncompressed size of the demo movie unless told otherwise.
DEFAULT_SIZE = "400MB"
#: Name of the dataset folder inside the demo folder, of the PNG beside it, and of the file that
#: marks a dataset as written by the demo (so that a re-run may replace it).
DEMO_DATASET = "demo"
PNG_NAME = "mean_projection.png"
DEMO_MARKER = "splitds_demo.json"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


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

    dataset: SplitDataset
    mean: np.ndarray
    png: Path
    write_seconds: float
    mean_seconds: float
    bytes_on_disk: int


def _is_demo_output(path: Path) -> bool:
    return is_split_dataset(path) and (path / DEMO_MARKER).is_file()


def _refusal(path: Path) -> str:
    if is_split_dataset(path):
        return "is a split dataset that splitds demo did not write"
    return "exists and is not a split dataset written by splitds demo"


def _check_demo_target(target: Path) -> None:
    """Refuse anything at ``target`` but an earlier demo's dataset (which is replaced)."""
    from splitds_dask._storage.atomic import check_replaceable

    check_replaceable(
        target,
        overwrite=True,
        replaceable=_is_demo_output,
        what="a split dataset written by splitds demo",
        refusal=_refusal,
    )


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[None]:
    if show:
        from dask.diagnostics import ProgressBar

        with ProgressBar(out=sys.stderr):  # stdout is for the report, as in every command
            yield
    else:
        yield


def _write_movie(
    target: Path, *, n_frames: int, block_frames: int, seed: int, progress: bool
) -> float:
    """Write the movie with ``to_split_dataset`` and mark it as the demo's; the seconds taken."""
    from splitds_dask._write.array import to_split_dataset

    movie = synthetic_movie(n_frames, block_frames=block_frames, seed=seed)
    t0 = time.perf_counter()
    with _progress(progress):
        to_split_dataset(
            movie,
            target,
            block_shape=(block_frames, *FRAME_SHAPE),
            compression="blosc",
            overwrite=_is_demo_output(target),
            axes=MOVIE_AXES,
            scale=(None, *MOVIE_SCALE[1:]),
            units=(None, *MOVIE_UNITS[1:]),
            time_step=MOVIE_SCALE[0],
        )
    seconds = time.perf_counter() - t0
    marker = {"written_by": "splitds demo", "seed": seed, "n_frames": n_frames}
    (target / DEMO_MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return seconds


class _Mean(NamedTuple):
    values: np.ndarray
    seconds: float


def _time_mean(dataset: SplitDataset, *, progress: bool) -> _Mean:
    """The dataset's mean over time, and the seconds it took."""
    t0 = time.perf_counter()
    with _progress(progress):
        mean = dataset.to_dask().mean(axis=0).compute()
    return _Mean(mean, time.perf_counter() - t0)


def _report(say: Callable[[str, str], None], result: DemoResult) -> None:
    """The lines after the run: shape, blocks, files, sizes, throughputs, the image."""
    ds = result.dataset
    mb = ds.nbytes / 1e6
    last = ds.shape[0] - (ds.grid.grid[0] - 1) * ds.shape_block[0]
    say("shape", f"{ds.shape} (t, z, y, x), dtype {ds.dtype}")
    t, z, y, x = ds.scale
    say(
        "scale",
        f"{t:g} s per volume, {z:g} µm between planes, {y:g} x {x:g} µm pixels "
        "(a zebrafish larva under a light-sheet; recorded for napari and xarray)",
    )
    say(
        "blocks",
        f"grid {ds.grid.grid} of block shape {ds.shape_block}"
        + (f" (last block: {_plural(last, 'time point')})" if last != ds.shape_block[0] else ""),
    )
    names = [p.name for p in ds.files.flat]
    listing = names[0] if len(names) == 1 else f"{names[0]} ... {names[-1]}"
    say("files", f"{_plural(len(names), 'block file')} ({listing}) + stack_metadata.json")
    on_disk = result.bytes_on_disk
    say(
        "size",
        f"{format_bytes(ds.nbytes)} uncompressed, {format_bytes(on_disk)} on disk "
        f"(Blosc LZ4, compression ratio {ds.nbytes / max(on_disk, 1):.2f})",
    )
    say(
        "write",
        f"{result.write_seconds:.2f} s, {mb / result.write_seconds:.0f} MB/s "
        "(generate the data + compress + write the block files)",
    )
    say(
        "mean",
        f"{result.mean_seconds:.2f} s, {mb / result.mean_seconds:.0f} MB/s "
        "(read + decompress + average; files just written, likely in the OS cache)",
    )
    say("png", f"{result.png} (the mean, z planes tiled left to right, top to bottom)")


def _report_files(say: Callable[[str, str], None], folder: Path, *, temporary: bool) -> None:
    """Where the demo's files are, how much they take, and the command that removes them."""
    import shlex

    ours = [folder] if temporary else [folder / DEMO_DATASET, folder / PNG_NAME]
    files = (p for top in ours for p in ([top] if top.is_file() else top.rglob("*")) if p.is_file())
    usage = bytes_on_disk(files)
    where = f"{folder} (a new temporary folder)" if temporary else " and ".join(map(str, ours))
    say("kept", f"{where}: {format_bytes(usage.nbytes)} on disk")
    say("remove", "rm -r " + " ".join(shlex.quote(str(p)) for p in ours))


def run_demo(
    folder: str | os.PathLike[str],
    *,
    size: int = parse_size(DEFAULT_SIZE),
    block_frames: int = DEFAULT_BLOCK_FRAMES,
    scheduler: Any = "threads",
    seed: int = 0,
    progress: bool = False,
    out: TextIO | None = None,
    temporary: bool = False,
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
        Show dask progress bars on stderr.
    out : file, optional
        Where to print the report (default: stdout).
    temporary : bool, optional
        ``folder`` was made for the demo: the report's removal command removes it whole
        (otherwise only the dataset and the image).

    Returns
    -------
    DemoResult

    Raises
    ------
    FileExistsError
        ``folder/demo`` exists and was not written by the demo.
    """
    import dask

    from splitds_dask._cli.images import mosaic, to_uint8
    from splitds_dask._cli.png import write_png
    from splitds_dask._dataset import SplitDataset

    stream = sys.stdout if out is None else out
    folder = Path(folder)
    target = folder / DEMO_DATASET
    n_frames = max(1, size // FRAME_BYTES)
    if isinstance(scheduler, str) and scheduler not in ("threads", "processes", "sync"):
        raise ValueError(f"unknown scheduler {scheduler!r}")
    label = scheduler if isinstance(scheduler, str) else "distributed"  # a Client
    _check_demo_target(target)
    folder.mkdir(parents=True, exist_ok=True)

    def say(label: str, text: str) -> None:
        print(f"{label:<9} {text}", file=stream, flush=True)

    say("dataset", str(target))
    say(
        "writing",
        f"{_plural(n_frames, 'time point')} of {format_shape(FRAME_SHAPE)} uint16 "
        f"({format_bytes(n_frames * FRAME_BYTES)}), "
        f"{block_frames} per block file, with to_split_dataset ({label} scheduler)",
    )
    with dask.config.set(scheduler=scheduler):
        write_seconds = _write_movie(
            target, n_frames=n_frames, block_frames=block_frames, seed=seed, progress=progress
        )
        ds = SplitDataset(target)
        say("reading", f"ds.to_dask().mean(axis=0).compute() ({label} scheduler)")
        mean = _time_mean(ds, progress=progress)

    png = write_png(folder / PNG_NAME, to_uint8(mosaic(mean.values)))
    result = DemoResult(
        dataset=ds,
        mean=mean.values,
        png=png,
        write_seconds=write_seconds,
        mean_seconds=mean.seconds,
        bytes_on_disk=bytes_on_disk(ds.files.flat).nbytes,
    )
    _report(say, result)
    _report_files(say, folder, temporary=temporary)
    return result


# --- the command ------------------------------------------------------------------------------


def _size_arg(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if size < FRAME_BYTES:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is less than one time point ({format_shape(FRAME_SHAPE)} uint16 = "
            f"{format_bytes(FRAME_BYTES)})"
        )
    return size


def add_parser(commands: Commands) -> None:
    """Add ``demo`` and its arguments."""
    demo = commands.add_parser(
        "demo",
        help="write a synthetic calcium-imaging movie, average it with dask, save a PNG",
        description=(
            "Write a synthetic calcium-imaging movie (uint16, axes t, z, y, x; "
            f"{format_shape(FRAME_SHAPE)} per time point) as a split dataset in "
            f"FOLDER/{DEMO_DATASET}, reopen it, compute its mean over time with dask, report "
            f"sizes and throughputs, and save the mean as FOLDER/{PNG_NAME}."
        ),
    )
    demo.add_argument(
        "folder",
        nargs="?",
        metavar="FOLDER",
        help="where to write (created if needed; default: a new temporary folder). The files "
        "are kept, to open in napari or xarray; the report ends with the command that removes "
        "them",
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
        type=int_at_least(1, "a positive integer"),
        default=DEFAULT_BLOCK_FRAMES,
        metavar="N",
        help=f"time points per block file (default: {DEFAULT_BLOCK_FRAMES}, "
        f"{format_bytes(DEFAULT_BLOCK_FRAMES * FRAME_BYTES)})",
    )
    add_scheduler(demo)
    demo.add_argument(
        "--seed",
        type=int_at_least(0, "a non-negative integer"),
        default=0,
        help="seed of the synthetic data (default: 0)",
    )
    demo.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the demo in ``args.folder`` (a new temporary folder if none)."""
    temporary = args.folder is None
    if temporary:
        folder = Path(tempfile.mkdtemp(prefix="splitds-demo-"))
        print(f"folder    {folder} (new temporary folder)", flush=True)
    else:
        folder = Path(args.folder)
    from splitds_dask._cli.schedulers import show_progress

    progress = show_progress(args)
    with use_scheduler(args.scheduler) as client:
        run_demo(
            folder,
            size=args.size,
            block_frames=args.block_frames,
            scheduler=args.scheduler if client is None else client,
            seed=args.seed,
            progress=progress and client is None,
            temporary=temporary,
        )
    return 0
