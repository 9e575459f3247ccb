"""``splitds project``: the mean, max, min or std along one axis, saved as .npy, TIFF or PNG."""

from __future__ import annotations

import argparse

import numpy as np

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
from splitds_dask._cli.images import MAX_PNG_PIXELS, MAX_PNG_PLANES
from splitds_dask._cli.messages import PROG, UsageError
from splitds_dask._cli.schedulers import Runner, show_progress, use_scheduler
from splitds_dask._errors import FormatError

__all__ = ["add_parser", "run"]

_STATS = ("mean", "max", "min", "std")


def add_parser(commands: Commands) -> None:
    """Add ``project`` and its arguments."""
    project = commands.add_parser(
        "project",
        help="mean, max, min or std along an axis, to .npy, TIFF or PNG",
        description=(
            "Reduce an array along one axis (a time average, a maximum intensity projection, "
            f"...) with dask and save the result. SOURCE: {FORMATS_HELP}. OUTPUT: FILE.npy or "
            "FILE.tif (exact values: float64 for mean and std) or FILE.png (an 8-bit preview, "
            "contrast stretched, the planes of a 3-D result tiled). With --select, --axis "
            "counts the axes of the selection."
        ),
    )
    project.add_argument("source", metavar="SOURCE")
    project.add_argument("output", metavar="OUTPUT")
    project.add_argument("--stat", choices=_STATS, default="mean", help="default: mean")
    project.add_argument(
        "--axis", type=int, default=0, help="the axis to reduce (default: 0, time)"
    )
    project.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    add_select(project)
    project.add_argument(
        "--large-png",
        action="store_true",
        help=f"write a PNG larger than a preview (by default at most {MAX_PNG_PLANES} planes "
        f"and {MAX_PNG_PIXELS // 2**20} megapixels)",
    )
    project.add_argument(
        "--blocks-per-chunk",
        type=int_at_least(1, "a positive integer"),
        metavar="N",
        help="read N neighbouring block files of a split dataset per task (fewer, larger tasks: "
        "pays on a cluster when blocks are small; default: 1)",
    )
    add_allow_external(project)
    add_storage_options(project)
    add_scheduler(project)
    add_progress(project)


def _png_hint(args: argparse.Namespace, shape: tuple[int, ...], axis: int) -> str:
    """How to get a PNG within the size guard: fewer planes, or all of them in a TIFF."""
    from splitds_dask._cli.images import MAX_PNG_PLANES

    if args.select is None and len(shape) == 4:
        # The planes are the result's first axis: the first axis of the data not reduced.
        planes_axis = 1 if axis == 0 else 0
        step = -(-shape[planes_axis] // MAX_PNG_PLANES)
        example = ", ".join([":"] * planes_axis + [f"::{step}"])
        fewer = f"fewer planes with --select (e.g. --select '{example}')"
    else:
        fewer = "fewer planes or pixels with --select"
    return f"show {fewer}, write all of them to .tif or .npy, or pass --large-png"


def run(args: argparse.Namespace) -> int:
    """Reduce ``args.source`` along ``args.axis`` and save the result as ``args.output``.

    The output is checked (its name, its folder, what is there, the size of a PNG) before
    anything is computed.
    """
    from splitds_dask._cli.images import png_too_large
    from splitds_dask._cli.sources import open_source
    from splitds_dask._cli.targets import (
        PROJECTION_KINDS,
        check_target,
        parse_target,
        write_projection,
    )
    from splitds_dask._daskmodes import std

    target = parse_target(args.output, kinds=PROJECTION_KINDS, what="OUTPUT")
    # Before the source is opened: a refused output costs no read of the data.
    check_target(target, overwrite=args.overwrite)
    source = open_source(
        args.source, allow_external=args.allow_external, storage_options=args.storage_options
    )
    read = f"read     {source.description}: {source.shape} {source.dtype}"
    if args.select is not None:
        source = source.select(args.select)
    shape = source.shape
    ndim = len(shape)
    if not -ndim <= args.axis < ndim:
        raise UsageError(f"{PROG}: error: --axis {args.axis} is out of range for shape {shape}")
    axis = args.axis % ndim
    result_shape = shape[:axis] + shape[axis + 1 :]
    if target.kind == "png":
        if len(result_shape) not in (2, 3):
            raise FormatError(
                f"{args.output}: a PNG shows a 2-D or 3-D result, this one has shape "
                f"{result_shape} (write .npy or .tif instead)"
            )
        too_large = None if args.large_png else png_too_large(result_shape)
        if too_large is not None:
            raise UsageError(
                f"{PROG}: error: {args.output}: {too_large}; {_png_hint(args, shape, axis)}"
            )
    if args.blocks_per_chunk is None:
        x = source.to_dask()
    elif source.dataset is None:
        raise UsageError(f"{PROG}: error: --blocks-per-chunk needs a split dataset SOURCE")
    elif source.selection is None:
        x = source.dataset.to_dask(blocks_per_chunk=args.blocks_per_chunk)
    else:
        x = source.to_dask(_grouped(source.natural_chunks(), args.blocks_per_chunk))
    reduced = std(x, axis) if args.stat == "std" else getattr(x, args.stat)(axis=axis)
    with use_scheduler(args.scheduler) as client:
        (image,) = Runner(client, show_progress(args)).compute(reduced)
    write_projection(np.asarray(image), target, overwrite=args.overwrite)
    print(read)
    if args.select is not None:
        print(f"selected {args.select.text}: {shape}")
    print(f"wrote    {args.output}: {args.stat} over axis {axis}, {image.shape} {image.dtype}")
    return 0


def _grouped(chunks: tuple[tuple[int, ...], ...], n: int) -> tuple[tuple[int, ...], ...]:
    """``chunks`` with every ``n`` neighbouring chunks of axis 0 merged into one."""
    first = tuple(sum(chunks[0][i : i + n]) for i in range(0, len(chunks[0]), n))
    return (first, *chunks[1:])
