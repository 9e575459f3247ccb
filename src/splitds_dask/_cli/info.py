"""``splitds info``: what a split dataset holds, where, and how it is stored.

:func:`dataset_info` gathers it as JSON-serialisable values; the command prints them as text or
JSON. It computes nothing: it reads the metadata and one block file's header (so it takes no
``--scheduler``). Given a folder that holds datasets (an experiment folder: ``original/``,
``aligned/``...), it lists them with their shapes instead (:func:`folder_info`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from splitds_dask._cli.arguments import Commands, add_allow_external, add_storage_options
from splitds_dask._cli.messages import PROG, one_line
from splitds_dask._cli.sizes import bytes_on_disk, format_bytes
from splitds_dask._errors import NotASplitDatasetError
from splitds_dask._format.experiments import MAX_ENTRIES, MAX_FOLDERS, channel_datasets, survey
from splitds_dask._remote.location import is_url
from splitds_dask._storage.filters import describe_filter, filter_name

__all__ = ["add_parser", "block_compression", "dataset_info", "folder_info", "run"]

# How far a folder is searched for datasets: <exp>/original/green is 2 down.
_DEPTH = 3
_LIMIT = 256


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
        with open_h5(Path(path)) as f:
            return _compression(f[key])
    except (OSError, KeyError):
        return None


def _remote_compression(dataset: Any, key: str) -> dict[str, Any] | None:
    from splitds_dask._errors import SplitDatasetError

    try:
        block = (0,) * dataset.ndim
        with dataset._open_block_file(dataset.block_names[0], block) as f:
            return _compression(f[key])
    except (OSError, KeyError, SplitDatasetError):
        return None


def _compression(dset: Any) -> dict[str, Any]:
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(i)[:3] for i in range(plist.get_nfilters())]
    chunks = dset.chunks
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


def _storage(ds: Any) -> tuple[dict[str, Any] | None, int | None, int]:
    """Compression of the first block present, bytes stored (None if unknown), files missing."""
    if is_url(str(ds.root)):
        sizes = ds.stored_sizes()
        compression = _remote_compression(ds, ds.data_key)
        if sizes is None:  # a store that cannot list: sizes unknown, nothing counted missing
            return compression, None, 0
        return compression, sum(sizes.values()), len(ds.block_names) - len(sizes)
    usage = bytes_on_disk(ds.files.flat)
    present = next((p for p in ds.files.flat if p.is_file()), None)
    compression = block_compression(present, ds.data_key) if present else None
    return compression, usage.nbytes, usage.missing


def dataset_info(
    path: str | os.PathLike[str],
    *,
    allow_external: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A summary of the split dataset at ``path``, as JSON-serialisable values.

    Parameters
    ----------
    path : str or Path
        The dataset folder, or its URL.
    allow_external : bool, default False
        As for :class:`~splitds_dask.SplitDataset`.
    storage_options : dict, optional
        For a URL, as for :class:`~splitds_dask.SplitDataset`.

    Returns
    -------
    dict
        ``kind`` (``"dataset"``), ``path``, ``shape``, ``dtype``, ``shape_block``, ``grid``,
        ``padding``, ``n_files``, ``missing_files``, ``data_key``, ``compression`` (of the first
        block file present, see :func:`block_compression`), ``metadata_file``,
        ``metadata_keys``, ``metadata``, ``axes``, ``scale``, ``units`` (one entry per axis,
        None when unknown), ``time_step`` (seconds, None when unknown), ``resolution`` (what
        the original package's ``resolution`` reads), ``axis_order`` (the axis names as one
        string, None when a name is longer than a letter), ``nbytes`` (uncompressed),
        ``bytes_on_disk`` (block files), ``compression_ratio`` and ``block_bytes``
        (uncompressed bytes of one full block). ``bytes_on_disk`` is None for a store that
        cannot list (plain HTTP).

    Raises
    ------
    SplitDatasetError
        ``path`` is not a readable split dataset.
    """
    from splitds_dask._dataset import SplitDataset

    if is_url(str(path)):
        ds = SplitDataset(str(path), storage_options=storage_options)
    else:
        ds = SplitDataset(Path(path), allow_external=allow_external)
    compression, stored, missing = _storage(ds)
    metadata = ds.metadata
    source = ds.parsed_metadata.source
    axes = list(ds.axes)
    return {
        "kind": "dataset",
        "path": str(ds.root),
        "shape": list(ds.shape),
        "dtype": str(ds.dtype),
        "shape_block": list(ds.shape_block),
        "grid": list(ds.grid.grid),
        "padding": list(ds.padding),
        "n_files": int(ds.files.size),
        "missing_files": missing,
        "data_key": ds.data_key,
        "compression": compression,
        "metadata_file": str(source) if source is not None else None,
        "metadata_keys": list(metadata),
        "metadata": json.loads(json.dumps(metadata, default=_jsonable)),
        "axes": axes,
        "scale": list(ds.scale),
        "units": list(ds.units),
        "time_step": ds.time_step,
        "resolution": list(ds.resolution),
        "axis_order": "".join(axes) if all(len(a) == 1 for a in axes) else None,
        "nbytes": int(ds.nbytes),
        "block_bytes": math.prod(ds.shape_block) * ds.dtype.itemsize,  # no int64 overflow
        "bytes_on_disk": stored,
        "compression_ratio": round(ds.nbytes / stored, 3) if stored else None,
    }


