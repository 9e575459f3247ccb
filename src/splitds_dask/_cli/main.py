"""The ``splitds`` command line: argument parsing and dispatch.

- ``splitds info`` describes a split dataset (shape, blocks, codec, sizes on disk, metadata);
- ``splitds convert`` converts between split datasets (another block shape or codec), ``.npy``,
  TIFF, HDF5, zarr and OME-Zarr;
- ``splitds project`` writes the mean, max, min or std along an axis as ``.npy``, TIFF or PNG;
- ``splitds verify`` checks every block file (see :func:`~splitds_dask.verify`);
- ``splitds demo`` writes a synthetic calcium-imaging movie, averages it and saves a PNG.

Each command is one ``_add_<command>`` function (its arguments) and one ``_cmd_<command>``
function (what it does), registered in ``_COMMANDS``. Every command takes ``--scheduler``:
``sync``, ``threads``, ``processes``, ``local`` (:func:`~splitds_dask.local_cluster`) or the
address of a running dask scheduler. Progress bars go to stderr, only when it is a terminal.

Exit codes: 0 on success, 1 when the package, a file format or the file system reports an error,
2 for bad command-line input, 130 when interrupted. Errors are one line on stderr, never a
traceback.

Format-specific reading and writing is :mod:`splitds_dask._cli.convert`; the demo is
:mod:`splitds_dask._cli.demo`, its data :mod:`splitds_dask._cli.synthetic`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from splitds_dask._cli.demo import DEFAULT_SIZE, DEMO_DATASET, PNG_NAME, run_demo
from splitds_dask._cli.sizes import bytes_on_disk, format_bytes, format_shape, parse_size
from splitds_dask._cli.synthetic import DEFAULT_BLOCK_FRAMES, FRAME_BYTES, FRAME_SHAPE
from splitds_dask._storage.filters import describe_filter, filter_name

__all__ = ["build_parser", "dataset_info", "main"]

PROG = "splitds"


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


# --- info -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def block_compression(path: str | os.PathLike[str], key: str) -> dict[str, Any] | None:
    """How one block file stores its array: HDF5 chunk shape and filter pipeline.

    Returns
    -------
    dict or None
        ``description`` (e.g. ``'blosc lz4 level 5, byte shuffle'``, ``'none'``), ``filters``
        (``[{"id": 32001, "name": "blosc", "options": [...]}]``) and ``hdf5_chunks``; None when
        the file cannot be read.
    """
    from splitds_dask._storage.block_file import open_h5

    try:
        with open_h5(path) as f:
            dset = f[key]
            plist = dset.id.get_create_plist()
            filters = [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]
            chunks = dset.chunks
    except (OSError, KeyError):
        return None
    shown = [describe_filter(fid, tuple(values)) for fid, _, values in filters if fid != 2]
    if any(fid == 2 for fid, _, _ in filters):
        shown = [f"{text}, byte shuffle" for text in shown] or ["byte shuffle"]
    return {
        "description": "; ".join(shown) or "none",
        "filters": [
            {
                "id": int(fid),
                "name": filter_name(fid),
                "options": [int(v) for v in values],
            }
            for fid, _, values in filters
        ],
        "hdf5_chunks": list(chunks) if chunks else None,
    }


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
        ``missing_files``, ``data_key``, ``compression`` (of the first block file present, see
        :func:`block_compression`), ``metadata_file``, ``metadata_keys``, ``metadata``,
        ``resolution``, ``axis_order``, ``nbytes`` (uncompressed), ``bytes_on_disk`` (block
        files), ``compression_ratio`` and ``block_bytes`` (uncompressed bytes of one full block).

    Raises
    ------
    SplitDatasetError
        ``path`` is not a readable split dataset.
    """
    from splitds_dask._dataset import SplitDataset

    ds = SplitDataset(path)
    on_disk, missing = bytes_on_disk(ds.files.flat)
    metadata = ds.metadata
    source = ds.parsed_metadata.source
    present = next((p for p in ds.files.flat if p.is_file()), None)
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
        "compression": block_compression(present, ds.data_key) if present else None,
        "metadata_file": str(source) if source is not None else None,
        "metadata_keys": list(metadata),
        "metadata": json.loads(json.dumps(metadata, default=_jsonable)),
        "resolution": list(ds.resolution),
        "axis_order": ds.parsed_metadata.axis_order,
        "nbytes": int(ds.nbytes),
        "block_bytes": int(np.prod(ds.shape_block)) * ds.dtype.itemsize,
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
    say("block shape", f"{tup(info['shape_block'])}, {format_bytes(info['block_bytes'])}")
    say("grid", f"{tup(info['grid'])} blocks")
    if any(info["padding"]):
        say("padding", tup(info["padding"]))
    files = f"{info['n_files']}"
    if info["missing_files"]:
        files += f" ({info['missing_files']} missing)"
    say("files", files)
    say("data key", info["data_key"])
    compression = info["compression"]
    if compression is not None:
        chunks = compression["hdf5_chunks"]
        say(
            "compression",
            compression["description"] + (f" (HDF5 chunks {tup(chunks)})" if chunks else ""),
        )
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


