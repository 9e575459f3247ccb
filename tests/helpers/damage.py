"""Damage done to block files by tests: their stored chunks overwritten in place."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import h5py

__all__ = ["spoil_chunks"]


def spoil_chunks(paths: Iterable[Path]) -> None:
    """Overwrite every stored chunk of these block files with 0xff: reading their data fails."""
    for path in paths:
        with h5py.File(path, "r") as f:
            dset = next(f[k] for k in f if isinstance(f[k], h5py.Dataset))
            chunks = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
        with open(path, "r+b") as fh:
            for chunk in chunks:
                fh.seek(chunk.byte_offset)
                fh.write(b"\xff" * chunk.size)
