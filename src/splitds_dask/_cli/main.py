"""The ``splitds`` command line: the argument parser and the dispatch to each command.

- ``splitds info`` describes a split dataset (shape, blocks, codec, sizes on disk, metadata);
- ``splitds convert`` converts between split datasets (another block shape or codec), ``.npy``,
  TIFF, HDF5, zarr and OME-Zarr;
- ``splitds project`` writes the mean, max, min or std along an axis as ``.npy``, TIFF or PNG;
- ``splitds verify`` checks every block file (see :func:`~splitds_dask.verify`);
- ``splitds seal`` records checksums for block files written by other programs;
- ``splitds refs`` writes kerchunk references: the dataset as a virtual Zarr store;
- ``splitds alias`` makes ``import split_dataset`` give splitds-dask in every process;
- ``splitds demo`` writes a synthetic calcium-imaging movie, averages it and saves a PNG.

Each command is one module (:mod:`~splitds_dask._cli.info`, ...) with an ``add_parser``
function (its arguments) and a ``run`` function (what it does), registered in ``_COMMANDS``.
Every command that computes (convert, project, verify, demo) takes ``--scheduler`` (see
:mod:`splitds_dask._cli.schedulers`); info, seal, index, refs and alias take none rather than ignore one.

Exit codes: 0 on success, 1 when the package, a file format or the file system reports an error,
2 for bad command-line input, 130 when interrupted. Errors are one line on stderr, never a
traceback: also those no check foresaw (out of memory, a recursion limit, whatever a library
raises on a damaged file). With ``SPLITDS_DEBUG=1`` in the environment those end with their
traceback instead.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple, NoReturn

from splitds_dask._cli import alias, convert, demo, index, info, project, refs, seal, verify
from splitds_dask._cli.arguments import Commands
from splitds_dask._cli.info import dataset_info
from splitds_dask._cli.messages import DEBUG_VARIABLE, PROG, UsageError, one_line

__all__ = ["build_parser", "dataset_info", "main"]


class _Command(NamedTuple):
    """One subcommand: adds its arguments to the parser, and runs (returning the exit code)."""

    add_parser: Callable[[Commands], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS = {
    "info": _Command(info.add_parser, info.run),
    "verify": _Command(verify.add_parser, verify.run),
    "seal": _Command(seal.add_parser, seal.run),
    "index": _Command(index.add_parser, index.run),
    "refs": _Command(refs.add_parser, refs.run),
    "convert": _Command(convert.add_parser, convert.run),
    "project": _Command(project.add_parser, project.run),
    "alias": _Command(alias.add_parser, alias.run),
    "demo": _Command(demo.add_parser, demo.run),
}


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (raised, so ``main`` returns 2)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    """The ``splitds`` argument parser."""
    from splitds_dask import __version__

    parser = _Parser(
        prog=PROG,
        description="Split datasets (folders of numbered HDF5 block files) with dask.",
        epilog=f"Errors are one line on stderr (exit status 1; 2 for bad arguments). Set "
        f"{DEBUG_VARIABLE}=1 to see the traceback of an unexpected error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in _COMMANDS.values():
        command.add_parser(commands)
    return parser


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
    from splitds_dask._errors import SplitDatasetError

    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return _COMMANDS[args.command].run(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into a program that stopped reading (`| head`)
        _silence_stdout()
        return 1
    except (SplitDatasetError, OSError, ImportError) as exc:  # FormatError is a SplitDatasetError
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # Damaged or hostile input can make any library raise anything (out of memory, a
        # RecursionError, a KeyError from h5py...): still one line, with what happened.
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        what = "out of memory" if isinstance(exc, MemoryError) else type(exc).__name__
        print(
            f"{PROG}: error: {what}: {one_line(exc)} (set {DEBUG_VARIABLE}=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
