"""The ``splitds`` command line: ``splitds demo``, ``splitds info`` and ``splitds verify``.

``splitds demo`` writes a synthetic calcium-imaging movie (uint16, axes t, z, y, x) as a split
dataset, reopens it, computes its mean over time with dask and saves that mean as a PNG.
``splitds info`` describes an existing split dataset.

Exit codes: 0 on success, 1 when the package or the file system reports an error
(:class:`~splitds_dask.SplitDatasetError`, :class:`OSError`), 2 for bad command-line input.
Errors are one line on stderr, never a traceback.

The demo itself is :mod:`splitds_dask._demo`, its data :mod:`splitds_dask._synthetic`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np

from ._demo import DEFAULT_SIZE, DEMO_DATASET, PNG_NAME, run_demo
from ._sizes import bytes_on_disk, format_bytes, format_shape, parse_size
from ._synthetic import DEFAULT_BLOCK_FRAMES, FRAME_BYTES, FRAME_SHAPE

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
    on_disk, missing = bytes_on_disk(ds.files.flat)
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


def _cmd_verify(args: argparse.Namespace) -> int:
    from ._verify import print_report

    return print_report(args.path, read_data=not args.quick)


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
    command = {"demo": _cmd_demo, "info": _cmd_info, "verify": _cmd_verify}[args.command]
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
