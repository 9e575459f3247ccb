"""End-to-end checksums: every writer records the CRC32C of every stored chunk, and every read
path (the Blosc fast path, its cached map, h5py's filters, contiguous arrays, verify) refuses a
chunk whose stored bytes changed.

The oracle is ICRAR's ``crc32c`` applied here to the bytes HDF5 returns for each chunk
(``read_direct_chunk``), or to the raw bytes of a contiguous array.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import crc32c
import dask
import h5py
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._cli.main import main
from splitds_dask._compat.writing import EmptySplitDataset
from splitds_dask._storage.block_file import write_block

ATTRIBUTE = "splitds_crc32c"
SHAPE = (40, 64, 96)  # uint16: 480 KB per block of 40, chunks of whole frames below 1 MiB


def _data(shape=SHAPE, dtype="u2", seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == bool:
        return rng.random(shape) < 0.2
    # Compressible but not constant: smooth ramps plus noise.
    ramp = np.add.outer(np.arange(shape[0]), np.arange(int(np.prod(shape[1:])))).reshape(shape)
    return (ramp % 200 + rng.integers(0, 20, shape)).astype(dtype)


def _oracle(path: Path, key: str) -> list[int]:
    """The CRC32C of every stored chunk in C order of the grid, computed here."""
    with h5py.File(path, "r") as f:
        dset = f[key]
        if dset.chunks is None:
            with open(path, "rb") as raw:
                raw.seek(dset.id.get_offset())
                return [crc32c.crc32c(raw.read(dset.id.get_storage_size()))]
        grid = [-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)]
        sums = []
        for index in np.ndindex(*grid):
            origin = tuple(i * c for i, c in zip(index, dset.chunks, strict=True))
            sums.append(crc32c.crc32c(dset.id.read_direct_chunk(origin)[1]))
        return sums


def _recorded(path: Path, key: str) -> list[int]:
    with h5py.File(path, "r") as f:
        return [int(v) for v in f[key].attrs[ATTRIBUTE]]


def _blocks(folder: Path) -> list[Path]:
    return sorted(folder.glob("*[0-9]*.h5"))


COMPRESSIONS = ["blosc", "blosc:zstd", "gzip", "zstd", "bzip2", "blosc2", None]


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dtype", ["u2", "f4", "bool"])
def test_write_block_records_every_chunk(tmp_path, compression, dtype):
    data = _data((30, 128, 160), dtype)  # u2: 40 KB frames, 26 per chunk: 2 chunks
    path = tmp_path / "0000.h5"
    write_block(path, data, key="stack_3D", compression=compression)
    expected = _oracle(path, "stack_3D")
    assert _recorded(path, "stack_3D") == expected
    assert len(expected) == (1 if compression is None else -(-30 // (2**20 // (data[0].nbytes))))


def _write_with(how: str, data: np.ndarray, folder: Path, compression: str) -> Path:
    if how == "to_split_dataset":
        sd.to_split_dataset(data, folder, block_shape=16, compression=compression)
        return folder
    if how == "to_split_dataset(dask)":
        sd.to_split_dataset(
            dask.array.from_array(data, chunks=8), folder, block_shape=16, compression=compression
        )
        return folder
    if how == "SplitDatasetWriter":
        with sd.SplitDatasetWriter(
            folder,
            frame_shape=data.shape[1:],
            dtype=data.dtype,
            block_length=16,
            compression=compression,
        ) as writer:
            for start in range(0, len(data), 5):
                writer.append(data[start : start + 5])
        return folder
    if how == "save_to_split_dataset":
        return sd.save_to_split_dataset(
            data, folder.parent, block_size=(16, None, None), prefix=folder.name
        ).root
    assert how == "EmptySplitDataset"
    empty = EmptySplitDataset(folder.parent, folder.name, shape_full=data.shape, shape_block=(16,))
    for i, (_, slices) in enumerate(empty.slices()):
        empty.save_block_data(i, data[slices])
    return empty.finalize().root


# The original API (save_to_split_dataset, EmptySplitDataset) writes Blosc only.
WRITERS = [
    *(
        (how, compression)
        for how in ("to_split_dataset", "to_split_dataset(dask)", "SplitDatasetWriter")
        for compression in ("blosc", "gzip", None)
    ),
    ("save_to_split_dataset", "blosc"),
    ("EmptySplitDataset", "blosc"),
]


@pytest.mark.parametrize(("how", "compression"), WRITERS)
def test_every_writer_records_checksums(tmp_path, how, compression):
    data = _data((40, 32, 48))
    root = _write_with(how, data, tmp_path / "d", compression)
    blocks = _blocks(root)
    assert len(blocks) == 3
    key = sd.SplitDataset(root).data_key
    for block in blocks:
        assert _recorded(block, key) == _oracle(block, key)
    np.testing.assert_array_equal(sd.SplitDataset(root)[...], data)


def _chunk_places(path: Path, key: str) -> list[tuple[int, int]]:
    """(byte offset, size) of each stored chunk (C order), or the contiguous data."""
    with h5py.File(path, "r") as f:
        dset = f[key]
        if dset.chunks is None:
            return [(dset.id.get_offset(), dset.id.get_storage_size())]
        grid = [-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)]
        places = []
        for index in np.ndindex(*grid):
            origin = tuple(i * c for i, c in zip(index, dset.chunks, strict=True))
            info = dset.id.get_chunk_info_by_coord(origin)
            places.append((info.byte_offset, info.size))
        return places


def _flip(path: Path, at: int, *, keep_mtime: bool = False) -> None:
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x5A]))
    if keep_mtime:  # same size, inode and mtime: the file version a cached chunk map keys on
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _dataset(tmp_path: Path, compression: str | None, dtype: str = "u2") -> tuple[Path, np.ndarray]:
    data = _data((48, 256, 160), dtype)  # u2: 80 KB frames, 13 per chunk: 2 chunks per block
    sd.to_split_dataset(data, tmp_path / "d", block_shape=24, compression=compression)
    return tmp_path / "d", data


READS = {
    "getitem": lambda root: sd.SplitDataset(root)[...],
    "frame": lambda root: sd.SplitDataset(root)[45],
    "to_dask": lambda root: sd.SplitDataset(root).to_dask().compute(scheduler="sync"),
    "to_dask threads": lambda root: sd.SplitDataset(root).to_dask().sum().compute(),
}


@pytest.mark.parametrize("compression", ["blosc", "blosc:zstd", "gzip", "bzip2", None])
@pytest.mark.parametrize("read", list(READS))
def test_a_flipped_payload_byte_is_a_block_error_naming_the_chunk(tmp_path, compression, read):
    root, data = _dataset(tmp_path, compression)
    block = root / "0001.h5"  # frames 24..47
    places = _chunk_places(block, "stack_3D")
    number = len(places) - 1  # holds frame 45 in every layout
    offset, size = places[number]
    _flip(block, offset + size // 2)
    with pytest.raises(sd.BlockError) as info:
        READS[read](root)
    message = str(info.value)
    assert "0001.h5" in message
    assert "block (1, 0, 0)" in message
    assert f"chunk {number} " in message
    assert "CRC32C mismatch" in message
    assert info.value.path == str(block)
    # The other block still reads.
    np.testing.assert_array_equal(sd.SplitDataset(root)[:24], data[:24])


@pytest.mark.parametrize("compression", ["blosc", "gzip", None])
def test_verify_reports_the_chunk(tmp_path, compression, capsys):
    root, _ = _dataset(tmp_path, compression)
    block = root / "0000.h5"
    offset, size = _chunk_places(block, "stack_3D")[0]
    _flip(block, offset + size - 1)
    problems = sd.verify(root)
    checksum = [p for p in problems if p.kind == "checksum"]
    assert len(checksum) == 1
    assert checksum[0].path == block
    assert checksum[0].block == (0, 0, 0)
    assert f"chunk 0 ({size} bytes at offset {offset}): CRC32C mismatch" in checksum[0].message
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    n_chunks = 2 * len(_chunk_places(block, "stack_3D"))
    assert f"checksums: {n_chunks} chunk(s) checked in 2 block(s); 0 block(s) without" in out


def test_the_cached_chunk_map_still_checks(tmp_path):
    """A block changed under an unchanged version (size, inode, mtime) is still caught."""
    root, data = _dataset(tmp_path, "blosc")
    ds = sd.SplitDataset(root)
    np.testing.assert_array_equal(ds[45], data[45])  # the chunk map is now cached
    block = root / "0001.h5"
    offset, size = _chunk_places(block, "stack_3D")[-1]
    _flip(block, offset + size // 3, keep_mtime=True)
    with pytest.raises(sd.BlockError, match=r"0001\.h5.*CRC32C mismatch"):
        ds[45]


def _silent_flip(root: Path, data: np.ndarray) -> None:
    """Flip payload bytes of block 1's last chunk until one reads back as other values."""
    block = root / "0001.h5"
    offset, size = _chunk_places(block, "stack_3D")[-1]
    original = block.read_bytes()
    for at in range(offset + size - 1, offset + 16, -37):
        block.write_bytes(original)
        _flip(block, at)
        with dask.config.set({"splitds.checksums": "ignore"}):
            try:
                values = sd.SplitDataset(root)[24:]
            except sd.BlockError:
                continue
        if not np.array_equal(values, data[24:]):
            return
    raise AssertionError("no flip read back silently")


