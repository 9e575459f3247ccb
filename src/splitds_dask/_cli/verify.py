"""``splitds verify``: open (and decompress) every block file, print each problem found.

The checks are :func:`splitds_dask.verify`'s, run as dask tasks on ``--scheduler`` with a
progress bar on a terminal; the exit status is 0 with no problem, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from splitds_dask._cli.arguments import (
    Commands,
    add_allow_external,
    add_progress,
    add_scheduler,
)

__all__ = ["add_parser", "print_report", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``verify`` and its arguments."""
    verify = commands.add_parser(
        "verify",
        help="check every block file of a split dataset",
        description="Open and decompress every block file (in parallel, on --scheduler); print "
        "each problem with its file. Exit status 0: no problem, 1: problems found.",
    )
    verify.add_argument("path", metavar="PATH", help="the dataset folder")
    verify.add_argument(
        "--quick", action="store_true", help="check files and arrays, without decompressing"
    )
    add_allow_external(verify)
    add_scheduler(verify)
    add_progress(verify)


def print_report(
    path: str | os.PathLike[str],
    *,
    read_data: bool = True,
    allow_external: bool = False,
    compute: Callable[..., tuple[Any, ...]] | None = None,
    out: TextIO | None = None,
) -> int:
    """Print every problem (one line each) and the checksums' tally; return the exit status.

    ``compute`` runs the check tasks (``dask.compute`` unless given, e.g. a
    :class:`~splitds_dask._cli.schedulers.Runner`'s).
    """
    import dask

    from splitds_dask._verify import plan_verify

    out = out if out is not None else sys.stdout
    plan = plan_verify(path, read_data=read_data, allow_external=allow_external)
    results = (compute or dask.compute)(*plan.tasks) if plan.tasks else ()
    problems, tally = plan.finish(results)
    for problem in problems:
        print(f"{problem.kind}: {' '.join(problem.message.splitlines())}", file=out)
    if read_data and tally.blocks + tally.without:  # some block was examined
        print(
            f"{path}: checksums: {tally.chunks} chunk(s) checked in {tally.blocks} block(s); "
            f"{tally.without} block(s) without checksums"
            + (" (record them with 'splitds seal')" if tally.without else ""),
            file=out,
        )
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=out)
        return 1
    print(f"{path}: ok", file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    """Check ``args.path``; 0 when no problem was found, 1 otherwise."""
    from splitds_dask._cli.schedulers import Runner, show_progress, use_scheduler

    with use_scheduler(args.scheduler) as client:
        runner = Runner(client, show_progress(args))
        return print_report(
            args.path,
            read_data=not args.quick,
            allow_external=args.allow_external,
            compute=runner.compute,
        )
