"""The chunk-map sidecar (splitds-chunkmaps.json): written by ``splitds index`` and by
``to_split_dataset`` to a URL, read by remote datasets so that a block's first read is one
request. Real HDF5 files, the S3 (moto) and HTTP servers on 127.0.0.1, real subprocesses; the
oracle is numpy, h5py's own chunk index and json (tests/helpers/chunkmaps.py)."""

from __future__ import annotations

import base64
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._remote.chunkmaps import SIDECARS
from splitds_dask._remote.sizes import BLOCK_SIZES
from splitds_dask._storage.blosc import CHUNK_MAPS
from tests.helpers.chunkmaps import SIDECAR, check_sidecar
from tests.helpers.cli import run_main
from tests.helpers.fresh_process import compute_in_fresh_process

pytestmark = pytest.mark.network

_INDEX = 1 << 18  # the bytes a block's first read without a map fetches at each end


def _forget() -> None:
    """As a process that did not open any dataset: no chunk map, size or sidecar."""
    CHUNK_MAPS.clear()
    BLOCK_SIZES.clear()
    SIDECARS.clear()


def _movie(root: Path, *, n_blocks: int = 3, planes: int = 8, side: int = 256) -> np.ndarray:
    rng = np.random.default_rng(n_blocks)
    data = rng.integers(0, 4000, (n_blocks * 2, planes, side, side)).astype(np.uint16)
    sd.to_split_dataset(data, root, block_shape=(2, planes, side, side))
    return data


def _indexed(root: Path, **movie) -> np.ndarray:
    """A local dataset and its sidecar, made by ``splitds index`` (checked with the oracle)."""
    data = _movie(root, **movie)
    run = run_main("index", str(root))
    assert run.code == 0, run
    assert "3 block(s) mapped" in run.out or "block(s) mapped" in run.out
    blocks = {p.name: p for p in root.glob("*.h5")}
    check_sidecar(
        (root / SIDECAR).read_bytes(),
        (root / "stack_metadata.json").read_bytes(),
        blocks,
        "stack_4D",
    )
    return data


def _block_requests(log, name: str) -> list:
    return [r for r in log.requests if r.path.endswith("/" + name)]


def test_index_on_a_local_folder_is_ignored_by_local_readers(tmp_path):
    data = _indexed(tmp_path / "m")
    # Neither a block file nor metadata: the folder opens and reads as before.
    ds = sd.SplitDataset(tmp_path / "m")
    assert ds.block_names == ("0000.h5", "0001.h5", "0002.h5")
    np.testing.assert_array_equal(ds[...], data)


def test_a_cold_read_in_the_opening_process_is_one_get(tmp_path, s3_bucket):
    data = _indexed(tmp_path / "m")
    url = s3_bucket.upload(tmp_path / "m", "m")
    _forget()
    s3_bucket.log.delay = 0.1
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    ds.dtype  # noqa: B018 - opening done
    opening = [r for r in s3_bucket.log.requests if r.method == "GET"]
    side = [r for r in opening if r.path.endswith("/" + SIDECAR)]
    meta = [r for r in opening if r.path.endswith("/stack_metadata.json")]
    assert len(side) == 1, opening
    assert len(meta) == 1, opening
    assert max(side[0].in_flight, meta[0].in_flight) == 2  # together: no round trip more
    s3_bucket.log.clear()
    s3_bucket.log.delay = 0
    np.testing.assert_array_equal(ds[3], data[3])
    requests = s3_bucket.log.requests
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in requests] == [("GET", "0001.h5")]
    # The time point's chunks only (random data: about its size), not the file's ends.
    assert requests[0].range is not None
    assert not requests[0].range.startswith(("bytes=0-", "bytes=-"))
    assert requests[0].body_bytes <= data[3].nbytes + 1024


@pytest.mark.subprocess
def test_a_process_that_did_not_open_it_fetches_the_sidecar_once(tmp_path, s3_bucket):
    data = _indexed(tmp_path / "m")
    url = s3_bucket.upload(tmp_path / "m", "m")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    x = ds.to_dask()
    s3_bucket.log.clear()
    first, second = compute_in_fresh_process([x[3], x[4:6]], tmp_path / "o")
    np.testing.assert_array_equal(first, data[3])
    np.testing.assert_array_equal(second, data[4:6])
    # The sidecar once, then one GET per block: no block index fetched.
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in s3_bucket.log.requests] == [
        ("GET", SIDECAR),
        ("GET", "0001.h5"),
        ("GET", "0002.h5"),
    ]
    # Threads starting on every block at once (the server slowed, so that they meet): the
    # sidecar is still fetched once, and each block costs one GET.
    s3_bucket.log.clear()
    s3_bucket.log.delay = 0.05
    whole, _ = compute_in_fresh_process([x, x[0]], tmp_path / "a")
    np.testing.assert_array_equal(whole, data)
    names = sorted(r.path.rsplit("/", 1)[-1] for r in s3_bucket.log.requests)
    assert names == ["0000.h5", "0000.h5", "0001.h5", "0002.h5", SIDECAR], names