def test_ignoring_checksums_reads_as_before(tmp_path):
    root, data = _dataset(tmp_path, "blosc")
    _silent_flip(root, data)  # what Blosc and HDF5 alone let through
    with pytest.raises(sd.BlockError, match="CRC32C mismatch"):
        sd.SplitDataset(root)[24:]


def test_ignoring_by_environment_in_a_subprocess(tmp_path):
    root, data = _dataset(tmp_path, "blosc")
    _silent_flip(root, data)
    code = f"import splitds_dask as sd; sd.SplitDataset({str(root)!r})[24:]"
    env = {**os.environ, "DASK_SPLITDS__CHECKSUMS": "ignore"}
    quiet = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert quiet.returncode == 0, quiet.stderr
    env["DASK_SPLITDS__CHECKSUMS"] = "verify"
    loud = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=120, check=False
    )
    assert loud.returncode == 1
    assert b"CRC32C mismatch" in loud.stderr


def test_a_bad_setting_is_an_error(tmp_path):
    root, _ = _dataset(tmp_path, "blosc")
    with (
        dask.config.set({"splitds.checksums": "sometimes"}),
        pytest.raises(ValueError, match="'verify' or 'ignore'"),
    ):
        sd.SplitDataset(root)[0]


def test_blocks_without_checksums_read_as_before(tmp_path):
    root, data = _dataset(tmp_path, "gzip")
    for block in _blocks(root):
        with h5py.File(block, "r+") as f:
            del f["stack_3D"].attrs[ATTRIBUTE]
    np.testing.assert_array_equal(sd.SplitDataset(root)[...], data)
    assert sd.verify(root) == []


