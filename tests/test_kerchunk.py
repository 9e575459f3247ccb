"""Kerchunk references (``kerchunk_references``, ``splitds refs``): the dataset read in place as a
Zarr v2 array by zarr-python and by xarray, through fsspec's reference file system, compared with
the fixtures' ``.expected.npy`` or the numpy array written; layouts one Zarr chunk grid cannot
express are one-line errors naming the file and the reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np
import pytest
import xarray as xr

import splitds_dask as sd
from tests.helpers.cli import assert_one_line_error, package_env, run_main
from tests.helpers.zarr_refs import read_zarr

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())
READABLE = {case["name"]: case for case in MANIFEST if case["expected"] is not None}

# Which fixtures one Zarr chunk grid expresses, and why the others are not (a fragment of the
# error). The facts behind the list are checked with h5py by test_the_fixture_facts_hold.
EXPRESSIBLE = {
    # One block along every axis that has a PyTables chunk longer than the block.
    "sashimi_short_acquisition",
    # Blocks of one plane along axis 1 in chunks of one plane; one block along axis 0.
    "brunoise_1ch",
    "brunoise_2ch_green",
    "brunoise_2ch_red",
}
NOT_TILING = "do not tile blocks"
REASONS = {
    # PyTables chose chunks far longer than the blocks along axis 0 (or 1), of which there are
    # several: a Zarr chunk would cover several block files.
    **dict.fromkeys(
        (
            "s2sd_4d",
            "empty_split_dataset",
            "split_dataset_020",
            "sashimi_2024",
            "sashimi_2020",
            "sashimi_early_stop_files",
            "sashimi_early_stop_last_chunk",
            "brunoise_2ch_in_1ch_meta",
            "fimpy_stacksaver",
            "fimpy_volumetric",
            "prefixed_names",
            "metadata_prefix_name",
            "legacy_h5_metadata",
            "codec_blosc",
            "codec_blosc_lz4",
            "codec_blosc_zstd",
            "codec_blosc_level5",
            "dtype_bool",
            "dtype_uint8",
            "dtype_int16",
            "dtype_uint16",
            "dtype_int32",
            "dtype_float32",
            "dtype_float64",
            "dtype_complex64",
            "dtype_big_endian_u2",
            "napari_sample_3d",
            "s2sd_3d",
        ),
        NOT_TILING,
    ),
    "fimpy_aligned": "shuffle (2) + deflate (1)",
    "fimpy_aligned_stray_h5": "shuffle (2) + deflate (1)",
    "codec_zlib": "shuffle (2) + deflate (1)",
    "codec_bzip2": "shuffle (2) + bzip2 (307)",
    "codec_blosc2": "blosc2 (32026)",
    "codec_none": "stored contiguous",
    "splitdataset_jl": "stored contiguous",
    "padded_grid_changes": "blocks overlap (padding (2, 0, 0))",
    "padded_grid_same": "blocks overlap (padding (1, 1, 1))",
}
# s2sd_3d: its first block is a chunked Blosc CARRAY (273 rows for blocks of 4).


def _open_fixture(case: dict[str, Any]) -> sd.SplitDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
        return sd.SplitDataset(LEGACY / case["path"], prefix=case["prefix"])


def read_xarray(refs_file: Path, name: str) -> Any:
    """The variable ``name`` opened as the README says, loaded."""
    with xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": str(refs_file)}},
    ) as dataset:
        return dataset[name].load()


def _write_refs(tmp_path: Path, refs: dict[str, Any]) -> Path:
    out = tmp_path / "refs.json"
    out.write_text(json.dumps(refs))
    return out


def _check_reads(
    tmp_path: Path, refs: dict[str, Any], name: str, expected: np.ndarray, axes: tuple[str, ...]
) -> None:
    got = read_zarr(refs, name)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    variable = read_xarray(_write_refs(tmp_path, refs), name)
    assert variable.dims == axes
    assert variable.dtype == expected.dtype
    np.testing.assert_array_equal(variable.values, expected)


# Through HDF5's filter, as PyTables and h5py write: a chunk Blosc cannot shrink (random values,
# or under 128 bytes) is stored raw, which the references refuse (see
# test_hdf5_stores_random_chunks_raw_which_is_refused); the other tests give it data it shrinks.
BLOSC = hdf5plugin.Blosc()


def _compressible(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 23 - 5).astype(dtype).reshape(shape)


# --- the conformance fixtures -----------------------------------------------------------------


def test_every_readable_fixture_is_classified() -> None:
    assert set(READABLE) == EXPRESSIBLE | set(REASONS)
    assert not EXPRESSIBLE & set(REASONS)


@pytest.mark.parametrize("name", sorted(EXPRESSIBLE))
def test_expressible_fixture_reads_back_exactly(tmp_path: Path, name: str) -> None:
    case = READABLE[name]
    expected = np.load(LEGACY / case["expected"])
    ds = _open_fixture(case)
    refs = sd.kerchunk_references(ds, name="data")
    _check_reads(tmp_path, refs, "data", expected, ds.axes)
    # In place: every reference names a block file of the folder, no bytes were copied.
    targets = {ref[0] for key, ref in refs["refs"].items() if isinstance(ref, list)}
    assert targets <= {str(p.absolute()) for p in ds.files.flat}


@pytest.mark.parametrize("name", sorted(REASONS))
def test_inexpressible_fixture_names_file_and_reason(name: str) -> None:
    case = READABLE[name]
    ds = _open_fixture(case)
    with pytest.raises(sd.NotReferenceableError) as info:
        sd.kerchunk_references(ds)
    message = str(info.value)
    assert "\n" not in message
    assert REASONS[name] in message
    assert str((LEGACY / case["path"]).absolute()) in message


def _block_facts(path: Path) -> tuple[tuple[int, ...] | None, list[int], tuple[int, ...]]:
    with h5py.File(path, "r") as f:
        key = next(k for k in sorted(f) if "stack" in k and isinstance(f[k], h5py.Dataset))
        dset = f[key]
        plist = dset.id.get_create_plist()
        filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        return dset.chunks, filters, dset.shape


@pytest.mark.parametrize("name", sorted(READABLE))
def test_the_fixture_facts_hold(name: str) -> None:
    """What the classification rests on, read with h5py and the json, not with the package."""
    case = READABLE[name]
    folder = LEGACY / case["path"]
    files = sorted(folder.glob("*.h5"))
    files = [p for p in files if any(c.isdigit() for c in p.stem)]
    facts = [_block_facts(p) for p in files if "shifts" not in p.name]
    meta_path = folder / "stack_metadata.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    padding = meta.get("padding") or [0]
    reason = REASONS.get(name, "")
    if "overlap" in reason:
        assert any(padding)
        return
    assert not any(padding)
    chunked = [chunks for chunks, _, _ in facts if chunks is not None]
    shape = tuple(case["shape"])
    # The block shape the json declares (legacy_h5_metadata has none: its first file's).
    declared = meta.get("shape_block") or facts[0][2]
    block = [min(b, n) for b, n in zip(declared, shape, strict=True)]
    if "contiguous" in reason:
        assert facts[0][0] is None
    elif name in EXPRESSIBLE:
        assert all(filters == [32001] for _, filters, _ in facts)
        assert len(set(chunked)) == 1
        assert len(chunked) == len(facts)
        for n, b, c in zip(shape, block, chunked[0], strict=True):
            assert b == n or b % c == 0  # one block along the axis, or whole chunks per block
    elif reason == NOT_TILING:
        assert facts[0][1] == [32001]
        assert any(b < n and b % c for n, b, c in zip(shape, block, chunked[0], strict=True)), (
            chunked,
            block,
        )
    else:  # another filter than Blosc alone
        assert facts[0][1] not in ([32001], [])


def test_a_dataset_without_an_array_names_the_file() -> None:
    case = next(c for c in MANIFEST if c["name"] == "fimpy_traces")
    ds = sd.SplitDataset(LEGACY / case["path"])
    with pytest.raises(sd.BlockError, match=r"0000\.h5"):
        sd.kerchunk_references(ds)


# --- datasets written by the package -------------------------------------------------------------

DTYPES = ["uint8", "int16", "uint16", "int32", "float32", "float64", "complex64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_package_dataset_of_each_dtype(tmp_path: Path, dtype: str, random_array: Any) -> None:
    data = random_array((6, 5, 7), dtype)
    ds = sd.to_split_dataset(data, tmp_path / "movie", block_shape=(2, 5, 7))
    refs = sd.kerchunk_references(ds)
    assert sum(1 for key in refs["refs"] if key.startswith("movie/") and "/." not in key) == 3
    _check_reads(tmp_path, refs, "movie", data, ds.axes)


@pytest.mark.parametrize(
    ("shape", "block_shape"),
    [
        ((8, 6, 4), (2, 6, 4)),  # along the first axis
        ((6, 8, 10), (2, 4, 10)),  # several blocks along two axes
        ((4, 6, 8, 10), (1, 3, 8, 5)),  # three axes split, 4-d
        ((5,), (5,)),  # one block, 1-d
    ],
)
def test_package_dataset_of_each_grid(
    tmp_path: Path, shape: tuple[int, ...], block_shape: tuple[int, ...], random_array: Any
) -> None:
    data = random_array(shape, "uint16", seed=len(shape))
    ds = sd.to_split_dataset(data, tmp_path / "movie", block_shape=block_shape)
    assert ds.grid.n_blocks == np.prod(np.ceil(np.divide(shape, block_shape)))
    refs = sd.kerchunk_references(ds)
    _check_reads(tmp_path, refs, "movie", data, ds.axes)


def test_a_short_last_block_in_whole_chunks(tmp_path: Path) -> None:
    """Blocks of 2 MiB are written in chunks of 64 rows; the last block, 100 rows, too (a whole
    chunk and an edge chunk of 36 rows), so the chunks line up."""
    data = (np.arange(228 * 64 * 128) % 251).astype(np.uint16).reshape(228, 64, 128)
    ds = sd.to_split_dataset(data, tmp_path / "movie", block_shape=(128, 64, 128))
    with h5py.File(ds.files.flat[-1], "r") as f:
        assert f[ds.data_key].shape == (100, 64, 128)
        assert f[ds.data_key].chunks == (64, 64, 128)
    refs = sd.kerchunk_references(ds)
    assert json.loads(refs["refs"]["movie/.zarray"])["chunks"] == [64, 64, 128]
    assert sorted(k for k in refs["refs"] if k.startswith("movie/") and "/." not in k) == [
        f"movie/{i}.0.0" for i in range(4)
    ]
    _check_reads(tmp_path, refs, "movie", data, ds.axes)


def test_short_last_blocks_on_two_axes(tmp_path: Path, write_plain: Any, random_array: Any) -> None:
    """Blocks (4, 6) in chunks (2, 3): the last blocks hold 2 and 5, the 5 a chunk and an edge."""
    data = _compressible((10, 11, 32), "int32")
    write_plain(tmp_path / "ds", data, (4, 6, 32), chunks=(2, 3, 32), compression=BLOSC)
    ds = sd.SplitDataset(tmp_path / "ds")
    assert ds.grid.grid == (3, 2, 1)
    refs = sd.kerchunk_references(ds, name="v")
    # 5 chunk rows x 4 chunk columns (3 + 3 | 3 + 2), every one stored.
    assert sum(1 for k in refs["refs"] if k.startswith("v/") and "/." not in k) == 5 * 4
    _check_reads(tmp_path, refs, "v", data, ds.axes)


def _write_sparse(
    root: Path, data: np.ndarray, written: list[slice], *, fillvalue: int = 0
) -> None:
    """One block file of ``data`` in chunks of one row, only the rows of ``written`` stored."""
    root.mkdir()
    with h5py.File(root / "0000.h5", "w") as f:
        dset = f.create_dataset(
            "stack_3D",
            shape=data.shape,
            dtype=data.dtype,
            chunks=(1, *data.shape[1:]),
            fillvalue=fillvalue,
            **BLOSC,
        )
        for rows in written:
            dset[rows] = data[rows]
    (root / "stack_metadata.json").write_text(
        json.dumps({"shape_full": list(data.shape), "shape_block": list(data.shape)})
    )


def test_unwritten_chunks_are_absent_and_read_as_zero(tmp_path: Path) -> None:
    data = _compressible((6, 16, 32), "int16")
    _write_sparse(tmp_path / "ds", data, [slice(0, 2), slice(4, 5)])
    refs = sd.kerchunk_references(tmp_path / "ds", name="v")
    assert sorted(k for k in refs["refs"] if k.startswith("v/") and "/." not in k) == [
        "v/0.0.0",
        "v/1.0.0",
        "v/4.0.0",
    ]
    expected = data.copy()
    expected[2:4] = 0
    expected[5] = 0
    _check_reads(tmp_path, refs, "v", expected, ("z", "y", "x"))


def test_a_non_zero_fill_value_is_zarrs(tmp_path: Path) -> None:
    data = _compressible((3, 16, 32), "int16") + 10
    _write_sparse(tmp_path / "ds", data, [slice(0, 1)], fillvalue=-7)
    refs = sd.kerchunk_references(tmp_path / "ds", name="v")
    assert json.loads(refs["refs"]["v/.zarray"])["fill_value"] == -7
    expected = data.copy()
    expected[1:] = -7
    np.testing.assert_array_equal(read_zarr(refs, "v"), expected)
    # xarray takes a Zarr v2 fill value for a missing-value marker (as documented).
    variable = read_xarray(_write_refs(tmp_path, refs), "v")
    assert np.isnan(variable.values[1:]).all()
    np.testing.assert_array_equal(variable.values[0], data[0])


def test_block_files_with_other_fill_values_are_refused(tmp_path: Path) -> None:
    data = _compressible((2, 16, 32), "int16")
    _write_sparse(tmp_path / "ds", data, [slice(0, 1)], fillvalue=3)
    with h5py.File(tmp_path / "ds" / "0001.h5", "w") as f:
        f.create_dataset("stack_3D", data=data, chunks=(1, 16, 32), **BLOSC)
    (tmp_path / "ds" / "stack_metadata.json").write_text(
        json.dumps({"shape_full": [4, 16, 32], "shape_block": [2, 16, 32]})
    )
    _refused(tmp_path / "ds", "0001.h5", "fill value 0, but 0000.h5 has 3")


@pytest.mark.subprocess
def test_reading_needs_no_h5py(tmp_path: Path) -> None:
    """A process in which h5py cannot be imported reads the array through the references."""
    data = (np.arange(6 * 5 * 4) * 3).astype(np.float32).reshape(6, 5, 4)
    ds = sd.to_split_dataset(data, tmp_path / "movie", block_shape=(2, 5, 4))
    refs = _write_refs(tmp_path, sd.kerchunk_references(ds))
    np.save(tmp_path / "expected.npy", data)
    script = f"""
