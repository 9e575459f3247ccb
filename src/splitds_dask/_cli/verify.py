"""``splitds verify``: open (and decompress) every block file, print each problem found.

The checks are :func:`splitds_dask.verify`; the exit status is 0 with no problem, 1 otherwise.
"""

from __future__ import annotations

import argparse

from splitds_dask._cli.arguments import Commands, add_allow_external, add_scheduler

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``verify`` and its arguments."""
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
    add_allow_external(verify)
    add_scheduler(verify, note="; verify checks the files one by one in this process")


def run(args: argparse.Namespace) -> int:
    """Check ``args.path``; 0 when no problem was found, 1 otherwise."""
    from splitds_dask._verify import print_report

    return print_report(args.path, read_data=not args.quick, allow_external=args.allow_external)
