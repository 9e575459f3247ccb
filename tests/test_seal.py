"""``splitds seal``: checksums for datasets written by other programs (sashimi, fimpy), recorded
in a sidecar manifest without modifying any block file, then checked by every read.

Foreign blocks are written here with plain h5py + hdf5plugin, as sashimi does: no checksum
attribute. The oracle for the manifest is ``crc32c`` of each chunk's ``read_direct_chunk`` bytes.
"""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import crc32c
import dask
import h5py
import hdf5plugin
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._cli.main import main
from splitds_dask._storage import checksums

MANIFEST = "splitds-checksums.json"
KEY = "stack_4D"


def _foreign(root: Path, *, n_blocks: int = 3, compression: str = "blosc") -> np.ndarray:
    """A sashimi-like dataset: 4D blocks of whole volumes, chunks of one plane."""
    rng = np.random.default_rng(3)
    data = (rng.integers(0, 50, (n_blocks * 4, 3, 64, 80)) + 1000).astype(np.uint16)
    root.mkdir(parents=True)
    options = dict(hdf5plugin.Blosc()) if compression == "blosc" else {"compression": "gzip"}
    for i in range(n_blocks):
        with h5py.File(root / f"{i:04d}.h5", "w") as f:
            f.create_dataset(KEY, data=data[4 * i : 4 * i + 4], chunks=(1, 1, 64, 80), **options)
    (root / "stack_metadata.json").write_text(
        json.dumps({"shape_full": list(data.shape), "shape_block": [4, 3, 64, 80]})
    )
    return data


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.glob("*.h5"))}


def _chunks(path: Path) -> list[tuple[int, int, int]]:
    """(byte offset, size, CRC32C) of every chunk, C order: the oracle."""
    with h5py.File(path, "r") as f:
        dset = f[KEY]
        grid = [-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)]
        found = []
        for index in np.ndindex(*grid):
            origin = tuple(i * c for i, c in zip(index, dset.chunks, strict=True))
            info = dset.id.get_chunk_info_by_coord(origin)
            found.append(
                (info.byte_offset, info.size, crc32c.crc32c(dset.id.read_direct_chunk(origin)[1]))
            )
        return found


def _manifest_chunks(root: Path, name: str) -> list[tuple[int, int, int]]:
    entry = json.loads((root / MANIFEST).read_text())["blocks"][name]

    def decode(field: str, dtype: str) -> list[int]:
        return np.frombuffer(base64.b64decode(entry[field]), dtype).tolist()

    return list(
        zip(decode("offsets", "<i8"), decode("sizes", "<i8"), decode("crc32c", "<u4"), strict=True)
    )


