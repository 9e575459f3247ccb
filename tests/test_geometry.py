"""BlockGrid and normalize_block_shape against brute-force enumeration and numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitds_dask._format.geometry import BlockGrid, normalize_block_shape, split_slice


def _brute_axis(n: int, b: int, p: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(file extents, owned extents) of one axis by walking it element by element."""
    if n == 0:
        return [(0, 0)], [(0, 0)]
    starts = list(range(0, max(n - p, 1), b))
    files = [(s, min(n, s + b + p)) for s in starts]
    files[-1] = (files[-1][0], n)
    owned = [(s, min(n, s + b)) for s in starts]
    owned[-1] = (owned[-1][0], n)
    return files, owned


@st.composite
def grids(draw, max_ndim=4):
    ndim = draw(st.integers(1, max_ndim))
    shape = tuple(draw(st.lists(st.integers(0, 12), min_size=ndim, max_size=ndim)))
    block = tuple(draw(st.integers(1, 14)) for _ in range(ndim))
    padding = tuple(draw(st.integers(0, 3)) for _ in range(ndim))
    return shape, block, padding


@settings(max_examples=300, deadline=None)
@given(grids())
def test_grid_chunks_extents_match_brute_force(spec):
    shape, block, padding = spec
    grid = BlockGrid.from_spec(shape, block, padding)
    b = tuple(min(bi, n) for bi, n in zip(block, shape, strict=True))
    assert grid.block_shape == b
    assert grid.padding == padding
    per_axis = [
        _brute_axis(n, bi, p) if n else ([(0, 0)], [(0, 0)])
        for n, bi, p in zip(shape, b, padding, strict=True)
    ]
    assert grid.grid == tuple(len(files) for files, _ in per_axis)
    assert grid.n_blocks == int(np.prod(grid.grid))
    assert grid.chunks == tuple(tuple(hi - lo for lo, hi in owned) for _, owned in per_axis)
    for axis, (files, owned) in enumerate(per_axis):
        assert sum(grid.chunks[axis]) == shape[axis]
        for k, (f, o) in enumerate(zip(files, owned, strict=True)):
            assert grid.file_extent(axis, k) == f
            assert grid.owned_extent(axis, k) == o
            for i in range(*o):
                assert grid.block_containing(axis, i) == k
    blocks = list(grid.blocks())
    assert len(blocks) == grid.n_blocks
    assert blocks == sorted(blocks)  # C order
    # Owned slices tile the array exactly once.
    cover = np.zeros(shape, dtype=int)
    for block in blocks:
        cover[grid.owned_slices(block)] += 1
        assert grid.file_slices(block) == tuple(
            slice(*grid.file_extent(a, k)) for a, k in enumerate(block)
        )
    assert (cover == 1).all()


@settings(max_examples=200, deadline=None)
@given(grids(), st.data())
def test_linear_cartesian_round_trip_matches_numpy(spec, data):
    grid = BlockGrid.from_spec(*spec)
    index = data.draw(st.integers(0, grid.n_blocks - 1))
    block = grid.linear_to_cartesian(index)
    assert block == tuple(int(i) for i in np.unravel_index(index, grid.grid))
    assert grid.cartesian_to_linear(block) == index
    assert index == int(np.ravel_multi_index(block, grid.grid))
    assert list(grid.blocks()).index(block) == index


def test_linear_cartesian_out_of_range():
    grid = BlockGrid.from_spec((10, 6), (3, 4))
    assert grid.grid == (4, 2)
    with pytest.raises(IndexError):
        grid.linear_to_cartesian(8)
    with pytest.raises(IndexError):
        grid.linear_to_cartesian(-1)
    with pytest.raises(IndexError):
        grid.cartesian_to_linear((4, 0))
    with pytest.raises(IndexError):
        grid.cartesian_to_linear((0, -1))


def test_padding_grid_known_values():
    # 10 elements, blocks of 3, overlap 1: files [0,4) [3,7) [6,10); owned [0,3) [3,6) [6,10).
    grid = BlockGrid.from_spec((10,), (3,), 1)
    assert grid.grid == (3,)
    assert [grid.file_extent(0, k) for k in range(3)] == [(0, 4), (3, 7), (6, 10)]
    assert grid.chunks == ((3, 3, 4),)


def test_from_spec_rejects_bad_padding():
    with pytest.raises(ValueError, match="padding"):
        BlockGrid.from_spec((4, 4), (2, 2), (1, -1))
    with pytest.raises(ValueError, match="padding"):
        BlockGrid.from_spec((4, 4), (2, 2), (1, 1, 1))
    with pytest.raises(ValueError, match="same number of axes"):
        BlockGrid((4, 4), (2,), (0, 0))


@pytest.mark.parametrize(
    ("block_shape", "shape", "expected"),
    [
        (None, (5, 6, 7), (5, 6, 7)),
        (3, (5, 6, 7), (3, 6, 7)),
        (np.int64(3), (5, 6, 7), (3, 6, 7)),
        (9, (5, 6, 7), (5, 6, 7)),  # clamped
        ((2,), (5, 6, 7), (2, 6, 7)),
        ((2, None), (5, 6, 7), (2, 6, 7)),
        ((None, 4), (5, 6, 7), (5, 4, 7)),
        ((2, 4, 100), (5, 6, 7), (2, 4, 7)),
        ([2, 4, 7], (5, 6, 7), (2, 4, 7)),
        ((np.int64(2), np.int32(3)), (5, 6, 7), (2, 3, 7)),
        ((20.0,), (5, 6), (5, 6)),  # float block lengths from old sashimi json
        ((), (5, 6), (5, 6)),
        ((3,), (0, 6), (0, 6)),
    ],
)
def test_normalize_block_shape(block_shape, shape, expected):
    out = normalize_block_shape(block_shape, shape)
    assert out == expected
    assert all(type(b) is int for b in out)


@pytest.mark.parametrize(
    "block_shape",
    [(2, 2, 2, 2), (0,), (-1, 2), (True, 2), (2.5,), (2, False)],
)
def test_normalize_block_shape_invalid(block_shape):
    with pytest.raises(ValueError, match="block shape"):
        normalize_block_shape(block_shape, (5, 6, 7))


@settings(max_examples=500, deadline=None)
@given(
    start=st.integers(0, 60),
    length=st.integers(0, 60),
    step=st.integers(1, 9),
    size=st.integers(1, 13),
    cells=st.none() | st.integers(1, 12),
)
def test_split_slice_against_brute_force(start, length, step, size, cells):
    """Each selected position lands in its cell (the last of ``cells`` is open-ended), in order."""
    positions = list(range(start, start + length, step))
    owner = [p // size if cells is None else min(p // size, cells - 1) for p in positions]
    expected = []
    for j, (p, k) in enumerate(zip(positions, owner, strict=True)):
        if not expected or expected[-1][0] != k:
            expected.append((k, [], []))
        expected[-1][1].append(p - k * size)
        expected[-1][2].append(j)
    pieces = split_slice(start, start + length, step, size, cells=cells)
    assert [k for k, _, _ in pieces] == [k for k, _, _ in expected]
    for (_, local, dest), (_, offsets, selected) in zip(pieces, expected, strict=True):
        assert list(range(local.start, local.stop, local.step)) == offsets
        assert list(range(dest.start, dest.stop)) == selected
