"""``splitds project``: the mean, max, min or std along one axis, saved as .npy, TIFF or PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from splitds_dask._cli.arguments import (
    FORMATS_HELP,
    Commands,
    add_allow_external,
    add_progress,
    add_scheduler,
    int_at_least,
)
from splitds_dask._cli.messages import PROG, UsageError
from splitds_dask._cli.schedulers import Runner, show_progress, use_scheduler

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
        type=int_at_least(1, "a positive integer"),
        metavar="N",
        help="read N neighbouring block files of a split dataset per task (fewer, larger tasks: "
        "pays on a cluster when blocks are small; default: 1)",
    )
    add_allow_external(project)
    add_scheduler(project)
    add_progress(project)


def run(args: argparse.Namespace) -> int:
    """Reduce ``args.source`` along ``args.axis`` and save the result as ``args.output``."""
    from splitds_dask._cli.images import PROJECTION_SUFFIXES, save_projection
    from splitds_dask._cli.sources import open_source
    from splitds_dask._daskmodes import std

    if Path(args.output).suffix.lower() not in PROJECTION_SUFFIXES:
        raise UsageError(f"{PROG}: error: OUTPUT must end in .npy, .tif, .tiff or .png")
    source = open_source(args.source, allow_external=args.allow_external)
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
        (image,) = Runner(client, show_progress(args)).compute(reduced)
    save_projection(np.asarray(image), args.output, overwrite=args.overwrite)
    print(f"read     {source.description}: {source.shape} {source.dtype}")
    print(
        f"wrote    {args.output}: {args.stat} over axis {args.axis % ndim}, {image.shape} {image.dtype}"
    )
    return 0
