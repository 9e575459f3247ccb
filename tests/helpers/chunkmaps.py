"""An oracle for chunk-map sidecars: plain json, base64, hashlib and h5py's own chunk index."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

SIDECAR = "splitds-chunkmaps.json"


def _array(text: str, dtype: str) -> list[int]:
    return np.frombuffer(base64.b64decode(text), dtype=dtype).tolist()


def check_sidecar(data: bytes, metadata: bytes, blocks: dict[str, Path], key: str) -> None:
    """Assert that the sidecar ``data`` maps each of ``blocks`` (name: local copy) as h5py
    lists its chunks, with its size, bound to the bytes ``metadata``."""
    doc = json.loads(data)
    assert doc["format"] == "splitds-chunkmaps"
    assert doc["metadata_sha256"] == hashlib.sha256(metadata).hexdigest()
    assert sorted(doc["blocks"]) == sorted(blocks)
    for name, path in blocks.items():
        entry = doc["blocks"][name]
        assert entry["size"] == path.stat().st_size
        with h5py.File(path, "r") as f:
            dset = f[key]
            assert entry["name"] == key
            assert entry["shape"] == list(dset.shape)
            assert entry["chunks"] == list(dset.chunks)
            infos = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
        infos.sort(key=lambda i: i.byte_offset)
        pairs = sorted(
            zip(_array(entry["offsets"], "<i8"), _array(entry["sizes"], "<i8"), strict=True)
        )
        assert pairs == [(i.byte_offset, i.size) for i in infos]