import sys
sys.modules["h5py"] = None  # any import of h5py fails
import fsspec, numpy as np, xarray as xr, zarr
fs = fsspec.filesystem("reference", fo={str(refs)!r}, asynchronous=True)
a = zarr.open_array(zarr.storage.FsspecStore(fs, read_only=True), path="movie", mode="r",
                    zarr_format=2)[...]
x = xr.open_dataset("reference://", engine="zarr", backend_kwargs={{"consolidated": False,
                    "storage_options": {{"fo": {str(refs)!r}}}}})["movie"].values
e = np.load({str(tmp_path / "expected.npy")!r})
assert (a == e).all() and (x == e).all()
assert "h5py" not in {{m for m in sys.modules if sys.modules[m] is not None}}
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_coordinates_are_index_times_spacing_with_units(tmp_path: Path) -> None:
    data = (np.arange(4 * 3 * 5) % 11).astype(np.uint8).reshape(4, 3, 5)
    ds = sd.to_split_dataset(
        data,
        tmp_path / "movie",
        (2, 3, 5),
        axes="tyx",
        scale=(None, 0.6, 0.25),
        units=(None, "micrometer", "micrometer"),
        time_step=0.5,
    )
    refs = sd.kerchunk_references(ds)
    with xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": refs}},
    ) as dataset:
        np.testing.assert_array_equal(dataset["t"].values, [0.0, 0.5, 1.0, 1.5])
        np.testing.assert_array_equal(dataset["y"].values, [0.0, 0.6, 1.2])
        np.testing.assert_array_equal(dataset["x"].values, np.arange(5) * 0.25)
        assert dataset["t"].attrs == {"units": "second"}
        assert dataset["y"].attrs == {"units": "micrometer"}
        assert list(dataset.data_vars) == ["movie"]
        np.testing.assert_array_equal(dataset["movie"].sel(t=1.0).values, data[2])


