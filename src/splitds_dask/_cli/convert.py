"""``splitds convert``: copy an array into another format, or another block shape or codec.

The formats are read by :mod:`splitds_dask._cli.sources` and written by
:mod:`splitds_dask._cli.targets`; this module holds the command's arguments and its report.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from splitds_dask._cli.arguments import (
    FORMATS_HELP,
    Commands,
    add_allow_external,
    add_progress,
    add_scheduler,
    add_select,
    add_storage_options,
    int_at_least,
)
from splitds_dask._cli.messages import PROG, UsageError
from splitds_dask._cli.schedulers import Runner, show_progress, use_scheduler
from splitds_dask._cli.sizes import format_bytes

__all__ = ["add_parser", "run"]


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


def add_parser(commands: Commands) -> None:
    """Add ``convert`` and its arguments."""
    convert = commands.add_parser(
        "convert",
        help="convert between split datasets, .npy, TIFF, HDF5, zarr and OME-Zarr",
        description=(
            "Copy an array into another format, or into a split dataset with another block "
            "shape or compression. Each task reads its output block's region straight from the "
            "source, so memory stays a few blocks per worker whatever the size of the data. "
            f"SOURCE and TARGET: {FORMATS_HELP}; the format follows from the name (a TARGET "
            "with any other suffix is an error; a name without a suffix, or ending in /, is a "
            "split dataset folder)."
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
        "--compression-level", type=int_at_least(0, "a non-negative integer"), metavar="N"
    )
    convert.add_argument(
        "--overwrite", action="store_true", help="replace a TARGET of the same kind"
    )
    add_select(convert)
    add_allow_external(convert)
    add_storage_options(convert)
    add_scheduler(convert)
    add_progress(convert)


def _check_ndim(shape: Sequence[int], block_shape: Sequence[int] | None) -> None:
    if block_shape is not None and len(block_shape) > len(shape):
        raise UsageError(
            f"{PROG}: error: --block-shape has {len(block_shape)} numbers, the data "
            f"{len(shape)} axes (shape {tuple(shape)})"
        )


def run(args: argparse.Namespace) -> int:
    """Convert ``args.source`` into ``args.target``; print what was read and written.

    The target is checked (its name, its folder, what is there) before the source is opened,
    and what depends on the data (shape, codec) before anything is computed.
    """
    from splitds_dask._cli.sources import open_source
    from splitds_dask._cli.targets import check_target, parse_target, write_array

    target = parse_target(args.target, storage_options=args.storage_options)
    check_target(target, overwrite=args.overwrite)
    source = open_source(
        args.source, allow_external=args.allow_external, storage_options=args.storage_options
    )
    read = f"read     {source.description}: {source.shape} {source.dtype}"
    if args.select is not None:
        source = source.select(args.select)
    _check_ndim(source.shape, args.block_shape)
    with use_scheduler(args.scheduler) as client:
        runner = Runner(client, show_progress(args))
        # TIFF and HDF5 are computed slab by slab: one progress line, not a bar per slab.
        in_slabs = target.kind in ("tiff", "hdf5")
        written = write_array(
            source,
            target,
            block_shape=args.block_shape,
            compression=args.compression,
            compression_level=args.compression_level,
            overwrite=args.overwrite,
            compute=runner.quiet if in_slabs else runner.compute,
            on_slab=runner.on_slab,
        )
    print(read)
    if args.select is not None:
        print(f"selected {args.select.text}: {source.shape}")
    print(f"wrote    {written.description} ({format_bytes(written.nbytes)} uncompressed)")
    return 0
