"""Split datasets read from URLs (``splitds_dask._remote``): every variant, exactly, through any
fsspec filesystem, with the same indexing, dask graphs and errors as a local folder.

Stores here are real fsspec filesystems: ``file://`` (the local disk through fsspec) and
``memory://`` (fsspec's in-process store, which cannot be read by path, so nothing local can
stand in for it). The S3 and HTTP servers are in ``test_remote_servers.py``. The oracle is numpy
(arrays written here) and the fixtures' ``.expected.npy``.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import fsspec
import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._remote import write as remote_write
from splitds_dask._remote.reader import RemoteBlockReader
from tests.helpers.chunkmaps import check_sidecar

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())
# Remote datasets are read from their json metadata: the pre-json layout keeps it in the blocks.
WITH_JSON = [
    c for c in MANIFEST if c["expected"] is not None and any((LEGACY / c["path"]).glob("*.json"))
]
WITHOUT_JSON = [c for c in MANIFEST if not any((LEGACY / c["path"]).glob("*.json"))]


def _to_memory(folder: Path, name: str) -> str:
    """Copy ``folder``'s files into fsspec's memory store; its URL."""
    fs = fsspec.filesystem("memory")
    base = f"/tests-{name}"
    if fs.exists(base):
        fs.rm(base, recursive=True)
    for path in folder.iterdir():
        if path.is_file():
            fs.pipe(f"{base}/{path.name}", path.read_bytes())
    return f"memory://{base}"


@pytest.fixture(params=["file", "memory"])
def publish(request, tmp_path):
    """Put a local dataset folder on the store under test; returns its URL."""

    def put(folder: Path) -> str:
        if request.param == "file":
            copy = tmp_path / "store" / folder.name
            shutil.copytree(folder, copy)
            return copy.resolve().as_uri()
        return _to_memory(folder, f"{folder.name}-{id(tmp_path)}")

    return put


def _open(url: str, case: dict) -> sd.SplitDataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = sd.SplitDataset(url, prefix=case["prefix"])
    incomplete = [w for w in caught if issubclass(w.category, sd.IncompleteDatasetWarning)]
    assert bool(incomplete) == case["warns"], [str(w.message) for w in caught]
    return ds


@pytest.mark.parametrize("case", WITH_JSON, ids=[c["name"] for c in WITH_JSON])
def test_every_variant_reads_back_exactly(case, publish):
    expected = np.load(LEGACY / case["expected"])
    url = publish(LEGACY / case["path"])
    ds = _open(url, case)
    assert type(ds).__name__ == "RemoteSplitDataset"
    assert ds.shape == expected.shape
    assert ds.dtype == expected.dtype
    np.testing.assert_array_equal(ds[...], expected)
    np.testing.assert_array_equal(ds.to_dask().compute(scheduler="sync"), expected)
    for index, slices in ds.slices():
        np.testing.assert_array_equal(ds[slices], expected[slices], err_msg=str(index))


@pytest.mark.parametrize("case", WITHOUT_JSON, ids=[c["name"] for c in WITHOUT_JSON])
def test_metadata_inside_the_blocks_is_a_clear_error(case, publish):
    url = publish(LEGACY / case["path"])
    with pytest.raises(sd.NotASplitDatasetError, match="metadata lives only inside the block"):
        sd.SplitDataset(url)


def _write(root: Path, data: np.ndarray, block_shape: tuple[int, ...]) -> None:
    sd.to_split_dataset(data, root, block_shape=block_shape)


DTYPES = ["uint8", "uint16", "int32", "float32", "float64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "block_shape"),
    [((9, 3, 20, 24), (4, 3, 20, 24)), ((7, 4, 30, 10), (3, 2, 16, 10)), ((5, 33), (2, 33))],
)
def test_selections_equal_numpy(tmp_path, publish, dtype, shape, block_shape):
    rng = np.random.default_rng(1)
    data = (rng.integers(0, 200, shape) > 100) if dtype == "bool" else rng.integers(0, 200, shape)
    data = data.astype(dtype)
    _write(tmp_path / "d", data, block_shape)
    ds = sd.SplitDataset(publish(tmp_path / "d"))
    keys = [
        (...,),
        (2,),
        (slice(1, None, 2),),
        (-1, slice(None, None, 3)),
        ([0, 4, 3],),
        (data.reshape(-1)[: shape[0]] > 0,) if dtype == "bool" else (np.array([1, 1, 0]),),
        (slice(None), 1),
    ]
    for key in keys:
        np.testing.assert_array_equal(ds[key], data[key], err_msg=repr(key))
    np.testing.assert_array_equal(ds.to_dask()[1:, ..., 1:].compute(), data[1:, ..., 1:])


@settings(max_examples=25, deadline=None)
@given(
    start=st.integers(0, 11),
    stop=st.integers(0, 12),
    step=st.integers(1, 4),
    plane=st.integers(-3, 2),
)
def test_slices_of_a_remote_dataset_equal_numpy(remote_movie, start, stop, step, plane):
    url, data = remote_movie
    ds = sd.SplitDataset(url)
    key = (slice(start, stop, step), plane)
    np.testing.assert_array_equal(ds[key], data[key])


@pytest.fixture(scope="module")
def remote_movie(tmp_path_factory):
    root = tmp_path_factory.mktemp("movie") / "m"
    data = np.random.default_rng(2).integers(0, 4000, (12, 3, 32, 40)).astype(np.uint16)
    _write(root, data, (5, 3, 32, 40))
    return _to_memory(root, "movie"), data


@pytest.mark.parametrize(
    "scheduler", ["sync", "threads", pytest.param("processes", marks=pytest.mark.subprocess)]
)
def test_dask_reductions_equal_numpy(tmp_path, scheduler):
    # Processes read through file:// (a memory store is private to each process).
    data = np.random.default_rng(3).integers(0, 4000, (10, 3, 16, 20)).astype(np.uint16)
    _write(tmp_path / "d", data, (3, 3, 16, 20))
    ds = sd.SplitDataset((tmp_path / "d").resolve().as_uri())
    x = ds.to_dask()
    assert x.numblocks == (4, 1, 1, 1)
    np.testing.assert_allclose(x.mean(axis=0).compute(scheduler=scheduler), data.mean(axis=0))
    np.testing.assert_array_equal(x.max(axis=(1, 2)).compute(scheduler=scheduler), data.max((1, 2)))


def test_what_a_task_carries_does_not_grow_with_the_blocks(tmp_path):
    sizes = []
    for n_blocks in (4, 4000):
        root = tmp_path / f"d{n_blocks}"
        _write(root, np.zeros((n_blocks, 2, 3), np.uint8), (1, 2, 3))
        ds = sd.SplitDataset(root.resolve().as_uri())
        assert isinstance(ds.reader, RemoteBlockReader)
        sizes.append(len(pickle.dumps(ds.reader)))
        copy = pickle.loads(pickle.dumps(ds))
        np.testing.assert_array_equal(copy[n_blocks - 1], np.zeros((2, 3), np.uint8))
    # A list of names would add 7 bytes per block; the URL and the count add a few.
    assert sizes[1] - sizes[0] < 8
    assert sizes[1] < 600


def test_names_come_from_the_metadata_where_the_store_cannot_list(tmp_path):
    # fimpy's "files" list, or the writers' numbering: both read without a listing.
    data = np.arange(6 * 4, dtype=np.uint16).reshape(6, 4)
    root = tmp_path / "d"
    _write(root, data, (2, 4))
    url = _to_memory(root, "unlisted")
    ds = sd.SplitDataset(url)
    assert ds.block_names == ("0000.h5", "0001.h5", "0002.h5")


def test_a_missing_block_names_its_url(tmp_path):
    data = np.arange(6 * 4, dtype=np.uint16).reshape(6, 4)
    _write(tmp_path / "d", data, (2, 4))
    url = _to_memory(tmp_path / "d", "missing")
    ds = sd.SplitDataset(url)
    fsspec.filesystem("memory").rm(url.removeprefix("memory://") + "/0001.h5")
    np.testing.assert_array_equal(ds[0:2], data[0:2])
    with pytest.raises(sd.BlockError, match=r"0001\.h5") as raised:
        ds[2]
    assert url in str(raised.value)
    assert "\n" not in str(raised.value)


def test_no_metadata_is_not_a_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    url = (tmp_path / "empty").resolve().as_uri()
    with pytest.raises(sd.NotASplitDatasetError, match="not a split dataset") as raised:
        sd.SplitDataset(url)
    assert url in str(raised.value)


def test_options_that_only_fit_one_kind_of_location_are_refused(tmp_path):
    _write(tmp_path / "d", np.zeros((2, 2), np.uint8), (1, 2))
    with pytest.raises(ValueError, match="storage_options are for URLs"):
        sd.SplitDataset(tmp_path / "d", storage_options={"anon": True})
    with pytest.raises(ValueError, match="allow_external is for local folders"):
        sd.SplitDataset((tmp_path / "d").resolve().as_uri(), allow_external=True)


def test_a_remote_block_never_follows_a_link_out_of_itself(tmp_path):
    # A hostile remote file linking to a file on the reading machine: refused, never opened.
    secret = tmp_path / "secret.h5"
    with h5py.File(secret, "w") as f:
        f["stack"] = np.full((2, 2), 7, np.uint8)
    root = tmp_path / "d"
    _write(root, np.zeros((2, 2), np.uint8), (2, 2))
    with h5py.File(root / "0000.h5", "w") as f:
        f["stack"] = h5py.ExternalLink(str(secret), "stack")
    ds_url = _to_memory(root, "link")
    with pytest.raises(sd.SplitDatasetError, match="external link"):
        sd.SplitDataset(ds_url)[...]


def test_a_damaged_remote_chunk_is_a_block_error(tmp_path):
    data = np.random.default_rng(4).integers(0, 60000, (4, 64, 64)).astype(np.uint16)
    root = tmp_path / "d"
    _write(root, data, (2, 64, 64))
    with h5py.File(root / "0001.h5", "r") as f:
        (key,) = f.keys()
        info = f[key].id.get_chunk_info(0)
    raw = bytearray((root / "0001.h5").read_bytes())
    raw[info.byte_offset + info.size - 3] ^= 0xFF
    (root / "0001.h5").write_bytes(bytes(raw))
    ds = sd.SplitDataset(_to_memory(root, "damaged"))
    np.testing.assert_array_equal(ds[0:2], data[0:2])
    with pytest.raises(sd.BlockError, match=r"0001\.h5.*(CRC32C|chunk)"):
        ds[2:]


def test_gzip_blocks_read_through_h5py(tmp_path):
    data = np.arange(4 * 6 * 5, dtype=np.int32).reshape(4, 6, 5)
    root = tmp_path / "d"
    root.mkdir()
    for i in range(2):
        with h5py.File(root / f"{i:04d}.h5", "w") as f:
            f.create_dataset(
                "stack", data=data[2 * i : 2 * i + 2], chunks=(1, 6, 5), compression="gzip"
            )
    (root / "stack_metadata.json").write_text(
        json.dumps({"shape_full": [4, 6, 5], "shape_block": [2, 6, 5]})
    )
    ds = sd.SplitDataset(_to_memory(root, "gzip"))
    np.testing.assert_array_equal(ds[...], data)
    np.testing.assert_array_equal(ds[1:3, 2], data[1:3, 2])
    assert hdf5plugin  # the Blosc filter is registered for the other tests' files


@pytest.mark.subprocess
def test_a_local_folder_never_imports_fsspec(tmp_path):
    _write(tmp_path / "d", np.zeros((2, 2), np.uint8), (1, 2))
    code = (
        "import sys, splitds_dask as sd\n"
        f"ds = sd.SplitDataset({str(tmp_path / 'd')!r})\n"
        "ds[...]; ds.to_dask().sum().compute()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fsspec', 's3fs', 'aiohttp')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- the tools, given a URL --------------------------------------------------------------------


@pytest.fixture(scope="module")
def file_url_movie(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools") / "movie"
    data = np.random.default_rng(5).integers(0, 4000, (9, 2, 12, 14)).astype(np.uint16)
    _write(root, data, (4, 2, 12, 14))
    return root.resolve().as_uri(), data


def test_xarray_engine_reads_a_url(file_url_movie):
    xr = pytest.importorskip("xarray")
    url, data = file_url_movie
    lazy = xr.open_dataarray(url, engine="splitds")
    assert lazy.name == "movie"
    np.testing.assert_array_equal(lazy[2:5, 1].values, data[2:5, 1])
    chunked = xr.open_dataarray(url, engine="splitds", chunks={})
    assert chunked.data.numblocks == (3, 1, 1, 1)
    # The dask array itself: in array-expr mode, reductions fail on the 0-d meta xarray gives.
    np.testing.assert_array_equal(chunked.data.compute(), data)


def test_napari_reader_opens_a_url_and_its_metadata_file(file_url_movie):
    from splitds_dask._integrations.napari import napari_get_reader

    url, data = file_url_movie
    for opened in (url, f"{url}/stack_metadata.json"):
        reader = napari_get_reader(opened)
        assert reader is not None
        [(layer, kwargs, kind)] = reader(opened)
        assert (kwargs["name"], kind) == ("movie", "image")
        np.testing.assert_array_equal(np.asarray(layer[3, 1]), data[3, 1])


def test_cli_info_and_project_take_a_url(file_url_movie, tmp_path, capsys):
    from splitds_dask._cli.main import main

    url, data = file_url_movie
    assert main(["info", "--json", url]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["path"] == url
    assert info["shape"] == list(data.shape)
    assert info["metadata_file"] == f"{url}/stack_metadata.json"
    local = Path(url.removeprefix("file://"))
    assert info["bytes_on_disk"] == sum(p.stat().st_size for p in local.glob("*.h5"))
    assert main(["project", url, str(tmp_path / "max.npy"), "--stat", "max", "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "max.npy"), data.max(axis=0))
    assert main(["info", "--storage-options", "[1]", url]) == 2


# --- writing -----------------------------------------------------------------------------------


def _memory_url(name: str) -> str:
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/w-{name}"):
        fs.rm(f"/w-{name}", recursive=True)
    return f"memory://w-{name}"


def _names(url: str) -> list[str]:
    fs, path = fsspec.core.url_to_fs(url)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


@pytest.mark.parametrize("compute", [True, False])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "int8"])
def test_writing_to_a_url_reads_back_and_opens_with_h5py(tmp_path, compute, dtype):
    data = np.random.default_rng(6).integers(0, 100, (11, 2, 9, 7)).astype(dtype)
    url = (tmp_path / "out").resolve().as_uri()
    written = sd.to_split_dataset(data, url, block_shape=(4, 2, 9, 7), compute=compute)
    if not compute:
        assert _names(url) == [".splitds-writing"]  # nothing a reader opens until computed
        written = written.compute()
    assert _names(url) == [
        "0000.h5",
        "0001.h5",
        "0002.h5",
        "splitds-chunkmaps.json",
        "stack_metadata.json",
    ]
    np.testing.assert_array_equal(written[...], data)
    # The oracle: plain h5py and json on the files the store holds.
    out = tmp_path / "out"
    check_sidecar(
        (out / "splitds-chunkmaps.json").read_bytes(),
        (out / "stack_metadata.json").read_bytes(),
        {name: out / name for name in ("0000.h5", "0001.h5", "0002.h5")},
        "stack_4D",
    )
    meta = json.loads((tmp_path / "out" / "stack_metadata.json").read_text())
    assert meta["shape_full"] == list(data.shape)
    assert meta["shape_block"] == [4, 2, 9, 7]
    parts = []
    for name in ("0000.h5", "0001.h5", "0002.h5"):
        with h5py.File(tmp_path / "out" / name, "r") as f:
            parts.append(f["stack_4D"][...])
    np.testing.assert_array_equal(np.concatenate(parts), data)


def test_an_existing_remote_dataset_is_never_replaced(tmp_path):
    url = _memory_url("exists")
    data = np.arange(12, dtype=np.uint8).reshape(6, 2)
    sd.to_split_dataset(data, url, block_shape=(3, 2))
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="never replaced on an object store"):
            sd.to_split_dataset(data + 1, url, block_shape=(2, 2), overwrite=overwrite)
    np.testing.assert_array_equal(sd.SplitDataset(url)[...], data)
    assert _names(url) == ["0000.h5", "0001.h5", "splitds-chunkmaps.json", "stack_metadata.json"]


def test_other_files_at_the_url_are_never_touched(tmp_path):
    url = _memory_url("other")
    fsspec.filesystem("memory").pipe(url.removeprefix("memory://") + "/notes.txt", b"mine")
    with pytest.raises(FileExistsError, match=r"not a split dataset \(notes\.txt\)"):
        sd.to_split_dataset(np.zeros((2, 2)), url)
    assert _names(url) == ["notes.txt"]


def test_a_failed_or_killed_write_is_no_dataset_and_the_next_write_clears_it(tmp_path, monkeypatch):
    url = _memory_url("failed")

    def explode(block):
        if block[0, 0] == 16:
            raise RuntimeError("source failed")
        return block

    import dask.array as da

    source = da.from_array(np.arange(24).reshape(6, 4), chunks=(2, 4)).map_blocks(explode)
    with pytest.raises(RuntimeError, match="source failed"):
        sd.to_split_dataset(source, url)
    # Its marker stays (other tasks may still be uploading); no metadata, so no dataset.
    assert ".splitds-writing" in _names(url)
    assert "stack_metadata.json" not in _names(url)
    with pytest.raises(sd.NotASplitDatasetError):
        sd.SplitDataset(url)
    # What a killed write leaves: its marker and some blocks, no metadata.
    fs = fsspec.filesystem("memory")
    fs.pipe(url.removeprefix("memory://") + "/0000.h5", b"partial")
    with pytest.raises(sd.NotASplitDatasetError):
        sd.SplitDataset(url)
    data = np.arange(8, dtype=np.int16).reshape(4, 2)
    # Fresh leftovers: an upload the stopped writer sent may still land. Refused until they are
    # LEFTOVERS_QUIET seconds old (a short time here, waited for).
    with pytest.raises(FileExistsError, match="stopped less than 120 s ago"):
        sd.to_split_dataset(data, url, block_shape=(2, 2))
    monkeypatch.setattr(remote_write, "LEFTOVERS_QUIET", 1.0)
    time.sleep(1.5)
    written = sd.to_split_dataset(data, url, block_shape=(2, 2))
    np.testing.assert_array_equal(written[...], data)
    assert _names(url) == ["0000.h5", "0001.h5", "splitds-chunkmaps.json", "stack_metadata.json"]


def test_storage_options_for_a_local_folder_are_refused(tmp_path):
    with pytest.raises(ValueError, match="storage_options are for URLs"):
        sd.to_split_dataset(np.zeros((2, 2)), tmp_path / "d", storage_options={"anon": True})
