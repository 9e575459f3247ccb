"""``splitds refs``: kerchunk references that make a split dataset a virtual Zarr store.

Writes the JSON of :func:`~splitds_dask.kerchunk_references`: each Zarr chunk of the array is a
byte range of a block file, so zarr-python and xarray (through fsspec's ``reference://`` file
system) read the dataset in place, without h5py and without a copy. ``--url`` names where the
block files will be served from (``s3://...``, ``https://...``) instead of this machine's
folder. The file is written under a staging name and renamed into place; an earlier reference
file is replaced only with ``--overwrite``, any other file never.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from splitds_dask._cli.arguments import Commands, add_allow_external, add_storage_options
from splitds_dask._cli.messages import PROG, UsageError

__all__ = ["add_parser", "is_reference_file", "run"]

# The opening of a kerchunk reference file (version 1), however it was spaced.
_OPENING = re.compile(rb'^\s*\{\s*"version"\s*:\s*1\s*,\s*"refs"\s*:')
_OPENING_BYTES = 256


def add_parser(commands: Commands) -> None:
    """Add ``refs`` and its arguments."""
    refs = commands.add_parser(
        "refs",
        help="write kerchunk references: the dataset as a virtual Zarr store, read in place",
        description="Write kerchunk (version 1) references mapping each Zarr chunk of the "
        "dataset to the byte range of a Blosc chunk in its block files, for zarr-python and "
        "xarray: xr.open_dataset('reference://', engine='zarr', backend_kwargs={'consolidated': "
        "False, 'storage_options': {'fo': 'OUT.json'}}). Fails, naming the file and the reason, "
        "for layouts one Zarr chunk grid cannot express (overlapping blocks, chunks that do not "
        "tile the blocks, codecs other than Blosc alone).",
    )
    refs.add_argument("path", metavar="DATASET", help="the dataset folder, or its URL")
    refs.add_argument("out", metavar="OUT.json", help="the reference file to write")
    refs.add_argument(
        "--url",
        metavar="BASE",
        help="where the block files will be read from, e.g. s3://bucket/experiment/original "
        "(default: the dataset folder's absolute path on this machine, or DATASET's URL)",
    )
    refs.add_argument(
        "--name", metavar="NAME", help="the array's name (default: the folder's name)"
    )
    refs.add_argument(
        "--overwrite", action="store_true", help="replace an earlier reference file at OUT.json"
    )
    add_allow_external(refs)
    add_storage_options(refs)


def is_reference_file(path: Path) -> bool:
    """Whether ``path`` is a file that begins as a kerchunk (version 1) reference file does."""
    try:
        with open(path, "rb") as f:
            return bool(_OPENING.match(f.read(_OPENING_BYTES)))
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    """Write the references of ``args.path`` to ``args.out``; 0 on success."""
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._errors import SplitDatasetError
    from splitds_dask._integrations.kerchunk import kerchunk_references
    from splitds_dask._remote.location import is_url
    from splitds_dask._storage.atomic import staged_file

    out = Path(args.out).absolute()
    if out.suffix.lower() != ".json":
        raise UsageError(f"{PROG}: error: {args.out}: the reference file must end in .json")
    if out.is_dir():
        raise UsageError(f"{PROG}: error: {args.out} is a folder; name a FILE.json")
    _check(out, overwrite=args.overwrite)
    if is_url(args.path):
        ds = SplitDataset(args.path, storage_options=args.storage_options)
    else:
        ds = SplitDataset(args.path, allow_external=args.allow_external)
    try:
        refs = kerchunk_references(ds, url=args.url, name=args.name)
    except SplitDatasetError:
        raise
    except ValueError as exc:  # an unusable --name or --url
        raise UsageError(f"{PROG}: error: {exc}") from None
    _check(out, overwrite=args.overwrite)
    with staged_file(out) as staging, open(staging, "w", encoding="utf-8") as f:
        json.dump(refs, f, separators=(",", ":"))
    entries = refs["refs"]
    meta = next(key for key in entries if key.endswith("/.zarray"))
    zarray = json.loads(entries[meta])
    chunks = sum(1 for value in entries.values() if isinstance(value, list))
    print(
        f"{args.out}: {chunks} chunk references into {ds.grid.n_blocks} block file(s): array "
        f"'{meta.rpartition('/')[0]}' {tuple(zarray['shape'])} {zarray['dtype']} in chunks of "
        f"{tuple(zarray['chunks'])}"
    )
    return 0


def _check(out: Path, *, overwrite: bool) -> None:
    """Refuse ``out`` unless it is free, or an earlier reference file and ``overwrite``."""
    from splitds_dask._storage.atomic import check_replaceable

    check_replaceable(
        out,
        overwrite=overwrite,
        replaceable=is_reference_file,
        what="a kerchunk reference file",
        hint="pass --overwrite",
        folder=False,
    )