@pytest.mark.parametrize(
    "value",
    [
        np.zeros(7, np.uint32),  # the block has 2 chunks
        np.zeros((2, 1), np.uint32),
        np.zeros(2, np.float64),
        np.bytes_(b"not a checksum"),
    ],
    ids=["length", "shape", "float", "string"],
)
def test_a_damaged_attribute_is_a_block_error(tmp_path, value):
    root, _ = _dataset(tmp_path, "blosc")
    with h5py.File(root / "0000.h5", "r+") as f:
        f["stack_3D"].attrs[ATTRIBUTE] = value
    with pytest.raises(sd.BlockError, match=r"0000\.h5.*attribute is damaged"):
        sd.SplitDataset(root)[0]
    problems = sd.verify(root)  # one problem per block: the first check it fails
    assert [(p.kind, p.path.name) for p in problems] == [("checksum", "0000.h5")]
    assert "attribute is damaged" in problems[0].message


def test_unwritten_chunks_are_not_checked(tmp_path):
    """An h5py-written array with chunks never written, checksums from this package's rules."""
    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("stack_3D", shape=(4, 8, 8), dtype="u2", chunks=(1, 8, 8))
        dset[0] = 7
        dset[2] = 9
    # Seal-like: sums computed by an independent route for the written chunks, 0 elsewhere.
    with h5py.File(path, "r+") as f:
        dset = f["stack_3D"]
        sums = [
            crc32c.crc32c(dset.id.read_direct_chunk((k, 0, 0))[1]) if k in (0, 2) else 0
            for k in range(4)
        ]
        dset.attrs[ATTRIBUTE] = np.asarray(sums, np.uint32)
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps({"shape_full": [4, 8, 8], "shape_block": [4, 8, 8]})
    )
    values = sd.SplitDataset(tmp_path)[...]
    assert values[0].max() == 7
    assert values[2].min() == 9
    assert values[1].max() == 0
    assert sd.verify(tmp_path) == []


# A fresh subprocess reads every damaged copy: a crash or hang is a failure the test sees.
_FLIP_LOOP = textwrap.dedent(
    """
    import json, shutil, sys
    from pathlib import Path
    import h5py, numpy as np
    import splitds_dask as sd

    source, work, seed, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in source.glob("*[0-9]*.h5"))
    places = {}
    for name in names:
        with h5py.File(source / name, "r") as f:
            d = f["stack_3D"]
            grid = [-(-s // c) for s, c in zip(d.shape, d.chunks)]
            places[name] = []
            for index in np.ndindex(*grid):
                origin = tuple(i * c for i, c in zip(index, d.chunks))
                info = d.id.get_chunk_info_by_coord(origin)
                places[name].append((info.byte_offset, info.size))
    detected = silent = 0
    other = []
    for trial in range(n):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(source, work)
        name = names[rng.integers(len(names))]
        number = int(rng.integers(len(places[name])))
        offset, size = places[name][number]
        at = offset + int(rng.integers(size))
        raw = bytearray((work / name).read_bytes())
        raw[at] ^= 1 << int(rng.integers(8))
        (work / name).write_bytes(bytes(raw))
        try:
            sd.SplitDataset(work)[...]
        except sd.BlockError as exc:
            text = str(exc)
            if "CRC32C mismatch" in text and name in text and f"chunk {number} " in text:
                detected += 1
            else:
                other.append(text)
        else:
            silent += 1
    print(json.dumps({"detected": detected, "silent": silent, "other": other[:3]}))
    """
)


@pytest.mark.subprocess
@pytest.mark.parametrize("compression", ["blosc", "gzip"])
def test_seeded_payload_flips_are_all_detected(tmp_path, compression):
    data = _data((16, 64, 64))  # 8 KB frames: blocks of 8 frames, one chunk each
    sd.to_split_dataset(data, tmp_path / "d", block_shape=8, compression=compression)
    script = tmp_path / "flips.py"
    script.write_text(_FLIP_LOOP)
    n = 120
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "d"), str(tmp_path / "w"), "11", str(n)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result == {"detected": n, "silent": 0, "other": []}