# --- served from elsewhere: --url --------------------------------------------------------------


def _range_length(header: str | None) -> int:
    """Bytes a range asks for at most: ``bytes=a-b``, or the last n (``bytes=-n``)."""
    assert header is not None, "a whole file was fetched"
    start, _, stop = header.removeprefix("bytes=").partition("-")
    return int(stop) if not start else int(stop) + 1 - int(start)


@pytest.fixture
def served(tmp_path: Path, serve_http: Any, http_server: Any) -> tuple[str, Path, Any]:
    """A folder served over HTTP on 127.0.0.1 (tests/helpers/servers.py): (base URL, folder,
    the server's request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    return serve_http(folder), folder, http_server.log


def _gets(log: Any) -> list[str | None]:
    return [r.range for r in log.of("GET")]


@pytest.mark.network
def test_url_points_the_references_at_a_server(tmp_path: Path, served: Any) -> None:
    base, folder, requests = served
    data = (np.arange(6 * 8 * 8) % 97).astype(np.uint16).reshape(6, 8, 8)
    ds = sd.to_split_dataset(data, folder / "movie", block_shape=(2, 8, 8))
    refs = sd.kerchunk_references(ds, url=f"{base}/movie/")
    chunk_refs = [ref for key, ref in refs["refs"].items() if isinstance(ref, list)]
    assert [ref[0] for ref in chunk_refs] == [f"{base}/movie/000{i}.h5" for i in range(3)]
    # Remote block files: the reference file system's targets must be asynchronous too.
    remote = {"remote_protocol": "http", "remote_options": {"asynchronous": True}}
    np.testing.assert_array_equal(read_zarr(refs, "movie", **remote), data)
    refs_file = _write_refs(tmp_path, refs)
    with xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={"consolidated": False, "storage_options": {"fo": str(refs_file), **remote}},
    ) as dataset:
        np.testing.assert_array_equal(dataset["movie"].values, data)
    requests.clear()
    np.testing.assert_array_equal(read_zarr(refs, "movie", **remote), data)
    # One ranged request per chunk, for exactly its bytes: nothing else was fetched.
    ranges = sorted(_gets(requests))
    assert ranges == sorted(f"bytes={off}-{off + n - 1}" for _, off, n in chunk_refs)


@pytest.mark.network
def test_references_of_a_dataset_opened_at_a_url(tmp_path: Path, served: Any) -> None:
    """Built from the chunk indexes alone, read over HTTP: the references name the same URLs."""
    base, folder, requests = served
    # Blocks of 4 MiB in 1 MiB chunks of random values (stored as they are).
    data = np.random.default_rng(1).integers(0, 1 << 16, (6, 1024, 2048), dtype=np.uint16)
    sd.to_split_dataset(data, folder / "movie", block_shape=(2, 1024, 2048))
    remote = sd.SplitDataset(f"{base}/movie")
    requests.clear()
    refs = sd.kerchunk_references(remote)
    chunk_refs = [ref for ref in refs["refs"].values() if isinstance(ref, list)]
    assert len(chunk_refs) == 3 * 8
    assert {ref[0] for ref in chunk_refs} == {f"{base}/movie/000{i}.h5" for i in range(3)}
    # Built from the files' indexes: a small part of the chunks' bytes was fetched.
    fetched = sum(_range_length(r) for r in _gets(requests))
    stored = sum(n for _, _, n in chunk_refs)
    assert fetched < stored / 4, (fetched, stored)
    options = {"remote_protocol": "http", "remote_options": {"asynchronous": True}}
    np.testing.assert_array_equal(read_zarr(refs, "movie", **options), data)


def test_references_of_a_dataset_opened_at_a_file_url(tmp_path: Path) -> None:
    data = (np.arange(4 * 3 * 8) % 13).astype(np.float32).reshape(4, 3, 8)
    sd.to_split_dataset(data, tmp_path / "movie", block_shape=(1, 3, 8))
    url = (tmp_path / "movie").as_uri()
    refs = sd.kerchunk_references(sd.SplitDataset(url), name="v")
    assert refs["refs"]["v/3.0.0"][0] == f"{url}/0003.h5"
    _check_reads(tmp_path, refs, "v", data, ("z", "y", "x"))


# --- what one chunk grid cannot express ---------------------------------------------------------


def _refused(
    root: Path, *fragments: str, error: type[Exception] = sd.NotReferenceableError, **kwargs: Any
) -> str:
    with pytest.raises(error) as info:
        sd.kerchunk_references(sd.SplitDataset(root, **kwargs))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_padding_is_refused(tmp_path: Path, write_plain: Any, random_array: Any) -> None:
    write_plain(
        tmp_path / "ds",
        _compressible((10, 4, 5), "uint16"),
        (4, 4, 5),
        padding=(2, 0, 0),
        chunks=(2, 4, 5),
        compression=BLOSC,
    )
    _refused(tmp_path / "ds", str(tmp_path / "ds"), "blocks overlap (padding (2, 0, 0))")


def test_gzip_blocks_are_refused(tmp_path: Path, random_array: Any) -> None:
    sd.to_split_dataset(
        random_array((6, 4, 5), "int16"), tmp_path / "ds", (2, 4, 5), compression="gzip"
    )
    _refused(tmp_path / "ds", "0000.h5", "deflate (1)", "only Blosc alone")


def test_uncompressed_blocks_are_refused(tmp_path: Path, random_array: Any) -> None:
    sd.to_split_dataset(
        random_array((6, 4, 5), "int16"), tmp_path / "ds", (2, 4, 5), compression=None
    )
    _refused(tmp_path / "ds", "0000.h5", "stored contiguous")


def test_chunks_that_do_not_tile_are_refused(
    tmp_path: Path, write_plain: Any, random_array: Any
) -> None:
    write_plain(
        tmp_path / "ds",
        _compressible((12, 4, 5), "uint16"),
        (4, 4, 5),
        chunks=(3, 4, 5),
        compression=BLOSC,
    )
    _refused(
        tmp_path / "ds",
        "0000.h5",
        "HDF5 chunks (3, 4, 5) do not tile blocks (4, 4, 5)",
        "along axis 0 blocks of 4 are not a multiple of chunks of 3",
    )


def test_a_last_block_in_other_chunks_is_refused(tmp_path: Path) -> None:
    """Writers that chunk each block by its own shape (this package up to 0.1.0: a small block
    whole, as one chunk) give a short last block shorter chunks than the others, which one Zarr
    chunk shape cannot describe."""
    data = _compressible((5, 4, 6), "uint8")
    sd.to_split_dataset(data, tmp_path / "ds", (2, 4, 6))
    with h5py.File(tmp_path / "ds" / "0002.h5", "w") as f:
        f.create_dataset("stack_3D", data=data[4:], chunks=(1, 4, 6), **BLOSC)
    _refused(tmp_path / "ds", "0002.h5", "HDF5 chunks (1, 4, 6), but 0000.h5 has (2, 4, 6)")


def test_non_native_byte_order_is_refused(tmp_path: Path, write_plain: Any) -> None:
    data = np.arange(4 * 3 * 5, dtype=">u2").reshape(4, 3, 5)
    write_plain(tmp_path / "ds", data, (2, 3, 5), chunks=(1, 3, 5), compression=BLOSC)
    with h5py.File(tmp_path / "ds" / "0000.h5", "r") as f:
        assert f["stack_3D"].dtype.str == ">u2"
    _refused(tmp_path / "ds", "0000.h5", "non-native byte order (>u2)")


def test_a_short_file_is_refused(tmp_path: Path, write_plain: Any, random_array: Any) -> None:
    data = _compressible((8, 4, 5), "uint16")
    write_plain(tmp_path / "ds", data, (4, 4, 5), chunks=(2, 4, 5), compression=BLOSC)
    with h5py.File(tmp_path / "ds" / "0000.h5", "w") as f:  # the first block holds 2 rows of 4
        f.create_dataset("stack_3D", data=data[:2], chunks=(2, 4, 5), **hdf5plugin.Blosc())
    _refused(tmp_path / "ds", "0000.h5", "holds (2, 4, 5), less than its block's (4, 4, 5)")


def test_a_chunk_stored_without_blosc_is_refused(tmp_path: Path, write_plain: Any) -> None:
    """HDF5 stores a chunk raw, filter mask bit 0 set, when the optional filter cannot shrink it:
    Zarr would decompress those bytes as Blosc."""
    data = _compressible((4, 16, 32), "uint16")
    write_plain(tmp_path / "ds", data, (2, 16, 32), chunks=(1, 16, 32), compression=BLOSC)
    with h5py.File(tmp_path / "ds" / "0001.h5", "r+") as f:
        f["stack_3D"].id.write_direct_chunk((1, 0, 0), data[3].tobytes(), filter_mask=1)
    _refused(tmp_path / "ds", "0001.h5", "chunk 1 is stored without Blosc (filter mask 0x1)")


def test_hdf5_stores_random_chunks_raw_which_is_refused(
    tmp_path: Path, write_plain: Any, random_array: Any
) -> None:
    """HDF5's Blosc filter gives up on a chunk it cannot shrink; HDF5 then stores it raw."""
    data = random_array((4, 16, 32), "uint16")
    write_plain(tmp_path / "ds", data, (2, 16, 32), chunks=(1, 16, 32), compression=BLOSC)
    with h5py.File(tmp_path / "ds" / "0000.h5", "r") as f:
        assert f["stack_3D"].id.get_chunk_info(0).filter_mask == 1
    _refused(tmp_path / "ds", "0000.h5", "chunk 0 is stored without Blosc (filter mask 0x1)")


