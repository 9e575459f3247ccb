"""Damaged chunk indexes and Blosc headers in block files the package wrote.

Each test changes a few bytes of a real block file (found through h5py's chunk info and the
packed fields of the chunk's index entry) and checks that every read path refuses the block with
the same error, naming the file, the block and the chunk: ``ds[...]``, ``to_dask()`` with each
local scheduler, and ``verify``. HDF5's own Blosc filter, which trusts a chunk's header, never
gets such a chunk. The fuzz test reads hundreds of random mutants, each in a fresh process.
"""

from __future__ import annotations

import struct
from pathlib import Path

import dask
import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import blosc as numcodecs_blosc

import splitds_dask as sd
from splitds_dask._cli.main import main
from splitds_dask._storage import blosc as fast
from splitds_dask._storage.blosc import BloscCodec, ChunkMap, check_chunk
from splitds_dask._verify import _check_stored, _Tally
from tests.helpers import chunk_fuzz as cf

RANK = len(cf.SHAPE)
NBYTES = cf.CHUNK_BYTES


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    cf.write_source(folder)
    return folder


def _entries(folder: Path) -> list[cf.IndexEntry]:
    entries = cf.index_entries(folder / "0000.h5")
    assert [e.number for e in entries] == [0, 1, 2, 3]
    assert all(e.mask == 0 for e in entries)
    return entries


def _header(path: Path, entry: cf.IndexEntry) -> tuple[int, ...]:
    with open(path, "rb") as f:
        f.seek(entry.offset)
        return struct.unpack("<BBBBiii", f.read(16))


def _reads(folder: Path) -> list[str]:
    """The error of every read path, which must each raise a BlockError."""
    messages = []
    for read in (
        lambda ds: ds[...],
        lambda ds: ds[1:3, 5:9],
        lambda ds: ds.to_dask().compute(scheduler="sync"),
        lambda ds: ds.to_dask().compute(scheduler="threads"),
    ):
        with pytest.raises(sd.BlockError) as info:
            read(sd.SplitDataset(folder))
        assert info.value.block == (0, 0, 0)
        messages.append(str(info.value))
    return messages


def _assert_refused(folder: Path, entry: cf.IndexEntry, problem: str, *, size=None, offset=None):
    """Every read and verify name block (0, 0, 0), its file, the chunk and ``problem``."""
    path = folder / "0000.h5"
    size = entry.size if size is None else size
    offset = entry.offset if offset is None else offset
    expected = (
        f"block (0, 0, 0) ({path}): 'stack_3D' chunk {entry.number} "
        f"({size} bytes at offset {offset}): {problem}"
    )
    assert set(_reads(folder)) == {expected}
    problems = sd.verify(folder)
    assert [(p.kind, p.path, p.block) for p in problems] == [("data", path, (0, 0, 0))]
    assert problems[0].message == (
        f"{path}: block (0, 0, 0): 'stack_3D' chunk {entry.number} "
        f"({size} bytes at offset {offset}): {problem}"
    )


def test_the_sound_dataset_reads_everywhere(dataset: Path) -> None:
    expected = cf.oracle()
    ds = sd.SplitDataset(dataset)
    np.testing.assert_array_equal(ds[...], expected)
    np.testing.assert_array_equal(ds.to_dask().compute(scheduler="threads"), expected)
    assert sd.verify(dataset) == []
    assert len(_entries(dataset)) == 4


# --- the index entry ----------------------------------------------------------------------------


def test_a_filter_mask_skipping_blosc_on_a_compressed_chunk(dataset: Path) -> None:
    """Found silently wrong before: HDF5 copied the compressed bytes as if they were values."""
    entry = _entries(dataset)[1]
    cf.patch(dataset / "0000.h5", entry.mask_at, struct.pack("<I", 1))
    _assert_refused(dataset, entry, f"stored without Blosc but not in {NBYTES} bytes")


@pytest.mark.parametrize("mask", [2, 0x80000000, 3])
def test_a_filter_mask_of_filters_the_array_does_not_have(dataset: Path, mask: int) -> None:
    entry = _entries(dataset)[2]
    cf.patch(dataset / "0000.h5", entry.mask_at, struct.pack("<I", mask))
    _assert_refused(
        dataset, entry, f"filter mask {mask:#x} (only the Blosc filter's bit may be set)"
    )


def test_a_size_one_byte_short(dataset: Path) -> None:
    """Found silently wrong (and varying between reads) before: HDF5 read past the chunk."""
    entry = _entries(dataset)[1]
    cf.patch(dataset / "0000.h5", entry.size_at, struct.pack("<I", entry.size - 1))
    _assert_refused(
        dataset,
        entry,
        f"the Blosc header says {entry.size} compressed bytes, the index {entry.size - 1}",
        size=entry.size - 1,
    )


def test_a_size_one_byte_long_overlaps_the_next_chunk(dataset: Path) -> None:
    entries = _entries(dataset)
    first, second = sorted(entries[:2], key=lambda e: e.offset)
    assert first.offset + first.size == second.offset  # the writer stores them back to back
    cf.patch(dataset / "0000.h5", first.size_at, struct.pack("<I", first.size + 1))
    _assert_refused(dataset, second, f"overlaps chunk {first.number}")