# --- schedulers and progress ------------------------------------------------------------------

SCHEDULERS = ("sync", "threads", "processes", "local")
_ADDRESS = re.compile(r"^([a-z0-9+]+://)?[\w.\-\[\]:]+:\d+$", re.IGNORECASE)


def _scheduler_arg(text: str) -> str:
    if text in SCHEDULERS or ("://" in text and len(text) > 6) or _ADDRESS.match(text):
        return text
    raise argparse.ArgumentTypeError(
        f"invalid scheduler {text!r}: expected sync, threads, processes, local, or a dask "
        "scheduler's address such as tcp://10.0.0.5:8786"
    )


@contextlib.contextmanager
def use_scheduler(spec: str) -> Iterator[Any]:
    """Run the dask computations of the block on ``spec``; yields the distributed Client, if any."""
    import dask

    if spec in ("sync", "threads", "processes"):
        with dask.config.set(scheduler=spec):
            yield None
        return
    from splitds_dask._integrations.cluster import _import_distributed, connect, local_cluster

    distributed = _import_distributed()
    if spec == "local":
        with (
            local_cluster(dashboard_address=":0", silence_logs=40) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
    else:
        with connect(spec, timeout="10s") as client:
            yield client


class _Runner:
    """Computes dask collections on the chosen scheduler, with a progress bar on a terminal."""

    def __init__(self, client: Any, progress: bool) -> None:
        self.client = client
        self.progress = progress

    def compute(self, *collections: Any) -> tuple[Any, ...]:
        import dask

        if self.client is not None:
            futures = self.client.compute(list(collections))
            if self.progress:
                from distributed import progress

                # distributed draws its bar on stdout; stdout is for results here.
                with contextlib.redirect_stdout(sys.stderr):
                    progress(futures)
            return tuple(self.client.gather(futures))
        if self.progress:
            from dask.diagnostics import ProgressBar

            with ProgressBar(out=sys.stderr):
                return dask.compute(*collections)
        return dask.compute(*collections)

    def quiet(self, *collections: Any) -> tuple[Any, ...]:
        return _Runner(self.client, False).compute(*collections)

    def on_slab(self, done: int, total: int) -> None:
        if self.progress:
            end = "\n" if done == total else ""
            print(f"\rwritten {done} of {total} slabs", end=end, file=sys.stderr, flush=True)


def _show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


# --- argument types ---------------------------------------------------------------------------


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
            f"size {text!r} is less than one time point ({format_shape(FRAME_SHAPE)} uint16 = "
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


def _block_shape_arg(text: str) -> tuple[int, ...]:
    """``32`` or ``32,8,256,256``; fewer numbers than axes leave the other axes whole."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas (e.g. 32,8,256,256), got {text!r}"
        )
    return values


def _compression_arg(text: str) -> str | None:
    from splitds_dask._storage.block_file import COMPRESSIONS

    if text == "none":
        return None
    if text not in COMPRESSIONS:
        names = ", ".join(c or "none" for c in COMPRESSIONS)
        raise argparse.ArgumentTypeError(f"unknown compression {text!r}; choose one of {names}")
    return text


# --- commands ---------------------------------------------------------------------------------


def _add_scheduler(parser: argparse.ArgumentParser, note: str = "") -> None:
    parser.add_argument(
        "--scheduler",
        type=_scheduler_arg,
        default="threads",
        metavar="SCHEDULER",
        help="sync, threads, processes, local (a local cluster of worker processes) or the "
        f"address of a dask scheduler, e.g. tcp://10.0.0.5:8786 (default: threads){note}",
    )


def _add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown on a terminal only)"
    )


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="write a synthetic calcium-imaging movie, average it with dask, save a PNG",
        description=(
            "Write a synthetic calcium-imaging movie (uint16, axes t, z, y, x; "
            f"{format_shape(FRAME_SHAPE)} per time point) as a split dataset in FOLDER/{DEMO_DATASET}, "
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
    _add_scheduler(demo)
    demo.add_argument(
        "--seed",
        type=_int_at_least(0, "a non-negative integer"),
        default=0,
        help="seed of the synthetic data (default: 0)",
    )
    demo.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.folder is None:
        folder = Path(tempfile.mkdtemp(prefix="splitds-demo-"))
        print(f"folder    {folder} (new temporary folder)", flush=True)
    else:
        folder = Path(args.folder)
    progress = not args.no_progress and sys.stdout.isatty()
    with use_scheduler(args.scheduler) as client:
        run_demo(
            folder,
            size=args.size,
            block_frames=args.block_frames,
            scheduler=args.scheduler if client is None else client,
            seed=args.seed,
            progress=progress and client is None,
        )
    return 0


def _add_info(commands: Any) -> None:
    info = commands.add_parser(
        "info",
        help="describe a split dataset",
        description="Print the shape, dtype, blocks, files, compression, metadata and sizes on "
        "disk of a split dataset.",
    )
    info.add_argument("path", metavar="PATH", help="the dataset folder")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    _add_scheduler(
        info, note="; info computes nothing, it reads the metadata and one file's header"
    )


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


_FORMATS_HELP = (
    "a split dataset folder, FILE.npy, FILE.tif (a multi-page TIFF; as a source also a folder or "
    "glob pattern of TIFF files), FILE.h5:/DATASET, FOLDER.zarr or FOLDER.ome.zarr"
)


def _add_convert(commands: Any) -> None:
    convert = commands.add_parser(
        "convert",
        help="convert between split datasets, .npy, TIFF, HDF5, zarr and OME-Zarr",
        description=(
            "Copy an array into another format, or into a split dataset with another block "
            "shape or compression. Each task reads its output block's region straight from the "
            "source, so memory stays a few blocks per worker whatever the size of the data. "
            f"SOURCE and TARGET: {_FORMATS_HELP}; the format follows from the name."
        ),
    )
    convert.add_argument("source", metavar="SOURCE")
    convert.add_argument("target", metavar="TARGET")
    convert.add_argument(
        "--block-shape",
        type=_block_shape_arg,
        metavar="N[,N...]",
        help="block shape of a split dataset target, chunk shape of zarr/OME-Zarr (fewer numbers "
        "than axes: the other axes whole; default: the source's blocks, or ~128 MiB chunks)",
    )
    convert.add_argument(
        "--compression",
        type=_compression_arg,
        default="blosc",
        metavar="CODEC",
        help="blosc (default), blosc:zstd, gzip, zstd, none, ... (split dataset, HDF5, zarr)",
    )
    convert.add_argument(
        "--compression-level", type=_int_at_least(0, "a non-negative integer"), metavar="N"
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace a TARGET of the same kind"
    )
    _add_scheduler(convert)
    _add_progress(convert)


def _check_ndim(shape: Sequence[int], block_shape: Sequence[int] | None) -> None:
    if block_shape is not None and len(block_shape) > len(shape):
        raise UsageError(
            f"{PROG}: error: --block-shape has {len(block_shape)} numbers, the data "
            f"{len(shape)} axes (shape {tuple(shape)})"
        )


def _cmd_convert(args: argparse.Namespace) -> int:
    from splitds_dask._cli.convert import open_source, target_kind, write_array

    kind = target_kind(args.target)  # a bad target name fails before anything is read
    source = open_source(args.source)
    _check_ndim(source.shape, args.block_shape)
    with use_scheduler(args.scheduler) as client:
        runner = _Runner(client, _show_progress(args))
        # TIFF and HDF5 are computed slab by slab: one progress line, not a bar per slab.
        in_slabs = kind in ("tiff", "hdf5")
        written = write_array(
            source,
            args.target,
            block_shape=args.block_shape,
            compression=args.compression,
            compression_level=args.compression_level,
            overwrite=args.overwrite,
            compute=runner.quiet if in_slabs else runner.compute,
            on_slab=runner.on_slab,
        )
    print(f"read     {source.description}: {source.shape} {source.dtype}")
    print(f"wrote    {written.description} ({format_bytes(written.nbytes)} uncompressed)")
    return 0


_STATS = ("mean", "max", "min", "std")


def _add_project(commands: Any) -> None:
    project = commands.add_parser(
        "project",
        help="mean, max, min or std along an axis, to .npy, TIFF or PNG",
        description=(
            "Reduce an array along one axis (a time average, a maximum intensity projection, "
            f"...) with dask and save the result. SOURCE: {_FORMATS_HELP}. OUTPUT: FILE.npy or "
            "FILE.tif (exact values: float64 for mean and std) or FILE.png (an 8-bit preview, "
            "contrast stretched, the planes of a 3-D result tiled)."
        ),
    )
    project.add_argument("source", metavar="SOURCE")
    project.add_argument("output", metavar="OUTPUT")
    project.add_argument("--stat", choices=_STATS, default="mean", help="default: mean")
    project.add_argument(
        "--axis", type=int, default=0, help="the axis to reduce (default: 0, time)"
    )
    project.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    project.add_argument(
        "--blocks-per-chunk",
        type=_int_at_least(1, "a positive integer"),
        metavar="N",
        help="read N neighbouring block files of a split dataset per task (fewer, larger tasks: "
        "pays on a cluster when blocks are small; default: 1)",
    )
    _add_scheduler(project)
    _add_progress(project)


def _cmd_project(args: argparse.Namespace) -> int:
    from splitds_dask._cli.convert import PROJECTION_SUFFIXES, open_source, save_projection
    from splitds_dask._daskmodes import std

    if Path(args.output).suffix.lower() not in PROJECTION_SUFFIXES:
        raise UsageError(f"{PROG}: error: OUTPUT must end in .npy, .tif, .tiff or .png")
    source = open_source(args.source)
    ndim = len(source.shape)
    if not -ndim <= args.axis < ndim:
        raise UsageError(
            f"{PROG}: error: --axis {args.axis} is out of range for shape {source.shape}"
        )
    if args.blocks_per_chunk is None:
        x = source.to_dask()
    elif source.dataset is None:
        raise UsageError(f"{PROG}: error: --blocks-per-chunk needs a split dataset SOURCE")
    else:
        x = source.dataset.to_dask(blocks_per_chunk=args.blocks_per_chunk)
    reduced = std(x, args.axis) if args.stat == "std" else getattr(x, args.stat)(axis=args.axis)
    with use_scheduler(args.scheduler) as client:
        (image,) = _Runner(client, _show_progress(args)).compute(reduced)
    save_projection(np.asarray(image), args.output, overwrite=args.overwrite)
    print(f"read     {source.description}: {source.shape} {source.dtype}")
    print(
        f"wrote    {args.output}: {args.stat} over axis {args.axis % ndim}, {image.shape} {image.dtype}"
    )
    return 0


#: name → (add the subcommand's arguments, run it)
def _add_verify(commands: Any) -> None:
    verify = commands.add_parser(
        "verify",
        help="check every block file of a split dataset",
        description="Open and decompress every block file; print each problem with its file. "
        "Exit status 0: no problem, 1: problems found.",
    )
    verify.add_argument("path", metavar="PATH", help="the dataset folder")
    verify.add_argument(
        "--quick", action="store_true", help="check files and arrays, without decompressing"
    )
    _add_scheduler(verify, note="; verify checks the files one by one in this process")


def _cmd_verify(args: argparse.Namespace) -> int:
    from splitds_dask._verify import print_report

    return print_report(args.path, read_data=not args.quick)


_COMMANDS: dict[str, tuple[Callable[[Any], None], Callable[[argparse.Namespace], int]]] = {
    "info": (_add_info, _cmd_info),
    "verify": (_add_verify, _cmd_verify),
    "convert": (_add_convert, _cmd_convert),
    "project": (_add_project, _cmd_project),
    "demo": (_add_demo, _cmd_demo),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``splitds`` argument parser."""
    from splitds_dask import __version__

    parser = _Parser(
        prog=PROG,
        description="Split datasets (folders of numbered HDF5 block files) with dask.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for add, _ in _COMMANDS.values():
        add(commands)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines()) or type(exc).__name__


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
        The exit code: 0 success, 1 error reported by the package, a file format or the file
        system, 2 bad command-line input, 130 interrupted.
    """
    from splitds_dask._cli.convert import FormatError
    from splitds_dask._errors import SplitDatasetError

    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    _, command = _COMMANDS[args.command]
    try:
        return command(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a program that stopped reading (`| head`)
        _silence_stdout()
        return 1
    except (SplitDatasetError, FormatError, OSError, ImportError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