def test_a_link_out_of_the_folder_is_refused_unless_allowed(
    tmp_path: Path, random_array: Any
) -> None:
    data = random_array((4, 3, 5), "uint16")
    sd.to_split_dataset(data, tmp_path / "ds", (2, 3, 5))
    outside = tmp_path / "elsewhere.h5"
    (tmp_path / "ds" / "0001.h5").rename(outside)
    (tmp_path / "ds" / "0001.h5").symlink_to(outside)
    _refused(tmp_path / "ds", "0001.h5", "outside the dataset folder", error=sd.OutsideFolderError)
    refs = sd.kerchunk_references(sd.SplitDataset(tmp_path / "ds", allow_external=True))
    # The reference names the link in the folder, which whoever serves the folder resolves.
    assert refs["refs"]["ds/1.0.0"][0] == str(tmp_path / "ds" / "0001.h5")
    np.testing.assert_array_equal(read_zarr(refs, "ds"), data)


def test_an_hdf5_external_link_is_refused(tmp_path: Path, random_array: Any) -> None:
    data = random_array((4, 3, 5), "uint16")
    sd.to_split_dataset(data, tmp_path / "ds", (2, 3, 5))
    block = tmp_path / "ds" / "0000.h5"
    block.rename(tmp_path / "other.h5")
    with h5py.File(block, "w") as f:
        f["stack_3D"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/stack_3D")
    _refused(tmp_path / "ds", "0000.h5", "external link", error=sd.OutsideFolderError)
    _refused(tmp_path / "ds", "0000.h5", "lies in other files", allow_external=True)


def test_a_missing_block_file_is_an_error(tmp_path: Path, random_array: Any) -> None:
    sd.to_split_dataset(random_array((6, 3, 5), "uint16"), tmp_path / "ds", (2, 3, 5))
    (tmp_path / "ds" / "0001.h5").unlink()
    _refused(tmp_path / "ds", "0001.h5", "missing", error=sd.BlockError)


@pytest.mark.parametrize("name", ["", "a/b", ".zarray", "x"])
def test_a_bad_name_is_refused(tmp_path: Path, name: str, random_array: Any) -> None:
    ds = sd.to_split_dataset(random_array((2, 3, 5), "uint16"), tmp_path / "ds", (2, 3, 5))
    with pytest.raises(ValueError, match="cannot name the array"):
        sd.kerchunk_references(ds, name=name)


# --- the command line ----------------------------------------------------------------------------


def test_cli_writes_references_xarray_reads(tmp_path: Path, random_array: Any) -> None:
    data = random_array((6, 4, 5), "float32")
    sd.to_split_dataset(data, tmp_path / "movie", (2, 4, 5), axes="tyx")
    out = tmp_path / "movie.json"
    run = run_main("refs", str(tmp_path / "movie"), str(out))
    assert run.code == 0, run
    assert "3 chunk references into 3 block file(s)" in run.out
    assert json.loads(out.read_text())["version"] == 1
    variable = read_xarray(out, "movie")
    assert variable.dims == ("t", "y", "x")
    np.testing.assert_array_equal(variable.values, data)
    np.testing.assert_array_equal(read_zarr(out, "movie"), data)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_cli_takes_a_dataset_url(tmp_path: Path) -> None:
    data = (np.arange(4 * 3 * 8) % 13).astype(np.uint16).reshape(4, 3, 8)
    sd.to_split_dataset(data, tmp_path / "movie", block_shape=(2, 3, 8))
    url = (tmp_path / "movie").as_uri()
    out = tmp_path / "refs.json"
    run = run_main("refs", url, str(out), "--storage-options", "{}")
    assert run.code == 0, run
    refs = json.loads(out.read_text())
    assert refs["refs"]["movie/1.0.0"][0] == f"{url}/0001.h5"
    np.testing.assert_array_equal(read_zarr(out, "movie"), data)


def test_cli_replaces_only_reference_files(tmp_path: Path, random_array: Any) -> None:
    sd.to_split_dataset(random_array((4, 3, 5), "uint16"), tmp_path / "ds", (2, 3, 5))
    out = tmp_path / "refs.json"
    assert run_main("refs", str(tmp_path / "ds"), str(out)).code == 0
    before = out.read_bytes()
    assert_one_line_error(
        run_main("refs", str(tmp_path / "ds"), str(out)), 1, str(out), "pass --overwrite"
    )
    run = run_main("refs", str(tmp_path / "ds"), str(out), "--overwrite", "--url", "s3://b/ds")
    assert run.code == 0, run
    assert out.read_bytes() != before
    assert json.loads(out.read_text())["refs"]["ds/1.0.0"][0] == "s3://b/ds/0001.h5"
    mine = tmp_path / "mine.json"
    mine.write_text('{"a": 1}')
    assert_one_line_error(
        run_main("refs", str(tmp_path / "ds"), str(mine), "--overwrite"), 1, "not replacing it"
    )
    assert mine.read_text() == '{"a": 1}'


def test_cli_errors_are_one_line(tmp_path: Path, random_array: Any) -> None:
    sd.to_split_dataset(
        random_array((4, 3, 5), "uint16"), tmp_path / "gz", (2, 3, 5), compression="gzip"
    )
    out = tmp_path / "refs.json"
    assert_one_line_error(run_main("refs", str(tmp_path / "gz"), str(out)), 1, "0000.h5", "deflate")
    assert not out.exists()
    assert_one_line_error(
        run_main("refs", str(tmp_path / "gz"), str(tmp_path / "r.txt")), 2, ".json"
    )
    sd.to_split_dataset(random_array((4, 3, 5), "uint16"), tmp_path / "ok", (2, 3, 5))
    assert_one_line_error(
        run_main("refs", str(tmp_path / "ok"), str(out), "--name", "a/b"), 2, "cannot name"
    )