def test_a_size_of_zero(dataset: Path) -> None:
    entry = _entries(dataset)[3]
    cf.patch(dataset / "0000.h5", entry.size_at, struct.pack("<I", 0))
    _assert_refused(dataset, entry, "is empty", size=0)


def test_a_size_beyond_what_blosc_makes(dataset: Path) -> None:
    entries = _entries(dataset)
    first = min(entries, key=lambda e: e.offset)  # checked before its overlap with the next
    cf.patch(dataset / "0000.h5", first.size_at, struct.pack("<I", NBYTES + 17))
    _assert_refused(
        dataset,
        first,
        f"Blosc makes 16..{NBYTES + 16} bytes of a {NBYTES}-byte chunk",
        size=NBYTES + 17,
    )


@pytest.mark.parametrize("where", ["past the end", "across the end", "in the signature"])
def test_an_address_outside_the_file(dataset: Path, where: str) -> None:
    path = dataset / "0000.h5"
    entry = _entries(dataset)[0]
    file_size = path.stat().st_size
    offset = {
        "past the end": file_size + 100,
        "across the end": file_size - entry.size // 2,
        "in the signature": 0,
    }[where]
    cf.patch(path, entry.address_at(RANK), struct.pack("<Q", offset))
    _assert_refused(dataset, entry, f"lies outside the file ({file_size} bytes)", offset=offset)


def test_two_chunks_at_one_address(dataset: Path) -> None:
    entries = _entries(dataset)
    cf.patch(dataset / "0000.h5", entries[3].address_at(RANK), struct.pack("<Q", entries[2].offset))
    moved = cf.IndexEntry(3, entries[3].entry, entries[2].offset, entries[3].size, 0)
    first, second = sorted([entries[2], moved], key=lambda e: (e.offset, e.number))
    _assert_refused(dataset, second, f"overlaps chunk {first.number}", offset=entries[2].offset)


# --- the Blosc header ---------------------------------------------------------------------------