def folder_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The split datasets inside the folder ``path``, as JSON-serialisable values.

    Returns
    -------
    dict or None
        ``kind`` (``"folder"``), ``path``, ``datasets`` (``name``, ``path``, ``shape``,
        ``block_shape`` of each, sorted by name), ``unreadable`` (``name``, ``path``,
        ``message`` of each folder whose metadata cannot be read), ``channels`` (the names of
        a brunoise two-channel run's datasets, else None) and ``complete`` (False when the
        search stopped at a bound: 3 folders deep, 4,096 folders, 200,000 entries, 256
        datasets). None when the folder holds neither, or is itself a dataset (one that failed
        to open).
    """
    found = survey(path, max_depth=_DEPTH, limit=_LIMIT)
    if found.is_dataset or (not found.datasets and not found.unreadable):
        return None
    channels = channel_datasets(path)
    prefix = "original/" if channels is not None and Path(path, "original").is_dir() else ""
    return {
        "kind": "folder",
        "path": str(path),
        "datasets": [
            {
                "name": d.name,
                "path": str(d.path),
                "shape": list(d.shape),
                "block_shape": list(d.block_shape),
            }
            for d in found.datasets
        ],
        "unreadable": [
            {"name": u.name, "path": str(u.path), "message": u.message} for u in found.unreadable
        ],
        "channels": None if channels is None else [prefix + c.name for c in channels],
        "complete": found.complete,
    }


def _print_folder(info: dict[str, Any], out: TextIO) -> None:
    datasets = info["datasets"]
    count = f"{len(datasets)} split dataset{'' if len(datasets) == 1 else 's'}"
    print(f"{info['path']} is a folder holding {count}:", file=out)
    width = max((len(d["name"]) for d in [*datasets, *info["unreadable"]]), default=0)
    for d in datasets:
        print(
            f"  {d['name']:<{width}}  {tuple(d['shape'])}, blocks {tuple(d['block_shape'])}",
            file=out,
        )
    for u in info["unreadable"]:
        print(f"  {u['name']:<{width}}  unreadable: {one_line(u['message'])}", file=out)
    if info["channels"]:
        print(f"two-channel run: {', '.join(info['channels'])}", file=out)
    if not info["complete"]:
        print(
            f"(the search stopped early: it looks {_DEPTH} folders deep at most, at "
            f"{MAX_FOLDERS:,} folders, {MAX_ENTRIES:,} entries and {_LIMIT} datasets)",
            file=out,
        )
    if datasets:
        print(f"describe one: {PROG} info {Path(info['path']) / datasets[0]['name']}", file=out)


def _number(value: float) -> str:
    return f"{value:g}"


def _scale_text(info: dict[str, Any]) -> str:
    return ", ".join(
        f"{axis} {_number(scale)}" + (f" {unit}" if unit else "")
        for axis, scale, unit in zip(info["axes"], info["scale"], info["units"], strict=True)
    )


def _print_info(info: dict[str, Any], out: TextIO) -> None:
    def say(label: str, text: object) -> None:
        print(f"{label:<13} {text}", file=out)

    def tup(values: list[int]) -> str:
        return str(tuple(values))

    say("path", info["path"])
    names = info["axis_order"] or ", ".join(info["axes"])
    say("shape", f"{tup(info['shape'])} ({names})")
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
    where = (
        metadata_file.rsplit("/", 1)[-1] if metadata_file else "(legacy, inside the block files)"
    )
    say("metadata", f"{where}: {', '.join(info['metadata_keys'])}")
    say("scale", _scale_text(info))
    if "t" in info["axes"]:
        step = info["time_step"]
        say(
            "time step",
            f"{_number(step)} s ({_number(1 / step)} per second)"
            if step
            else "unknown (the t axis has no time unit)",
        )
    say("uncompressed", f"{format_bytes(info['nbytes'])} ({info['nbytes']:,} bytes)")
    ratio = info["compression_ratio"]
    stored = info["bytes_on_disk"]
    say(
        "on disk",
        "unknown (the store cannot list its files)"
        if stored is None
        else f"{format_bytes(stored)} ({stored:,} bytes)"
        + (f", compression ratio {ratio:.2f}" if ratio else ""),
    )


def add_parser(commands: Commands) -> None:
    """Add ``info`` and its arguments."""
    info = commands.add_parser(
        "info",
        help="describe a split dataset, or list those in a folder",
        description="Print the shape, axes, scale, dtype, blocks, files, compression, metadata "
        "and sizes on disk of a split dataset; for a folder that holds split datasets (an "
        "experiment folder), list them with their shapes. Reads metadata and one block file's "
        "header only.",
    )
    info.add_argument(
        "path", metavar="PATH", help="the dataset folder or URL, or a folder holding datasets"
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_allow_external(info)
    add_storage_options(info)


def run(args: argparse.Namespace) -> int:
    """Print the summary of ``args.path``; warnings as one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            info = dataset_info(
                args.path,
                allow_external=args.allow_external,
                storage_options=args.storage_options,
            )
        except NotASplitDatasetError:
            listing = (
                folder_info(args.path)
                if not is_url(args.path) and Path(args.path).is_dir()
                else None
            )
            if listing is None:
                raise
            info = listing
    for warning in caught:
        print(f"{PROG}: warning: {one_line(warning.message)}", file=sys.stderr)
    if args.json:
        print(json.dumps(info, indent=2))
    elif info["kind"] == "folder":
        _print_folder(info, sys.stdout)
    else:
        _print_info(info, sys.stdout)
    return 0
