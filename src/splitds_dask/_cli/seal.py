"""``splitds seal``: record the checksums of block files written by other programs.

Blocks written by this package carry their chunks' CRC32C; blocks from sashimi, fimpy or the
original package do not. ``seal`` sums their stored chunks once and writes the sidecar manifest
``splitds-checksums.json`` in the dataset folder, leaving the block files untouched; reads and
``splitds verify`` then check them too (see :mod:`splitds_dask._storage.checksums`). Running it
again only seals blocks that are new or changed since (by size and modification time).
"""

from __future__ import annotations

import argparse

from splitds_dask._cli.arguments import Commands

__all__ = ["add_parser", "run"]


def add_parser(commands: Commands) -> None:
    """Add ``seal`` and its arguments."""
    seal = commands.add_parser(
        "seal",
        help="record checksums for block files written by other programs",
        description="Compute the CRC32C of every stored chunk of the block files that have no "
        "checksums and record them in splitds-checksums.json in the dataset folder, without "
        "modifying any block file. Reads and 'splitds verify' then check them.",
    )
    seal.add_argument("path", metavar="PATH", help="the dataset folder")


def run(args: argparse.Namespace) -> int:
    """Seal ``args.path``; 0 on success."""
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._storage.block_file import find_data_key
    from splitds_dask._storage.checksums import seal

    ds = SplitDataset(args.path)
    names = [name for name in ds.block_names if (ds.root / name).is_file()]
    missing = len(ds.block_names) - len(names)
    report = seal(ds.root, names, key=ds.data_key, find_key=find_data_key)
    print(
        f"{args.path}: {report.sealed} block(s) sealed ({report.chunks} chunks), "
        f"{report.unchanged} already sealed, {report.with_attribute} with their own checksums"
        + (f", {missing} missing" if missing else "")
    )
    print(f"{args.path}: wrote {report.manifest}" if report.manifest else f"{args.path}: unchanged")
    return 0
