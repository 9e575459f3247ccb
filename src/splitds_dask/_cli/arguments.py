"""Argument types and options that several commands share."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TypeAlias

from splitds_dask._cli.schedulers import scheduler_arg
from splitds_dask._cli.selection import selection_arg

__all__ = [
    "FORMATS_HELP",
    "Commands",
    "add_allow_external",
    "add_progress",
    "add_scheduler",
    "add_select",
    "add_storage_options",
    "int_at_least",
]

#: The subcommands of the parser, to which each command module adds its own.
Commands: TypeAlias = "argparse._SubParsersAction[Any]"  # argparse has no public name for it

FORMATS_HELP = (
    "a split dataset folder or URL (s3://, https://...), FILE.npy, FILE.tif (a multi-page TIFF; "
    "as a source also a folder or glob pattern of TIFF files), FILE.h5:/DATASET, FOLDER.zarr or "
    "FOLDER.ome.zarr"
)


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argument type: an integer of at least ``minimum`` (``what`` in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def add_scheduler(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--scheduler`` (see :mod:`splitds_dask._cli.schedulers`)."""
    parser.add_argument(
        "--scheduler",
        type=scheduler_arg,
        default="threads",
        metavar="SCHEDULER",
        help="sync, threads, processes, local (a local cluster of worker processes) or the "
        f"address of a dask scheduler, e.g. tcp://10.0.0.5:8786 (default: threads){note}",
    )


def add_allow_external(parser: argparse.ArgumentParser) -> None:
    """``--allow-external`` (see ``allow_external`` of :class:`splitds_dask.SplitDataset`)."""
    parser.add_argument(
        "--allow-external",
        action="store_true",
        help="read block data outside the dataset folder (links to other files, HDF5 external "
        "links, virtual datasets, external storage); refused by default",
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``--storage-options`` (see ``storage_options`` of :class:`splitds_dask.SplitDataset`)."""
    parser.add_argument(
        "--storage-options",
        type=_json_object,
        default=None,
        metavar="JSON",
        help="for a URL (s3://, gs://, https://...): the fsspec filesystem's options as a JSON "
        'object, e.g. \'{"anon": true}\' or \'{"endpoint_url": "https://s3.example.org"}\'; '
        "fsspec also reads them from FSSPEC_<PROTOCOL>_<OPTION> environment variables",
    )


def add_progress(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (shown on a terminal only)"
    )


def add_select(parser: argparse.ArgumentParser) -> None:
    """``--select`` (see :mod:`splitds_dask._cli.selection`)."""
    parser.add_argument(
        "--select",
        type=selection_arg,
        metavar="INDEX",
        help="read only part of SOURCE, indexed as in numpy, e.g. '0:100, :, ::2' (time points "
        "0 to 99, every other row) or '5' (time point 5, its axis dropped): integers, "
        "start:stop:step slices and ...; only the blocks under the selection are read, and "
        "the spacing of a stepped axis is multiplied by its step",
    )
