"""Remote split datasets on real servers on 127.0.0.1: moto's S3 API and an HTTP server with
byte ranges and no listings (``tests/helpers/servers.py``), both counting the requests they
answer. Every variant reads as its ``.expected.npy``; what a read costs is asserted in requests.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._remote import write as remote_write
from tests.helpers.chunkmaps import check_sidecar
from tests.helpers.fresh_process import compute_in_fresh_process

pytestmark = pytest.mark.network

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())
WITH_JSON = [
    c for c in MANIFEST if c["expected"] is not None and any((LEGACY / c["path"]).glob("*.json"))
]


def _numbered_by_writers(folder: Path) -> bool:
    """Whether a plain HTTP server, which cannot list, serves the metadata as
    ``stack_metadata.json`` and every block under a name the writers' numbering gives (0000.h5
    on, or 0001.h5 on) or the metadata's ``files`` list: the oracle is the folder's listing."""
    if not (folder / "stack_metadata.json").is_file():
        return False  # fish1_stack_metadata.json: only a listing finds it
    blocks = sorted(p.name for p in folder.glob("*.h5") if p.stem.isdigit())
    meta = json.loads((folder / "stack_metadata.json").read_text())
    if meta.get("files"):
        return True
    for first in (0, 1):
        if blocks and blocks == [f"{first + i:04d}.h5" for i in range(len(blocks))]:
            return True
    return False


def _open(url: str, case: dict, **options) -> sd.SplitDataset:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = sd.SplitDataset(url, prefix=case["prefix"], **options)
    incomplete = [w for w in caught if issubclass(w.category, sd.IncompleteDatasetWarning)]
    assert bool(incomplete) == case["warns"], [str(w.message) for w in caught]
    return ds


def _check(ds: sd.SplitDataset, expected: np.ndarray) -> None:
    assert ds.shape == expected.shape
    assert ds.dtype == expected.dtype
    np.testing.assert_array_equal(ds[...], expected)
    np.testing.assert_array_equal(ds.to_dask().compute(), expected)
    for index, slices in ds.slices():
        np.testing.assert_array_equal(ds[slices], expected[slices], err_msg=str(index))


@pytest.mark.parametrize("case", WITH_JSON, ids=[c["name"] for c in WITH_JSON])
def test_every_variant_reads_back_exactly_from_s3(case, s3_bucket):
    url = s3_bucket.upload(LEGACY / case["path"], case["name"])
    ds = _open(url, case, storage_options=s3_bucket.storage_options)
    _check(ds, np.load(LEGACY / case["expected"]))
    assert not [r for r in s3_bucket.log.requests if r.method not in ("GET", "HEAD")]


HTTP_READABLE = [c for c in WITH_JSON if _numbered_by_writers(LEGACY / c["path"])]
HTTP_UNNAMED = [c for c in WITH_JSON if c not in HTTP_READABLE]


@pytest.mark.parametrize("case", HTTP_READABLE, ids=[c["name"] for c in HTTP_READABLE])
def test_every_variant_numbered_by_its_writer_reads_back_over_http(case, serve_http):
    url = serve_http(LEGACY / case["path"])
    _check(_open(url, case), np.load(LEGACY / case["expected"]))


@pytest.mark.parametrize("case", HTTP_UNNAMED, ids=[c["name"] for c in HTTP_UNNAMED])
def test_blocks_no_numbering_names_are_an_error_over_http(case, serve_http):
    # Prefixed or metadata-named files cannot be found without a listing: said, not guessed.
    url = serve_http(LEGACY / case["path"])
    with pytest.raises(sd.NotASplitDatasetError, match="cannot list") as raised:
        sd.SplitDataset(url, prefix=case["prefix"])[...]
    assert "\n" not in str(raised.value), raised.value


def test_a_stopped_acquisition_opens_over_http_as_from_a_listing(tmp_path, serve_http):
    # 10 block rows declared, 6 written: found by bisection, without a request per block.
    data = np.arange(60 * 4, dtype=np.uint16).reshape(60, 4)
    root = tmp_path / "d"
    sd.to_split_dataset(data, root, block_shape=(6, 4))
    meta = json.loads((root / "stack_metadata.json").read_text())
    meta["shape_full"] = [100, 4]
    (root / "stack_metadata.json").write_text(json.dumps(meta))
    url = serve_http(root)
    with pytest.warns(sd.IncompleteDatasetWarning, match=r"\(100, 4\).*\(60, 4\)"):
        ds = sd.SplitDataset(url)
    np.testing.assert_array_equal(ds[...], data)


def _movie(root: Path, *, n_blocks: int, planes: int = 3, side: int = 64) -> np.ndarray:
    rng = np.random.default_rng(n_blocks)
    data = rng.integers(0, 4000, (n_blocks * 2, planes, side, side)).astype(np.uint16)
    sd.to_split_dataset(data, root, block_shape=(2, planes, side, side))
    return data


def test_opening_costs_the_same_requests_whatever_the_number_of_blocks(tmp_path, s3_bucket):
    counts = []
    for n_blocks in (3, 300):
        _movie(tmp_path / f"m{n_blocks}", n_blocks=n_blocks, planes=1, side=8)
        url = s3_bucket.upload(tmp_path / f"m{n_blocks}", f"m{n_blocks}")
        sd.SplitDataset(url, storage_options=s3_bucket.storage_options).dtype  # noqa: B018
        counts.append(sorted((r.method, r.query.split("=")[0]) for r in s3_bucket.log.requests))
    assert counts[0] == counts[1]
    assert len(counts[0]) <= 12, counts[0]


def test_a_time_point_of_a_known_file_is_one_range_request(
    tmp_path, s3_bucket, serve_http, http_server
):
    data = _movie(tmp_path / "m", n_blocks=3)
    for url, server_log, options in (
        (s3_bucket.upload(tmp_path / "m", "m"), s3_bucket.log, s3_bucket.storage_options),
        (serve_http(tmp_path / "m"), http_server.log, None),
    ):
        ds = sd.SplitDataset(url, storage_options=options)
        # The first read of a block file maps its chunks: once per process.
        np.testing.assert_array_equal(ds[0], data[0])
        np.testing.assert_array_equal(ds[2], data[2])
        server_log.clear()
        np.testing.assert_array_equal(ds[3], data[3])
        np.testing.assert_array_equal(ds[3, 1], data[3, 1])
        requests = server_log.requests
        assert [r.method for r in requests] == ["GET", "GET"], requests
        assert all(r.range is not None and r.path.endswith("0001.h5") for r in requests)
        # Two blocks: one request each.
        server_log.clear()
        np.testing.assert_array_equal(ds[1:3], data[1:3])
        assert sorted(r.path.rsplit("/", 1)[-1] for r in server_log.requests) == [
            "0000.h5",
            "0001.h5",
        ]


def test_a_block_files_index_is_fetched_in_one_round_trip(tmp_path, s3_bucket):
    # Random data barely compresses: block files of about 2 MB, whose HDF5 index lies at their
    # head and their tail (h5py writes the chunk index at close). Both are requested together.
    data = _movie(tmp_path / "m", n_blocks=2, planes=8, side=256)
    url = s3_bucket.upload(tmp_path / "m", "m")
    size = (tmp_path / "m" / "0001.h5").stat().st_size
    assert size > 4 * (1 << 18)
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    ds.dtype  # noqa: B018 - opening done: block 0's index was read
    s3_bucket.log.clear()
    s3_bucket.log.delay = 0.1
    np.testing.assert_array_equal(ds[3], data[3])
    gets = s3_bucket.log.of("GET")
    assert all(r.path.endswith("/0001.h5") for r in gets), gets
    assert len(gets) == 3, gets  # head and tail of the index, then the chunk of t = 3
    index = [
        r
        for r in gets
        if r.range in (f"bytes=0-{(1 << 18) - 1}", f"bytes={size - (1 << 18)}-{size - 1}")
    ]
    assert len(index) == 2, gets
    assert max(r.in_flight for r in index) == 2, index


@pytest.mark.parametrize("length", [5 * (1 << 18) + 12345, (1 << 18) + 7, 1000])
@pytest.mark.parametrize("size_known", [True, False], ids=["size-known", "size-unknown"])
def test_the_index_file_reads_the_bytes_of_the_remote_file(tmp_path, s3_bucket, length, size_known):
    from splitds_dask._remote.block_file import _HeadAndTail

    block = 1 << 18
    payload = np.random.default_rng(3).integers(0, 256, length, dtype=np.uint8)
    local = tmp_path / "f"
    local.mkdir()
    (local / "blob.bin").write_bytes(payload.tobytes())
    s3_bucket.upload(local, "f")
    expected = payload.tobytes()
    size = len(expected) if size_known else None
    f = _HeadAndTail(s3_bucket.fs, f"{s3_bucket.name}/f/blob.bin", size=size)
    assert f.size == len(expected)
    assert {r.method for r in s3_bucket.log.requests} == {"GET"}
    # Inside the head, across it, in the middle (fetched on demand), across the tail, past it.
    for offset, n in [
        (0, 8),
        (block - 3, 10),
        (2 * block + 5, 2 * block),
        (len(expected) - 9, 100),
    ]:
        offset = min(offset, len(expected))
        assert f.seek(offset) == offset
        assert f.read(n) == expected[offset : offset + n], (offset, n)
        assert f.tell() == min(len(expected), offset + n)
    f.seek(-5, os.SEEK_END)
    assert f.read() == expected[-5:]
    assert f.read(4) == b""
    with pytest.raises(OSError, match="before the start"):
        f.seek(-1)


def test_runs_of_far_apart_chunks_are_requested_together(tmp_path, s3_bucket, write_plain):
    # Chunks of one plane of 512 KiB (incompressible), four planes per time point: the planes
    # of one z lie 1.5 MiB apart, so ds[:, 0] of a block takes one request per time point, and
    # those are in flight at once.
    rng = np.random.default_rng(7)
    data = rng.integers(0, 65535, (4, 4, 512, 512)).astype(np.uint16)
    root = tmp_path / "far"
    blosc = dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    write_plain(root, data, (4,), chunks=(1, 1, 512, 512), compression=blosc)
    url = s3_bucket.upload(root, "far")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    ds[0, 0]  # the chunk map
    s3_bucket.log.clear()
    s3_bucket.log.delay = 0.2
    np.testing.assert_array_equal(ds[:, 0], data[:, 0])
    gets = s3_bucket.log.of("GET")
    assert len(gets) == 4
    assert max(r.in_flight for r in gets) >= 2
    assert sum(r.body_bytes for r in gets) < data[:, 0].nbytes * 1.01


@pytest.mark.cluster
def test_a_distributed_mean_over_s3_equals_numpy(tmp_path, s3_bucket):
    from distributed import Client, LocalCluster

    data = _movie(tmp_path / "m", n_blocks=4)
    url = s3_bucket.upload(tmp_path / "m", "m")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as c,
        Client(c) as client,
    ):
        np.testing.assert_allclose(client.compute(ds.to_dask().mean(axis=0)).result(), data.mean(0))
    assert len(pickle.dumps(ds.reader)) < 800  # a URL and options, not a connection


def test_writing_to_s3_reads_back_with_h5py(tmp_path, s3_bucket):
    data = _movie(tmp_path / "src", n_blocks=3)
    url = f"{s3_bucket.url}/written"
    ds = sd.to_split_dataset(
        data, url, block_shape=(2, 3, 64, 64), storage_options=s3_bucket.storage_options
    )
    np.testing.assert_array_equal(ds[...], data)
    puts = [r.path.rsplit("/", 1)[-1] for r in s3_bucket.log.of("PUT")]
    # The marker first, then every block, their chunk-map sidecar, and the metadata last.
    assert puts[0] == ".splitds-writing"
    last_block = max(puts.index(f"000{i}.h5") for i in range(3))
    assert last_block < puts.index("splitds-chunkmaps.json") < puts.index("stack_metadata.json")
    s3_bucket.fs.get(f"{s3_bucket.name}/written/", str(tmp_path / "back") + "/", recursive=True)
    back = tmp_path / "back"
    assert sorted(p.name for p in back.iterdir()) == [
        "0000.h5",
        "0001.h5",
        "0002.h5",
        "splitds-chunkmaps.json",
        "stack_metadata.json",
    ]
    check_sidecar(
        (back / "splitds-chunkmaps.json").read_bytes(),
        (back / "stack_metadata.json").read_bytes(),
        {f"000{i}.h5": back / f"000{i}.h5" for i in range(3)},
        "stack_4D",
    )
    with h5py.File(tmp_path / "back" / "0001.h5", "r") as f:
        np.testing.assert_array_equal(f["stack_4D"][...], data[2:4])


_KILLED_WRITER = """
import sys, numpy as np, splitds_dask as sd
url, endpoint = sys.argv[1], sys.argv[2]
options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
data = np.random.default_rng(0).integers(0, 4000, (40, 3, 64, 64)).astype(np.uint16)
sd.to_split_dataset(data, url, block_shape=(2, 3, 64, 64), storage_options=options)
"""


@pytest.mark.subprocess
def test_a_write_killed_midway_leaves_no_dataset_and_the_next_one_completes(
    tmp_path, s3_bucket, monkeypatch
):
    url = f"{s3_bucket.url}/killed"
    s3_bucket.log.delay = 0.05  # slow uploads: the kill lands among the blocks
    env = dict(os.environ, PYTHONPATH=str(Path(sd.__file__).parents[1]))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_WRITER,
            url,
            s3_bucket.storage_options["client_kwargs"]["endpoint_url"],
        ],
        env=env,
    )
    deadline = time.monotonic() + 120
    while not any(r.path.endswith(".h5") for r in s3_bucket.log.of("PUT")):
        assert child.poll() is None, "the writer ended before uploading a block"
        assert time.monotonic() < deadline, "the writer never uploaded a block"
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    s3_bucket.log.delay = 0
    s3_bucket.fs.invalidate_cache()
    left = sorted(p.rsplit("/", 1)[-1] for p in s3_bucket.fs.ls(f"{s3_bucket.name}/killed"))
    assert ".splitds-writing" in left
    assert "stack_metadata.json" not in left
    with pytest.raises(sd.NotASplitDatasetError):
        sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    data = np.arange(6 * 4, dtype=np.uint8).reshape(6, 4)
    # The killed writer's last uploads may still be answered (the delay holds them): the next
    # write waits until the leftovers have been left alone for LEFTOVERS_QUIET seconds.
    with pytest.raises(FileExistsError, match="uploads it had sent may still land"):
        sd.to_split_dataset(data, url, storage_options=s3_bucket.storage_options)
    monkeypatch.setattr(remote_write, "LEFTOVERS_QUIET", 2.0)
    refusals = []
    while True:
        try:
            ds = sd.to_split_dataset(
                data, url, block_shape=(3, 4), storage_options=s3_bucket.storage_options
            )
            break
        except FileExistsError as exc:
            refusals.append(str(exc))
            assert time.monotonic() < deadline, "the leftovers never went quiet"
            time.sleep(0.2)
    assert all("may still land" in r for r in refusals), refusals
    np.testing.assert_array_equal(ds[...], data)
    s3_bucket.fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in s3_bucket.fs.ls(f"{s3_bucket.name}/killed")) == [
        "0000.h5",
        "0001.h5",
        "splitds-chunkmaps.json",
        "stack_metadata.json",
    ]


def test_info_reads_sizes_from_one_listing(tmp_path, s3_bucket, capsys):
    from splitds_dask._cli.main import main

    data = _movie(tmp_path / "m", n_blocks=2)
    url = s3_bucket.upload(tmp_path / "m", "m")
    options = json.dumps(s3_bucket.storage_options)
    assert main(["info", "--json", "--storage-options", options, url]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["shape"] == list(data.shape)
    assert info["bytes_on_disk"] == sum(p.stat().st_size for p in (tmp_path / "m").glob("*.h5"))


def test_convert_writes_a_split_dataset_to_s3_and_refuses_other_kinds(tmp_path, s3_bucket, capsys):
    from splitds_dask._cli.main import main

    data = _movie(tmp_path / "m", n_blocks=2)
    url = f"{s3_bucket.url}/converted"
    options = json.dumps(s3_bucket.storage_options)
    argv = ["convert", str(tmp_path / "m"), url, "--storage-options", options, "--no-progress"]
    assert main(argv) == 0
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    np.testing.assert_array_equal(ds[...], data)
    capsys.readouterr()
    assert main(argv) == 1  # never replaced
    assert "never replaced on an object store" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "m"), f"{url}.npy", "--storage-options", options]) == 2
    assert "only split dataset folders are written" in capsys.readouterr().err


def test_a_dataset_opened_again_sees_what_another_writer_added(tmp_path, s3_bucket):
    # s3fs keeps what it listed: opening must ask the store again, not the process's cache.
    data = _movie(tmp_path / "m", n_blocks=3)
    url = f"{s3_bucket.url}/growing"
    options = s3_bucket.storage_options
    sd.to_split_dataset(data[:2], url, block_shape=(2, 3, 64, 64), storage_options=options)
    assert sd.SplitDataset(url, storage_options=options).shape[0] == 2
    # Another writer (its own client) commits two more blocks: files, then the metadata.
    sd.to_split_dataset(data, tmp_path / "grown", block_shape=(2, 3, 64, 64))
    for name in ("0001.h5", "0002.h5", "stack_metadata.json"):
        s3_bucket.fs.put_file(str(tmp_path / "grown" / name), f"{s3_bucket.name}/growing/{name}")
    grown = sd.SplitDataset(url, storage_options=options)
    assert grown.shape[0] == 6
    np.testing.assert_array_equal(grown[...], data)


# --- the first read of a block: no request for its size ------------------------------------------

_INDEX = 1 << 18  # the bytes fetched at each end of a block file for its HDF5 index


def _opened_on(store: str, folder: Path, s3_bucket, serve_http, http_server):
    """The dataset ``folder`` uploaded to the S3 server or served over HTTP, opened, with its
    first block's array found (as a read would), and the server's request log."""
    if store == "s3":
        url, log = s3_bucket.upload(folder, folder.name), s3_bucket.log
        ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    else:
        url, log = serve_http(folder), http_server.log
        ds = sd.SplitDataset(url)
    ds.dtype  # noqa: B018
    return ds, log


def _forget_chunk_maps_and_sizes() -> None:
    """As a process that did not open the dataset: no chunk map, no size from a listing."""
    from splitds_dask._remote.sizes import BLOCK_SIZES
    from splitds_dask._storage.blosc import CHUNK_MAPS

    CHUNK_MAPS.clear()
    BLOCK_SIZES.clear()


def _first_read_requests(log, path_end: str, size: int) -> list:
    """The requests of a block's first read, checked: no HEAD, three GETs of that file (its
    head and tail, then the data)."""
    requests = log.requests
    assert [r.method for r in requests] == ["GET"] * 3, requests
    assert all(r.path.endswith(path_end) for r in requests), requests
    assert sum(r.body_bytes for r in requests[:2]) <= 2 * _INDEX
    assert size > 2 * _INDEX
    return requests


def test_a_blocks_first_read_in_the_opening_process_asks_no_size(tmp_path, s3_bucket):
    # The listing made at opening gave every block's size: the index is fetched by two plain
    # ranges (the tail's placed by the listed size), then the data: 3 GETs, 2 round trips.
    data = _movie(tmp_path / "m", n_blocks=3, planes=8, side=256)
    url = s3_bucket.upload(tmp_path / "m", "m")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    ds.dtype  # noqa: B018 - opening done
    size = (tmp_path / "m" / "0001.h5").stat().st_size
    s3_bucket.log.clear()
    np.testing.assert_array_equal(ds[3], data[3])
    requests = _first_read_requests(s3_bucket.log, "/0001.h5", size)
    assert sorted(r.range for r in requests[:2]) == sorted(
        [f"bytes=0-{_INDEX - 1}", f"bytes={size - _INDEX}-{size - 1}"]
    )
    # Opening read the index of the first block (for the dtype) without a HEAD either.
    s3_bucket.log.clear()
    sd.SplitDataset(url, storage_options=s3_bucket.storage_options).dtype  # noqa: B018
    assert [r for r in s3_bucket.log.requests if r.path.endswith(".h5")]
    assert not [r for r in s3_bucket.log.requests if r.path.endswith(".h5") and r.method != "GET"]


@pytest.mark.parametrize("store", ["s3", "http"])
def test_a_blocks_first_read_without_its_size_gets_it_with_the_tail(
    tmp_path, store, s3_bucket, serve_http, http_server
):
    # A process that did not open the dataset (or HTTP, which cannot list) knows no size: the
    # tail is asked for as the file's last bytes, whose answer states the file's length. Still
    # 3 GETs, in 2 round trips, and no HEAD.
    data = _movie(tmp_path / "m", n_blocks=3, planes=8, side=256)
    ds, log = _opened_on(store, tmp_path / "m", s3_bucket, serve_http, http_server)
    _forget_chunk_maps_and_sizes()
    size = (tmp_path / "m" / "0002.h5").stat().st_size
    log.clear()
    log.delay = 0.1
    np.testing.assert_array_equal(ds[5], data[5])
    requests = _first_read_requests(log, "/0002.h5", size)
    assert sorted(r.range for r in requests[:2]) == [f"bytes=-{_INDEX}", f"bytes=0-{_INDEX - 1}"]
    assert max(r.in_flight for r in requests[:2]) == 2, requests  # together: one round trip
    log.clear()
    log.delay = 0
    np.testing.assert_array_equal(ds[4], data[4])
    assert [r.method for r in log.requests] == ["GET"]  # mapped: the data only


@pytest.mark.subprocess
def test_a_process_that_did_not_open_the_dataset_asks_no_size_either(tmp_path, s3_bucket):
    # A task unpickled in another process (a distributed worker): it carries no size.
    data = _movie(tmp_path / "m", n_blocks=3, planes=8, side=256)
    url = s3_bucket.upload(tmp_path / "m", "m")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    task = ds.to_dask()[3]
    s3_bucket.log.clear()
    (read,) = compute_in_fresh_process([task], tmp_path / "o", scheduler="sync")
    np.testing.assert_array_equal(read, data[3])
    requests = _first_read_requests(
        s3_bucket.log, "/0001.h5", (tmp_path / "m" / "0001.h5").stat().st_size
    )
    assert f"bytes=-{_INDEX}" in [r.range for r in requests]


def test_a_block_replaced_and_committed_again_is_read_with_its_new_size(tmp_path, s3_bucket):
    # Sizes are kept per version of the metadata: a dataset committed again (a block replaced
    # by a smaller one, then the metadata) is read with the new file's size, not the listed
    # size of the old one, nor whatever s3fs listed in this process before.
    import fsspec

    data = _movie(tmp_path / "m", n_blocks=3)
    url = s3_bucket.upload(tmp_path / "m", "m")
    options = s3_bucket.storage_options
    old = sd.SplitDataset(url, storage_options=options)
    old.dtype  # noqa: B018
    fsspec.filesystem("s3", **options).ls(f"{s3_bucket.name}/m", detail=True)  # s3fs keeps it
    new = np.full((6, 3, 64, 64), 7, np.uint16)  # compresses to a much smaller file
    sd.to_split_dataset(new, tmp_path / "n", block_shape=(2, 3, 64, 64))
    meta = json.loads((tmp_path / "n" / "stack_metadata.json").read_text())
    meta["replaced"] = True  # another version of the metadata, whatever the store's clock
    (tmp_path / "n" / "stack_metadata.json").write_text(json.dumps(meta))
    old_size = (tmp_path / "m" / "0001.h5").stat().st_size
    new_size = (tmp_path / "n" / "0001.h5").stat().st_size
    assert new_size != old_size
    for name in ("0001.h5", "stack_metadata.json"):
        s3_bucket.fs.put_file(str(tmp_path / "n" / name), f"{s3_bucket.name}/m/{name}")
    reopened = sd.SplitDataset(url, storage_options=options)
    assert reopened.version != old.version
    s3_bucket.log.clear()
    np.testing.assert_array_equal(reopened[2], new[2])
    np.testing.assert_array_equal(reopened[0], data[0])  # block 0 was not replaced
    assert {r.method for r in s3_bucket.log.requests} == {"GET"}
    ranges = [r.range for r in s3_bucket.log.requests if r.path.endswith("/m/0001.h5")]
    assert f"bytes=0-{new_size - 1}" in ranges, ranges  # the whole (small) file: its index


@pytest.mark.parametrize("store", ["s3", "http"])
def test_a_small_blocks_first_read_requests_no_chunk_again(
    tmp_path, store, s3_bucket, serve_http, http_server
):
    # Block files of about 50 KB: the bytes fetched for the index hold the whole file, so its
    # chunks are read from them. In the opening process (S3: the listed size) that is one GET;
    # without a size, the head and the tail (in flight together).
    data = _movie(tmp_path / "m", n_blocks=3)
    size = (tmp_path / "m" / "0001.h5").stat().st_size
    assert size < _INDEX
    ds, log = _opened_on(store, tmp_path / "m", s3_bucket, serve_http, http_server)
    log.clear()
    np.testing.assert_array_equal(ds[2:4], data[2:4])
    ranges = sorted(r.range for r in log.requests if r.method == "GET")
    assert [r.method for r in log.requests] == ["GET"] * len(ranges), log.requests
    assert all(r.path.endswith("/0001.h5") for r in log.requests), log.requests
    if store == "s3":
        assert ranges == [f"bytes=0-{size - 1}"]
    else:
        assert ranges == [f"bytes=-{_INDEX}", f"bytes=0-{_INDEX - 1}"]
    _forget_chunk_maps_and_sizes()
    log.clear()
    np.testing.assert_array_equal(ds[5, 1], data[5, 1])
    assert sorted(r.range for r in log.requests) == [f"bytes=-{_INDEX}", f"bytes=0-{_INDEX - 1}"]


@pytest.mark.parametrize("size_known", [True, False], ids=["size-known", "size-unknown"])
def test_an_empty_block_file_is_an_error_naming_it(tmp_path, s3_bucket, size_known):
    data = _movie(tmp_path / "m", n_blocks=3)
    (tmp_path / "m" / "0001.h5").write_bytes(b"")
    url = s3_bucket.upload(tmp_path / "m", "m")
    ds = sd.SplitDataset(url, storage_options=s3_bucket.storage_options)
    np.testing.assert_array_equal(ds[0], data[0])
    if not size_known:
        _forget_chunk_maps_and_sizes()
    with pytest.raises(sd.BlockError, match=r"0001\.h5") as raised:
        ds[2]
    assert "\n" not in str(raised.value), raised.value