def _flip(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("compression", ["blosc", "gzip"])
def test_seal_records_every_chunk_and_touches_no_block(tmp_path, compression, capsys):
    root = tmp_path / "d"
    data = _foreign(root, compression=compression)
    before = _snapshot(root)
    assert main(["seal", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"3 block(s) sealed ({3 * 12} chunks), 0 already sealed, 0 with their own" in out
    assert _snapshot(root) == before, "block files unchanged, bytes and mtimes"
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["format"] == "splitds-checksums"
    for name in before:
        entry = manifest["blocks"][name]
        stat = (root / name).stat()
        assert (entry["key"], entry["size"], entry["mtime_ns"]) == (
            KEY,
            stat.st_size,
            stat.st_mtime_ns,
        )
        assert _manifest_chunks(root, name) == _chunks(root / name)
    ds = sd.SplitDataset(root)
    np.testing.assert_array_equal(ds[...], data)
    assert ds.n_blocks == 3, "the manifest is not a block file"
    assert sd.verify(root) == []


@pytest.mark.parametrize("compression", ["blosc", "gzip"])
@pytest.mark.parametrize("read", ["getitem", "to_dask", "verify"])
def test_a_flip_in_a_sealed_block_is_detected(tmp_path, compression, read):
    root = tmp_path / "d"
    data = _foreign(root, compression=compression)
    assert main(["seal", str(root)]) == 0
    block = root / "0002.h5"
    offset, size, _ = _chunks(block)[5]  # chunk (1, 2): volume 1, plane 2
    _flip(block, offset + size // 2)
    if read == "verify":
        problems = sd.verify(root)
        assert [(p.kind, p.path.name, p.block) for p in problems if p.kind == "checksum"] == [
            ("checksum", "0002.h5", (2, 0, 0, 0))
        ]
        assert "chunk 5 " in problems[0].message
        assert "CRC32C mismatch" in problems[0].message
        assert "changed since it was sealed" in problems[0].message
        return
    ds = sd.SplitDataset(root)
    with pytest.raises(sd.BlockError) as info:
        ds[...] if read == "getitem" else ds.to_dask().compute()
    message = str(info.value)
    assert "0002.h5" in message
    assert "chunk 5 " in message
    assert "CRC32C mismatch" in message
    np.testing.assert_array_equal(ds[:8], data[:8])


def test_seal_is_idempotent_and_seals_only_what_changed(tmp_path, capsys):
    root = tmp_path / "d"
    _foreign(root)
    assert main(["seal", str(root)]) == 0
    manifest = root / MANIFEST
    stamp = manifest.stat().st_mtime_ns, manifest.read_bytes()
    capsys.readouterr()
    assert main(["seal", str(root)]) == 0
    out = capsys.readouterr().out
    assert "0 block(s) sealed (0 chunks), 3 already sealed, 0 with their own" in out
    assert f"{root}: unchanged" in out
    assert (manifest.stat().st_mtime_ns, manifest.read_bytes()) == stamp
    # One block rewritten by its program: only it is sealed again.
    new = np.full((4, 3, 64, 80), 7, np.uint16)
    with h5py.File(root / "0001.h5", "w") as f:
        f.create_dataset(KEY, data=new, chunks=(1, 1, 64, 80), **hdf5plugin.Blosc())
    assert main(["seal", str(root)]) == 0
    assert "1 block(s) sealed (12 chunks), 2 already sealed" in capsys.readouterr().out
    assert _manifest_chunks(root, "0001.h5") == _chunks(root / "0001.h5")
    np.testing.assert_array_equal(sd.SplitDataset(root)[4:8], new)


def test_a_block_rewritten_after_sealing_is_changed_since_sealed(tmp_path):
    root = tmp_path / "d"
    _foreign(root)
    assert main(["seal", str(root)]) == 0
    with h5py.File(root / "0001.h5", "w") as f:  # another layout: chunks elsewhere
        f.create_dataset(
            KEY,
            data=np.ones((4, 3, 64, 80), np.uint16),
            chunks=(2, 3, 64, 80),
            **hdf5plugin.Blosc(),
        )
    with pytest.raises(sd.BlockError, match=r"0001\.h5.*changed since it was sealed"):
        sd.SplitDataset(root)[4:8]
    assert [p.kind for p in sd.verify(root)] == ["checksum"]  # one problem per block


def test_a_copied_dataset_still_checks(tmp_path):
    """A copy has new modification times, but every chunk where it was: it still verifies."""
    root = tmp_path / "d"
    data = _foreign(root)
    assert main(["seal", str(root)]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, copy_function=shutil.copyfile)
    assert (copy / "0000.h5").stat().st_mtime_ns != (root / "0000.h5").stat().st_mtime_ns
    np.testing.assert_array_equal(sd.SplitDataset(copy)[...], data)
    offset, _, _ = _chunks(copy / "0000.h5")[0]
    _flip(copy / "0000.h5", offset + 1)
    with pytest.raises(sd.BlockError, match=r"chunk 0 .*CRC32C mismatch.*changed since"):
        sd.SplitDataset(copy)[0]


def test_our_own_blocks_need_no_seal(tmp_path, capsys):
    data = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    sd.to_split_dataset(data, tmp_path / "d", block_shape=2)
    assert main(["seal", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "0 block(s) sealed (0 chunks), 0 already sealed, 3 with their own checksums" in out
    assert not (tmp_path / "d" / MANIFEST).exists()


def test_a_damaged_manifest_is_a_one_line_error(tmp_path, capsys):
    root = tmp_path / "d"
    _foreign(root)
    (root / MANIFEST).write_text('{"format": "splitds-checksums", "version": 1, "blocks": {"0000')
    with pytest.raises(sd.BlockError, match=r"0000\.h5.*checksum manifest .* is damaged"):
        sd.SplitDataset(root)[0]
    assert main(["seal", str(root)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "is damaged" in err
    assert "delete it to seal again" in err


def test_the_manifest_is_parsed_once_per_process_and_not_carried_by_tasks(tmp_path, monkeypatch):
    root = tmp_path / "d"
    data = _foreign(root, n_blocks=6)

    def pickled() -> tuple[int, int]:  # a fresh dataset and its graph, as tasks carry them
        ds = sd.SplitDataset(root)
        return len(pickle.dumps(ds)), len(pickle.dumps(ds.to_dask().__dask_graph__()))

    unsealed = pickled()
    assert main(["seal", str(root)]) == 0
    parsed = []
    real = checksums._parse_manifest
    monkeypatch.setattr(checksums, "_parse_manifest", lambda *a: parsed.append(a[0]) or real(*a))
    checksums._MANIFESTS.clear()
    ds = sd.SplitDataset(root)
    np.testing.assert_array_equal(ds.to_dask().compute(), data)
    np.testing.assert_array_equal(ds[...], data)
    assert parsed == [root / MANIFEST]
    assert pickled() == unsealed


def test_threads_that_meet_an_unparsed_manifest_parse_it_once(tmp_path, monkeypatch):
    # A scheduler's threads all start on blocks of the same folder: the first parses, the
    # others wait for it (a slow parse makes them all arrive while it runs).
    root = tmp_path / "d"
    _foreign(root, n_blocks=4)
    assert main(["seal", str(root)]) == 0
    parsed = []
    real = checksums._parse_manifest

    def slow(*args):
        parsed.append(args[0])
        time.sleep(0.2)
        return real(*args)

    monkeypatch.setattr(checksums, "_parse_manifest", slow)
    checksums._MANIFESTS.clear()
    names = [f"{i:04d}.h5" for i in range(4)] * 2
    with ThreadPoolExecutor(len(names)) as pool:
        found = list(pool.map(lambda n: checksums.sealed_block(root / n), names))
    assert parsed == [root / MANIFEST]
    assert all(f is not None for f in found)
    assert len({id(f) for f in found}) == 4


def test_a_sealed_block_that_is_missing_the_data_key_is_reported(tmp_path, capsys):
    root = tmp_path / "d"
    _foreign(root)
    with h5py.File(root / "0001.h5", "w") as f:
        f["other"] = np.zeros(3)
    assert main(["seal", str(root)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "0001.h5: no array to seal (the file holds: other)" in err
    assert not (root / MANIFEST).exists()


def test_ignoring_checksums_covers_sealed_blocks(tmp_path):
    root = tmp_path / "d"
    _foreign(root)
    assert main(["seal", str(root)]) == 0
    offset, size, _ = _chunks(root / "0000.h5")[0]
    _flip(root / "0000.h5", offset + size - 2)
    with pytest.raises(sd.BlockError, match="CRC32C mismatch"):
        sd.SplitDataset(root)[0]
    with dask.config.set({"splitds.checksums": "ignore"}):
        errors = []
        try:
            sd.SplitDataset(root)[0]
        except sd.BlockError as exc:  # Blosc itself may notice this flip: never the checksum
            errors.append(str(exc))
    assert not any("CRC32C" in e for e in errors)