def test_the_pickled_reader_does_not_grow_with_the_dataset(tmp_path, s3_bucket):
    sizes = []
    for n_blocks in (3, 300):
        _indexed(tmp_path / f"m{n_blocks}", n_blocks=n_blocks, planes=1, side=8)
        url = s3_bucket.upload(tmp_path / f"m{n_blocks}", f"m{n_blocks}")
        ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
        assert ds.reader.chunkmaps is not None  # the sidecar was found
        sizes.append(len(pickle.dumps(ds.reader)))
    # Only the URL ("m300" against "m3") and the counts (300 against 3) differ.
    assert 0 <= sizes[1] - sizes[0] <= 8, sizes


def test_a_stale_sidecar_is_ignored(tmp_path, s3_bucket):
    data = _indexed(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "stack_metadata.json").read_text())
    meta["rewritten"] = True  # committed again after the index was made
    (tmp_path / "m" / "stack_metadata.json").write_text(json.dumps(meta))
    url = s3_bucket.upload(tmp_path / "m", "m")
    _forget()
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    assert ds.reader.chunkmaps is None
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[3], data[3])
    assert len(_block_requests(s3_bucket.log, "0001.h5")) == 3  # its index, then the data


def _arrays(entry: dict, key: str, dtype: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry[key]), dtype=dtype).copy()


def _put(entry: dict, key: str, values: np.ndarray, dtype: str) -> None:
    entry[key] = base64.b64encode(np.asarray(values, dtype=dtype).tobytes()).decode()


def _past_the_file(doc: dict) -> None:
    entry = doc["blocks"]["0001.h5"]
    offsets = _arrays(entry, "offsets", "<i8")
    offsets[-1] = entry["size"] + 10
    _put(entry, "offsets", offsets, "<i8")


def _overlapping(doc: dict) -> None:
    entry = doc["blocks"]["0001.h5"]
    offsets = _arrays(entry, "offsets", "<i8")
    offsets[1] = offsets[0] + 1
    _put(entry, "offsets", offsets, "<i8")


def _bad_mask(doc: dict) -> None:
    entry = doc["blocks"]["0001.h5"]
    _put(entry, "masks", np.full(entry["count"], 4), "<u4")


def _outside_the_grid(doc: dict) -> None:
    entry = doc["blocks"]["0001.h5"]
    numbers = np.arange(entry["count"]) + 1  # the last names a chunk past the grid
    _put(entry, "numbers", numbers, "<i8")


def _wrong_size(doc: dict) -> None:
    doc["blocks"]["0001.h5"]["size"] += 1  # not the size the listing shows


def _wrong_digest(doc: dict) -> None:
    doc["metadata_sha256"] = "0" * 64


def _wrong_shape(doc: dict) -> None:
    doc["blocks"]["0001.h5"]["shape"][0] = 1  # smaller than the block needs


_DAMAGE = {
    "past_the_file": _past_the_file,
    "overlapping": _overlapping,
    "bad_mask": _bad_mask,
    "outside_the_grid": _outside_the_grid,
    "wrong_size": _wrong_size,
    "wrong_digest": _wrong_digest,
    "wrong_shape": _wrong_shape,
    "not_json": None,
    "not_this_format": None,
}


@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_a_damaged_or_hostile_sidecar_is_ignored_and_reads_stay_correct(
    tmp_path, s3_bucket, damage
):
    data = _indexed(tmp_path / "m")
    path = tmp_path / "m" / SIDECAR
    if damage == "not_json":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "not_this_format":
        path.write_text(json.dumps({"format": "other", "blocks": {}}))
    else:
        doc = json.loads(path.read_text())
        _DAMAGE[damage](doc)
        path.write_text(json.dumps(doc))
    url = s3_bucket.upload(tmp_path / "m", "m")
    _forget()
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    ds.dtype  # noqa: B018 - opening done
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[3], data[3])  # block 1: its index fetched from the file
    assert len(_block_requests(s3_bucket.log, "0001.h5")) == 3
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[5], data[5])  # block 2: from the sidecar where it is sound
    whole = damage in ("wrong_digest", "not_json", "not_this_format")
    assert len(_block_requests(s3_bucket.log, "0002.h5")) == (3 if whole else 1)


