"""xarray: ``SplitDataset.to_xarray`` and the ``splitds`` backend engine, compared with numpy.

Laziness is checked on datasets whose compressed HDF5 chunks are overwritten with garbage: the
headers (shape, dtype) stay readable, any read of data fails. Building the arrays must succeed,
computing them must raise.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from xarray.backends import plugins

import splitds_dask as sd
from splitds_dask._daskmodes import array_expr_enabled  # dask < 2025.7 has no public one
from splitds_dask._integrations.xarray import SplitDatasetBackendEntrypoint
from tests.helpers.entry_points import ensure_entry_points

UM = "micrometer"
SHAPE = (9, 3, 8, 10)


# dask's array-expr mode: xarray converts a dask array with np.asarray and reduces it with numpy
# functions, and that mode's Array has neither __array__ (np.asarray wraps it in an object array)
# nor __array_function__ (np.nanmean raises NotImplementedError). There, dask-backed arrays are
# computed with xarray's compute (which runs our graph) before they are converted or reduced.
EXPR = array_expr_enabled()


def _values(array: xr.DataArray) -> np.ndarray:
    return array.compute().values if EXPR and array.chunks is not None else array.values


def _reduced(array: xr.DataArray, how: str, dim: str) -> xr.DataArray:
    computed = array.compute() if EXPR and array.chunks is not None else array
    return getattr(computed, how)(dim)


@pytest.fixture
def splitds_engine(tmp_path_factory, monkeypatch) -> Iterator[None]:
    """``engine="splitds"`` resolved through the entry point that pyproject.toml declares."""
    ensure_entry_points(tmp_path_factory.mktemp("site"), monkeypatch)
    plugins.list_engines.cache_clear()
    yield
    plugins.list_engines.cache_clear()


@pytest.fixture
def movie(tmp_path, random_array) -> tuple[np.ndarray, sd.SplitDataset]:
    data = random_array(SHAPE, "uint16")
    ds = sd.to_split_dataset(
        data,
        tmp_path / "movie",
        block_shape=(4, 2),
        scale=(0.5, 7, 0.6, 0.6),
        units=("second", UM, UM, UM),
    )
    return data, ds


def corrupt_data(ds: sd.SplitDataset) -> None:
    """Overwrite every stored chunk of every block file with bytes no decoder accepts."""
    for path in ds.files.flat:
        with h5py.File(path, "r") as f:
            dset = f[ds.data_key]
            chunks = [dset.id.get_chunk_info(i) for i in range(dset.id.get_num_chunks())]
        with open(path, "r+b") as fh:
            for chunk in chunks:
                fh.seek(chunk.byte_offset)
                fh.write(b"\xff" * chunk.size)


@pytest.fixture
def unreadable(tmp_path, random_array) -> Path:
    """A dataset whose headers are intact and whose data cannot be read at all."""
    ds = sd.to_split_dataset(
        random_array(SHAPE, "uint16"),
        tmp_path / "unreadable",
        block_shape=(4, 2),
        compression="gzip",
        time_step=0.5,
    )
    corrupt_data(ds)
    # The chunks' recorded CRC32C no longer match: refused before h5py would decode them.
    with pytest.raises(sd.BlockError, match="CRC32C mismatch"):
        sd.SplitDataset(ds.root)[0, 0, 0, 0]
    return ds.root


def _check_coords(array: xr.DataArray) -> None:
    assert array.dims == ("t", "z", "y", "x")
    np.testing.assert_allclose(array["t"].values, np.arange(9) * 0.5)
    np.testing.assert_allclose(array["z"].values, np.arange(3) * 7.0)
    np.testing.assert_allclose(array["x"].values, np.arange(10) * 0.6)
    assert array["t"].attrs == {"units": "second"}
    assert array["y"].attrs == {"units": UM}


def test_to_xarray(movie) -> None:
    data, ds = movie
    array = ds.to_xarray()
    assert array.name == "movie"
    assert array.data is ds.to_dask()
    assert array.chunks == ds.chunks
    _check_coords(array)
    np.testing.assert_array_equal(_values(array), data, strict=True)
    np.testing.assert_array_equal(_values(array.sel(t=1.5, z=7.0)), data[3, 1])
    assert array.attrs["split_dataset"] == str(ds.root)
    assert ds.to_xarray(name="dff").name == "dff"


def test_to_xarray_without_units(tmp_path, random_array) -> None:
    data = random_array((5, 6, 7), "float32")
    array = sd.to_split_dataset(data, tmp_path / "zyx", block_shape=2).to_xarray()
    assert array.dims == ("z", "y", "x")
    np.testing.assert_array_equal(array["y"].values, np.arange(6.0))
    assert array["y"].attrs == {}
    np.testing.assert_allclose(_reduced(array, "mean", "z").values, data.mean(axis=0), atol=1e-4)


def test_building_reads_no_block(unreadable, splitds_engine) -> None:
    ds = sd.SplitDataset(unreadable)
    arrays = [
        ds.to_xarray(),
        xr.open_dataarray(unreadable, engine="splitds"),
        xr.open_dataarray(unreadable, engine="splitds", chunks={}),
        xr.open_dataset(unreadable, engine="splitds", chunks={"t": 8})["unreadable"],
        xr.open_dataset(unreadable)["unreadable"],  # engine guessed
    ]
    for array in arrays:
        assert array.shape == SHAPE
        repr(array)
        lazy_reduction = array.chunks is not None and not EXPR
        # x = 3, 1 as a slice where dask's array-expr mode would index a dask array with an
        # index array: that crashes in dask ('Shuffle' object has no attribute '_token').
        x = slice(3, 0, -2) if EXPR and array.chunks is not None else [3, 1]
        selection = array.isel(t=slice(1, None, 2), x=x)
        if lazy_reduction:  # dask: reductions are lazy too
            selection = selection.mean("z")
        assert selection.shape == ((4, 8, 2) if lazy_reduction else (4, 3, 8, 2))
        with pytest.raises(sd.BlockError, match="CRC32C mismatch"):
            _values(selection)  # reading is what must fail


def test_open_with_engine(movie, splitds_engine) -> None:
    data, ds = movie
    for array in (
        xr.open_dataarray(ds.root, engine="splitds"),
        xr.open_dataset(ds.root, engine="splitds")["movie"],
        xr.open_dataset(str(ds.root))["movie"],  # engine guessed from the folder
    ):
        assert array.chunks is None  # lazily indexed, no dask
        _check_coords(array)
        np.testing.assert_array_equal(array.values, data, strict=True)
    # chunks={} gives the dataset's own blocks
    chunked = xr.open_dataarray(ds.root, engine="splitds", chunks={})
    assert chunked.chunks == ds.chunks
    np.testing.assert_array_equal(_reduced(chunked, "max", "t").values, data.max(axis=0))
    rechunked = xr.open_dataarray(ds.root, engine="splitds", chunks={"t": 8, "z": -1})
    assert rechunked.chunks[:2] == ((8, 1), (3,))
    np.testing.assert_array_equal(_values(rechunked), data)


def test_blocks_per_chunk(movie, splitds_engine) -> None:
    data, ds = movie  # 9 time points in blocks of 4: chunks (4, 4, 1) along t
    grouped = xr.open_dataarray(ds.root, engine="splitds", chunks={}, blocks_per_chunk=2)
    assert grouped.chunks == ((8, 1), (2, 1), (8,), (10,))
    # Through the dask arrays themselves: dask's array-expr arrays have no __array__, which
    # xarray's .values and reductions need (see test_array_expr.py), and that mode's reductions
    # fail on the meta xarray gives its dask arrays (a 0-d array reshaped to 0 x 0 x 0).
    np.testing.assert_array_equal(grouped.data.compute(), data, strict=True)
    direct = ds.to_xarray(blocks_per_chunk=(2, 2))
    assert direct.chunks == ((8, 1), (3,), (8,), (10,))
    np.testing.assert_array_equal(direct.data.compute(), data, strict=True)
    assert ds.to_xarray(chunk_size=10**9).chunks == tuple((n,) for n in data.shape)


def test_backend_options_and_legacy_folders(tmp_path, write_plain, random_array) -> None:
    data = random_array((6, 4, 5), "int16")
    # a prefixed, pre-json dataset: metadata in the h5 files
    write_plain(tmp_path / "legacy", data, (2,), name="stack_{:04d}.h5", metadata={})
    with h5py.File(tmp_path / "legacy" / "stack_0002.h5", "a") as f:
        group = f.create_group("stack_metadata")
        for name, values in (("full_size", data.shape), ("block_size", (2, 4, 5))):
            sub = group.create_group(name)
            for i, v in enumerate(values):
                sub.attrs[f"i{i}"] = np.int64(v)
    backend = SplitDatasetBackendEntrypoint()
    assert not backend.guess_can_open(tmp_path / "legacy")  # no json: engine must be named
    opened = xr.open_dataset(
        tmp_path / "legacy", engine=SplitDatasetBackendEntrypoint, prefix="stack", locking=False
    )
    np.testing.assert_array_equal(opened["legacy"].values, data)
    dropped = xr.open_dataset(
        tmp_path / "legacy", engine=SplitDatasetBackendEntrypoint, drop_variables=["legacy"]
    )
    assert list(dropped.data_vars) == []


def test_guess_can_open(movie, tmp_path) -> None:
    _, ds = movie
    backend = SplitDatasetBackendEntrypoint()
    assert backend.guess_can_open(ds.root)
    assert backend.guess_can_open(str(ds.root))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "0000.h5").write_bytes(b"")
    for path in (ds.files.flat[0], tmp_path / "other", tmp_path / "missing", b"bytes", 3):
        assert not backend.guess_can_open(path)
    with pytest.raises(TypeError, match="folder path"):
        backend.open_dataset(b"movie")


def test_lazy_array_pickles(movie, splitds_engine) -> None:
    data, ds = movie
    lazy = xr.open_dataarray(ds.root, engine="splitds")
    copy = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(copy.isel(t=[8, 0]).values, data[[8, 0]])
    chunked = pickle.loads(pickle.dumps(xr.open_dataarray(ds.root, engine="splitds", chunks={})))
    np.testing.assert_array_equal(_values(chunked), data)


_axis_index = st.one_of(
    st.integers(-10, 9),
    st.builds(
        slice,
        st.none() | st.integers(-12, 12),
        st.none() | st.integers(-12, 12),
        st.none() | st.integers(-3, 3).filter(bool),
    ),
    st.lists(st.integers(-8, 7), min_size=1, max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(key=st.fixed_dictionaries({}, optional=dict.fromkeys("tzyx", _axis_index)))
def test_outer_indexing_matches_numpy(movie_for_hypothesis, key: dict) -> None:
    data, lazy = movie_for_hypothesis
    # xarray's own indexing adapter fails on empty slices with a negative step (any backend)
    assume(
        not any(
            isinstance(k, slice)
            and (k.step or 1) < 0
            and not range(*k.indices(data.shape["tzyx".index(name)]))
            for name, k in key.items()
        )
    )
    try:
        expected = data
        # xarray's isel is outer (orthogonal) indexing: apply the axes one at a time
        for axis, name in reversed(list(enumerate("tzyx"))):
            if name in key:
                expected = expected[(slice(None),) * axis + (_clip(key[name], data.shape[axis]),)]
    except IndexError:
        return
    clipped = {name: _clip(k, data.shape["tzyx".index(name)]) for name, k in key.items()}
    np.testing.assert_array_equal(lazy.isel(clipped).values, expected, strict=True)


def _clip(index, n):
    """Keep integer indices in range, so that xarray and numpy agree on what is valid."""
    if isinstance(index, int):
        return index % n
    if isinstance(index, list):
        return [i % n for i in index]
    return index


@pytest.fixture(scope="module")
def movie_for_hypothesis(tmp_path_factory) -> tuple[np.ndarray, xr.DataArray]:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 2**16, size=SHAPE, dtype=np.uint16)
    root = tmp_path_factory.mktemp("hyp") / "movie"
    sd.to_split_dataset(data, root, block_shape=(4, 2, 3))
    return data, xr.open_dataarray(root, engine=SplitDatasetBackendEntrypoint)


def test_to_xarray_without_xarray_names_the_install_command(
    movie, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    _, ds = movie
    # xarray not importable, and our integration module not yet imported.
    monkeypatch.setitem(sys.modules, "xarray", None)
    monkeypatch.delitem(sys.modules, "splitds_dask._integrations.xarray")
    with pytest.raises(ModuleNotFoundError) as info:
        ds.to_xarray()
    assert str(info.value) == (
        'SplitDataset.to_xarray needs xarray: pip install "splitds-dask[xarray]"'
    )
    assert info.value.name == "xarray"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # one line: no chained traceback