HEADER_CASES = {
    # field: (byte offset in the header, new bytes as a function of the header, problem)
    "version": (
        0,
        lambda h: b"\x09",
        lambda e, h: "Blosc header version 9 (Blosc 1 writes (1, 2))",
    ),
    "nbytes": (
        4,
        lambda h: struct.pack("<i", h[4] + 2),
        lambda e, h: f"the Blosc header says {NBYTES + 2} bytes, the chunk holds {NBYTES}",
    ),
    "cbytes": (
        12,
        lambda h: struct.pack("<i", h[6] + 1000),
        lambda e, h: f"the Blosc header says {e.size + 1000} compressed bytes, the index {e.size}",
    ),
    "typesize": (3, lambda h: b"\x01", lambda e, h: "Blosc item size 1, the array's is 2"),
    "blocksize zero": (
        8,
        lambda h: struct.pack("<i", 0),
        lambda e, h: f"Blosc block size 0 outside 1..{NBYTES}",
    ),
    "blocksize too big": (
        8,
        lambda h: struct.pack("<i", NBYTES + 1),
        lambda e, h: f"Blosc block size {NBYTES + 1} outside 1..{NBYTES}",
    ),
    "shuffle flag": (
        2,
        lambda h: bytes([h[2] ^ 0x1]),
        lambda e, h: f"Blosc flags {h[2] ^ 0x1:#04x} name a shuffle the array's options do not",
    ),
    "both shuffles": (
        2,
        lambda h: bytes([h[2] | 0x5]),
        lambda e, h: f"Blosc flags {h[2] | 0x5:#04x} name a shuffle the array's options do not",
    ),
    "compressor": (
        2,
        lambda h: bytes([h[2] & 0x1F | 0xE0]),
        lambda e, h: (
            f"Blosc flags {h[2] & 0x1F | 0xE0:#04x} name a compressor the array's options do not"
        ),
    ),
    "memcpyed flag": (
        2,
        lambda h: bytes([h[2] | 0x2]),
        lambda e, h: f"a raw Blosc chunk of {NBYTES} bytes stored in {e.size}",
    ),
    "block start": (
        16,
        lambda h: struct.pack("<i", h[6]),
        lambda e, h: f"a Blosc block starts outside {16 + 4 * -(-NBYTES // h[5])}..{h[6] - 4}",
    ),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_a_damaged_blosc_header(dataset: Path, case: str) -> None:
    at, new, problem = HEADER_CASES[case]
    path = dataset / "0000.h5"
    entry = _entries(dataset)[2]
    header = _header(path, entry)
    assert not header[2] & 0x2  # compressed, not stored raw
    cf.patch(path, entry.offset + at, new(header))
    _assert_refused(dataset, entry, problem(entry, header))


def test_compressed_bytes_that_do_not_decompress(dataset: Path) -> None:
    path = dataset / "0000.h5"
    entry = _entries(dataset)[1]
    header = _header(path, entry)
    nblocks = -(-NBYTES // header[5])
    # The size field of the first block's first compressed stream, after the block table.
    # (Changed stream bytes may still decompress, to other values: only a checksum sees that.)
    cf.patch(path, entry.offset + 16 + 4 * nblocks, struct.pack("<i", 2**31 - 1))
    where = f"block (0, 0, 0) ({path}): 'stack_3D' chunk 1 ({entry.size} bytes at offset "
    # The chunk's recorded CRC32C names it first; without checksums the codec's refusal does.
    messages = _reads(dataset)
    assert len(set(messages)) == 1
    assert messages[0].startswith(f"{where}{entry.offset}): CRC32C mismatch")
    with dask.config.set({"splitds.checksums": "ignore"}):
        messages = _reads(dataset)
    assert len(set(messages)) == 1
    assert messages[0].startswith(f"{where}{entry.offset}): does not decompress")


def test_the_cli_reports_the_damaged_chunk(dataset: Path, capsys) -> None:
    entry = _entries(dataset)[1]
    cf.patch(dataset / "0000.h5", entry.mask_at, struct.pack("<I", 1))
    assert main(["verify", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert f"'stack_3D' chunk 1 ({entry.size} bytes at offset {entry.offset}): stored" in out
    assert main(["convert", str(dataset), str(dataset.parent / "out.zarr")]) != 0
    assert "chunk 1" in capsys.readouterr().err


# --- the size of the chunk grid -----------------------------------------------------------------


def test_a_huge_sparse_grid_costs_only_its_stored_chunks(tmp_path: Path) -> None:
    """67 million one-item chunks declared, one stored: the map holds one entry."""
    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "stack", shape=(1 << 26,), dtype="u1", chunks=(1,), **hdf5plugin.Blosc()
        )
        dset[5] = 9
    with h5py.File(path, "r") as f:
        chunk_map = ChunkMap.of(f["stack"], np.dtype("u1"))
    assert chunk_map is not None
    assert chunk_map.n_chunks == 1
    assert chunk_map.offsets.nbytes + chunk_map.sizes.nbytes + chunk_map.masks.nbytes < 64
    assert chunk_map.find(5) == 0
    assert chunk_map.find(4) == -1
    # verify reads the stored chunk alone, not 67 million regions of the grid.
    with h5py.File(path, "r") as f:
        assert _check_stored(f["stack"], path, (0,), _Tally()) == []


def test_more_chunks_than_the_file_can_hold(dataset: Path, monkeypatch) -> None:
    """An index listing more entries than the file has room for is refused before any map."""
    path = dataset / "0000.h5"
    size = path.stat().st_size
    monkeypatch.setattr(fast, "_MIN_ENTRY_BYTES", size)  # as if each entry needed the file
    with pytest.raises(sd.BlockError) as info:
        sd.SplitDataset(dataset)[...]
    assert str(info.value) == (
        f"block (0, 0, 0) ({path}): 'stack_3D' chunk index: 4 chunks listed in a file of "
        f"{size} bytes"
    )


# --- the header check itself --------------------------------------------------------------------

_ITEMS = (np.indices((NBYTES // 2,)).sum(axis=0) % 97).astype("u2")
_CODEC = BloscCodec(2, 1, 1)  # byte shuffle, lz4
_CHUNK = numcodecs_blosc.compress(_ITEMS, b"lz4", 5, 1)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.tuples(
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(0, 255),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
        st.integers(-(2**31), 2**31 - 1),
    ),
    keep=st.lists(st.booleans(), min_size=7, max_size=7),
    table=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=3),
)
def test_any_header_is_either_refused_or_decompressed(fields, keep, table):
    """Random header fields (some kept from a real chunk): refused, or decompressed safely."""
    real = struct.unpack_from("<BBBBiii", _CHUNK)
    header = struct.pack(
        "<BBBBiii", *(r if k else f for r, f, k in zip(real, fields, keep, strict=True))
    )
    body = bytearray(_CHUNK[16:])
    for i, start in enumerate(table):
        body[4 * i : 4 * i + 4] = struct.pack("<i", start)
    raw = header + bytes(body)
    target = np.empty(NBYTES // 2, "u2")
    try:
        fast._decompress_chunk(memoryview(raw), 0, target, _CODEC)
    except fast._Damaged:
        return
    if raw == _CHUNK:
        np.testing.assert_array_equal(target, _ITEMS)


def test_the_real_chunk_passes_the_check():
    check_chunk(_CHUNK, nbytes=NBYTES, codec=_CODEC)


# --- fuzzing ------------------------------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.slow
def test_random_damage_never_crashes_hangs_or_reads_wrong(tmp_path: Path) -> None:
    """240 seeded mutants of index entries and Blosc headers, each read in a fresh process."""
    report = cf.run(tmp_path, 240, seed=0, processes=2, timeout=60)
    assert report.bad == []
    assert sum(report.counts.values()) == 240
    assert report.counts["BlockError"] > 100  # the mutants really do damage