def test_a_sidecar_over_the_size_limit_is_ignored(tmp_path, s3_bucket, monkeypatch):
    from splitds_dask._remote import dataset as remote_dataset
    from splitds_dask._storage import chunkmap_file

    data = _indexed(tmp_path / "m")
    limit = (tmp_path / "m" / SIDECAR).stat().st_size - 1
    monkeypatch.setattr(chunkmap_file, "MAX_CHUNKMAPS_BYTES", limit)
    monkeypatch.setattr(remote_dataset, "MAX_CHUNKMAPS_BYTES", limit)
    url = s3_bucket.upload(tmp_path / "m", "m")
    _forget()
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    assert ds.reader.chunkmaps is None
    assert not _block_requests(s3_bucket.log, SIDECAR)  # its listed size said: not fetched
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[3], data[3])
    assert len(_block_requests(s3_bucket.log, "0001.h5")) == 3


def test_index_on_s3_writes_what_h5py_lists(tmp_path, s3_bucket):
    data = _movie(tmp_path / "m")
    url = s3_bucket.upload(tmp_path / "m", "m")
    options = json.dumps(s3_bucket.storage_options)
    run = run_main("index", url, "--storage-options", options)
    assert run.code == 0, run
    assert "3 block(s) mapped" in run.out, run
    check_sidecar(
        s3_bucket.fs.cat_file(f"{s3_bucket.name}/m/{SIDECAR}"),
        (tmp_path / "m" / "stack_metadata.json").read_bytes(),
        {p.name: p for p in (tmp_path / "m").glob("*.h5")},
        "stack_4D",
    )
    # Indexing again replaces it; readers use it.
    assert run_main("index", url, "--storage-options", options).code == 0
    _forget()
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    assert ds.reader.chunkmaps is not None  # (opening done)
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[1], data[1])
    assert [r.path.rsplit("/", 1)[-1] for r in s3_bucket.log.requests] == ["0000.h5"]


def test_over_http_the_sidecar_is_not_asked_for(tmp_path, serve_http, http_server):
    # HTTP cannot list: opening does not ask for a sidecar (one request more for every dataset
    # without one), and reads cost what they cost without it.
    data = _indexed(tmp_path / "m")
    ds = sd.SplitDataset(serve_http(tmp_path / "m"))
    np.testing.assert_array_equal(ds[...], data)
    assert not [r for r in http_server.log.requests if r.path.endswith(SIDECAR)]


def test_a_block_with_unwritten_chunks_reads_its_fill_value(tmp_path, s3_bucket):
    # Written by h5py with the Blosc filter, some chunks never written: the sidecar lists the
    # stored chunks by number, and the rest is the fill value, read through h5py.
    import h5py
    import hdf5plugin

    root = tmp_path / "sparse"
    root.mkdir()
    expected = np.full((4, 2, 16, 16), 9, np.uint16)
    for i in range(2):
        with h5py.File(root / f"{i:04d}.h5", "w") as f:
            dset = f.create_dataset(
                "stack_4D",
                shape=(2, 2, 16, 16),
                dtype=np.uint16,
                chunks=(1, 1, 16, 16),
                fillvalue=9,
                **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
            )
            part = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16) + i
            dset[1] = part  # time point 0 of the block never written
            expected[2 * i + 1] = part
    meta = {"shape_full": [4, 2, 16, 16], "shape_block": [2, 2, 16, 16]}
    (root / "stack_metadata.json").write_text(json.dumps(meta))
    assert run_main("index", str(root)).code == 0
    doc = json.loads((root / SIDECAR).read_text())
    numbers = np.frombuffer(base64.b64decode(doc["blocks"]["0001.h5"]["numbers"]), "<i8")
    assert numbers.tolist() == [2, 3]  # chunks (1, 0) and (1, 1) of the 2 x 2 grid
    url = s3_bucket.upload(root, "sparse")
    _forget()
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    assert ds.reader.chunkmaps is not None
    np.testing.assert_array_equal(ds[...], expected)
    np.testing.assert_array_equal(ds.to_dask().compute(), expected)
