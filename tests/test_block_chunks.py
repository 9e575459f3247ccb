"""The HDF5 chunks of block files: one chunk shape per dataset, tiling its blocks.

Every writer of the package (``to_split_dataset``, ``SplitDatasetWriter``,
``EmptySplitDataset``, ``save_to_split_dataset``, ``splitds convert``) chunks every block file of
a dataset alike, the short last blocks too, in chunks whose lengths divide the block lengths:
with Blosc (the default) each dataset is then expressible as kerchunk references, which
zarr-python reads equal to the numpy array written; h5py reads each block file equal to its
part of the array. The chunk rule itself is checked against a brute-force search of divisors.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers Blosc for h5py)
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._storage.block_file import block_chunk_shape, write_block
from tests.helpers.block_writers import SMALL_TARGET, WRITERS, sample_array, small_chunks
from tests.helpers.zarr_refs import read_zarr

MIB = 1 << 20

# --- the rule ------------------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    st.sampled_from([1, 2, 4, 8, 16]),
)
def test_block_chunk_shape_against_a_search_of_divisors(shape: list[int], itemsize: int) -> None:
    chunk = block_chunk_shape(shape, itemsize)
    full = [max(1, n) for n in shape]
    assert len(chunk) == len(shape)
    assert all(1 <= c <= n for c, n in zip(chunk, full, strict=True))
    assert math.prod(chunk) * itemsize <= max(MIB, itemsize)
    if math.prod(full) * itemsize <= MIB:
        assert list(chunk) == full
        return
    # One axis is cut: those before it are 1, those after it whole.
    cut = next(
        i
        for i in range(len(full))
        if math.prod(full[i:]) * itemsize > MIB >= math.prod(full[i + 1 :]) * itemsize
    )
    assert all(c == 1 for c in chunk[:cut])
    assert list(chunk[cut + 1 :]) == full[cut + 1 :]
    row = math.prod(full[cut + 1 :]) * itemsize
    best = max(d for d in _divisors(full[cut]) if d * row <= MIB)
    if best * row >= MIB // 256:
        assert chunk[cut] == best  # the largest divisor within 1 MiB
    else:
        assert chunk[cut] == MIB // row  # rows of a few bytes: 1 MiB of them, not dividing


@pytest.mark.parametrize(
    ("block", "dtype", "chunk"),
    [
        ((10, 4, 256, 256), "u2", (2, 4, 256, 256)),
        ((7, 30, 512, 512), "u2", (1, 2, 512, 512)),
        ((100, 1, 1024, 1024), "u2", (1, 1, 512, 1024)),
        ((20, 2048, 2048), "u2", (1, 256, 2048)),
        ((128, 64, 128), "u2", (64, 64, 128)),
        # 2 frames would be 1 MiB, but do not divide 13 or 9: one frame of 512 KiB.
        ((13, 4, 256, 256), "u2", (1, 4, 256, 256)),
        ((9, 4, 256, 256), "u2", (1, 4, 256, 256)),
        # A prime number of small frames: 1021 chunks of one 8 KiB frame (was 128 frames).
        ((1021, 64, 64), "u2", (1, 64, 64)),
        ((1536, 1000), "u1", (768, 1000)),
        # A whole block within 1 MiB is one chunk.
        ((5, 4, 64, 64), "f4", (5, 4, 64, 64)),
        # 1-d, prime length: chunks of one item would be 8 bytes; 1 MiB of items instead.
        ((1048583,), "f8", (131072,)),
        ((1048583,), "u1", (1048576,)),
    ],
)
def test_block_chunk_shape_of_typical_blocks(
    block: tuple[int, ...], dtype: str, chunk: tuple[int, ...]
) -> None:
    assert block_chunk_shape(block, np.dtype(dtype).itemsize) == chunk


# --- what the writers write --------------------------------------------------------------------

# Below SMALL_TARGET // 256 = 4 bytes a row would fall back to chunks that do not divide the
# block; the generated arrays' last axis holds at least 4 bytes and at most SMALL_TARGET, so the
# axis cut is never the last one, and its rows are never that small.
DTYPES = ["u1", "i2", "u2", "i4", "u8", "f2", "f4", "f8", "c8", "c16", "bool"]


class _Written:
    def __init__(self, chunks: tuple[int, ...], cut: bool, longer: bool) -> None:
        self.chunks = chunks  # the chunk shape of every block file
        self.cut = cut  # some chunk is shorter than the block along an axis
        self.longer = longer  # some block file is shorter than the chunks along an axis


def _check(folder: Path, data: np.ndarray) -> _Written:
    """The checks every dataset written with Blosc passes, from h5py, the json and zarr."""
    meta = json.loads((folder / "stack_metadata.json").read_text())
    declared = tuple(meta["shape_block"])
    block = [min(b, n) for b, n in zip(declared, data.shape, strict=True)]
    grid = [-(-n // b) for n, b in zip(data.shape, block, strict=True)]
    files = sorted(p for p in folder.iterdir() if p.suffix == ".h5")
    assert len(files) == math.prod(grid)
    found = set()
    longer = False
    for i, path in enumerate(files):
        place = np.unravel_index(i, grid)
        part = tuple(
            slice(k * b, min(n, (k + 1) * b))
            for k, b, n in zip(place, block, data.shape, strict=True)
        )
        with h5py.File(path, "r") as f:
            (key,) = [k for k in f if k.startswith("stack")]
            dset = f[key]
            found.add(dset.chunks)
            assert dset.id.get_create_plist().get_filter(0)[0] == 32001  # Blosc alone
            assert dset.id.get_create_plist().get_nfilters() == 1
            # A block shorter than the full one has the full one as its fixed maximum.
            assert dset.maxshape == (declared if dset.shape != declared else dset.shape)
            longer |= any(c > s for c, s in zip(dset.chunks, dset.shape, strict=True))
            values = dset[()]
            expected = data[part].view(np.uint8) if data.dtype == bool else data[part]
            assert values.dtype == expected.dtype
            np.testing.assert_array_equal(values, expected)
    assert len(found) == 1, found  # one chunk shape for every block file
    (chunks,) = found
    for b, c, g in zip(block, chunks, grid, strict=True):
        assert g == 1 or b % c == 0, (block, chunks)
    refs = sd.kerchunk_references(folder, name="v")
    got = read_zarr(refs, "v")
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, data)
    cut = any(c < b for c, b in zip(chunks, block, strict=True))
    return _Written(chunks, cut, longer)


# (shape, block shape, dtype, chunks of the writers given the block shape, chunks of
# SplitDatasetWriter's blocks of block[0] whole frames), with SMALL_TARGET.
CASES = [
    # Blocks of 960 bytes, one chunk each; the last one holds 3 of the chunk's 10 rows.
    ((23, 3, 16), (10, 3, 16), "u2", (10, 3, 16), (10, 3, 16)),
    # A prime block length: 4 rows would fit, 1 divides 13. The last block holds 3.
    ((29, 13, 16), (13, 13, 16), "u1", (1, 13, 16), (1, 13, 16)),
    # Short last blocks on two axes: 17 = 6 + 6 + 5 (a chunk of 3 and an edge of 2), and
    # 11 = 5 + 5 + 1, one row of a 5-row chunk.
    ((17, 11, 24), (6, 5, 24), "i2", (3, 5, 24), (1, 11, 24)),
    # 4-d, cut along axis 1 (7 of 14 rows, or 2 of 14 for frames of 7 x 10), short last blocks
    # along axes 0 and 2.
    ((9, 14, 7, 10), (4, 14, 3, 10), "f4", (1, 7, 3, 10), (1, 2, 7, 10)),
    ((62, 40), (31, 40), "c8", (1, 40), (1, 40)),
    ((25, 6, 40), (7, 6, 40), "bool", (1, 6, 40), (1, 6, 40)),
    ((11, 33), (4, 33), "f8", (2, 33), (2, 33)),
]


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize(("shape", "block", "dtype", "chunks", "stream_chunks"), CASES)
def test_written_datasets_are_expressible(
    tmp_path: Path,
    writer: str,
    shape: tuple[int, ...],
    block: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    stream_chunks: tuple[int, ...],
) -> None:
    data = sample_array(shape, dtype, seed=len(CASES))
    with small_chunks():
        WRITERS[writer](data, block, tmp_path / "ds")
    written = _check(tmp_path / "ds", data)
    assert written.chunks == (stream_chunks if writer == "SplitDatasetWriter" else chunks)


def test_the_cases_cover_cut_and_longer_chunks(tmp_path: Path) -> None:
    """The cases above hold chunks shorter than a block, and blocks shorter than a chunk."""
    cut = longer = 0
    for i, (shape, block, dtype, *_) in enumerate(CASES):
        with small_chunks():
            sd.to_split_dataset(sample_array(shape, dtype, i), tmp_path / str(i), block)
        written = _check(tmp_path / str(i), sample_array(shape, dtype, i))
        cut += written.cut
        longer += written.longer
    assert cut >= 4
    assert longer >= 3


@st.composite
def _datasets(draw: st.DrawFn) -> tuple[np.ndarray, tuple[int, ...]]:
    ndim = draw(st.integers(1, 4))
    lead = [draw(st.integers(1, 24 if ndim < 4 else 9)) for _ in range(ndim - 1)]
    dtype = draw(st.sampled_from(DTYPES))
    itemsize = np.dtype(dtype).itemsize
    # The last axis: at least 4 bytes, at most SMALL_TARGET (see SMALL_TARGET).
    last = draw(st.integers(-(-4 // itemsize), min(40, SMALL_TARGET // itemsize)))
    shape = (*lead, last)
    block = tuple(draw(st.integers(1, n)) for n in shape)
    return sample_array(shape, dtype, draw(st.integers(0, 99))), block


@pytest.mark.parametrize("writer", sorted(WRITERS))
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_datasets())
def test_any_dataset_written_is_expressible(
    writer: str, case: tuple[np.ndarray, tuple[int, ...]]
) -> None:
    data, block = case
    with tempfile.TemporaryDirectory() as scratch, small_chunks():
        WRITERS[writer](data, block, Path(scratch) / "ds")
        _check(Path(scratch) / "ds", data)


def test_rows_of_a_few_bytes_keep_large_chunks_that_do_not_tile(tmp_path: Path) -> None:
    """A 1-d block of a prime length: dividing it would make chunks of one byte; it gets
    SMALL_TARGET bytes instead, reads back, but is no regular chunk grid over several blocks."""
    data = sample_array((2500,), "u1", seed=5)
    with small_chunks():
        ds = sd.to_split_dataset(data, tmp_path / "ds", (1031,))
        one = sd.to_split_dataset(data[:1031], tmp_path / "one", (1031,))
    for path in sorted((tmp_path / "ds").glob("*.h5")):
        with h5py.File(path, "r") as f:
            assert f["stack_1D"].chunks == (1024,)
    np.testing.assert_array_equal(ds[...], data)
    with pytest.raises(sd.NotReferenceableError, match="blocks of 1031 are not a multiple"):
        sd.kerchunk_references(ds)
    # One block along the axis: no grid to tile.
    np.testing.assert_array_equal(
        read_zarr(sd.kerchunk_references(one, name="v"), "v"), data[:1031]
    )


def test_real_size_blocks_with_a_short_last_block(tmp_path: Path) -> None:
    """The real 1 MiB target: 23 frames of 4 x 128 x 128 u16 (128 KiB) in blocks of 10 get
    chunks of 5 frames (640 KiB; 8 would not divide 10), the last block 3 of them."""
    frame = np.arange(4 * 128 * 128).reshape(4, 128, 128) % 1021
    data = np.stack([(frame + 7 * t) % 4096 for t in range(23)]).astype(np.uint16)
    sd.to_split_dataset(data, tmp_path / "ds", (10,))
    written = _check(tmp_path / "ds", data)
    assert written.chunks == (5, 4, 128, 128)
    assert written.longer


def test_padded_blocks_are_chunked_as_the_first_file(tmp_path: Path) -> None:
    """Overlapping blocks (no Zarr grid) still share one chunk shape: that of block 0's file,
    the block and its padding (6 + 2 frames of 160 bytes: 4 frames divide 8)."""
    data = sample_array((23, 5, 16), "u2", seed=2)
    with small_chunks():
        ds = sd.save_to_split_dataset(data, tmp_path / "ds", block_size=(6,), padding=(2, 0, 0))
    shapes = []
    for path in sorted((tmp_path / "ds").glob("*.h5")):
        with h5py.File(path, "r") as f:
            dset = f["stack_3D"]
            assert dset.chunks == (4, 5, 16)
            assert dset.maxshape == (8, 5, 16)
            shapes.append(dset.shape)
    assert shapes == [(8, 5, 16)] * 3 + [(5, 5, 16)]
    np.testing.assert_array_equal(ds[...], data)


def test_a_block_longer_than_the_block_shape_widens_it(tmp_path: Path) -> None:
    """``save_block_data`` takes any array, as the original did: an axis longer than the
    dataset's block counts with its own length."""
    data = sample_array((5, 40, 16), "u1", seed=3)
    with small_chunks():
        write_block(tmp_path / "b.h5", data, key="stack_3D", block_shape=(3, 20, 16))
    with h5py.File(tmp_path / "b.h5", "r") as f:
        dset = f["stack_3D"]
        # The block (5, 40, 16): rows of 640 bytes, one of which fits 1 KiB.
        assert dset.chunks == (1, 40, 16)
        assert dset.maxshape == dset.shape == (5, 40, 16)
        np.testing.assert_array_equal(dset[()], data)


def test_a_block_shape_of_other_axes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"block shape \(3, 4\) does not fit a block of shape"):
        write_block(tmp_path / "b.h5", np.zeros((3, 4, 5)), key="stack_3D", block_shape=(3, 4))
    assert not (tmp_path / "b.h5").exists()
