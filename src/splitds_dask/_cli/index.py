"""``splitds index``: write a dataset's chunk-map sidecar, so that remote first reads of a block
cost one request (see :mod:`splitds_dask._storage.chunkmap_file`).

Datasets written to a URL by ``to_split_dataset`` have one already; this makes one for a folder
written otherwise (sashimi, fimpy, a local copy uploaded), locally before an upload or on the
store itself. Run it again after a dataset changes: a sidecar bound to other metadata is ignored.
"""

from __future__ import annotations

import argparse

from splitds_dask._cli.arguments import Commands, add_storage_options

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``index`` and its arguments."""
    index = commands.add_parser(
        "index",
        help="write the chunk-map sidecar that spares remote first reads a request",
        description="Map the chunks of every block file and write splitds-chunkmaps.json "
        "beside the metadata (bound to its exact bytes). Remote readers then read a block's "
        "first region in one request instead of two.",
    )
    index.add_argument("path", metavar="DATASET", help="the dataset folder or URL")
    add_storage_options(index)


def run(args: argparse.Namespace) -> int:
    """Index ``args.path``; 0 on success."""
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._write.chunkmaps import write_chunkmaps

    ds = SplitDataset(args.path, storage_options=args.storage_options)
    report = write_chunkmaps(ds)
    print(
        f"{args.path}: {report.blocks} block(s) mapped ({report.chunks} chunks)"
        + (f", {report.skipped} not Blosc alone (read through h5py)" if report.skipped else "")
        + (f", {report.missing} missing" if report.missing else "")
    )
    print(f"{args.path}: wrote {report.location} ({report.bytes} bytes)")
    return 0
