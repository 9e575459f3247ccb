"""The object stores on 127.0.0.1 that the remote-storage tests read from (tests/helpers/servers.py).

The HTTP server's byte ranges are checked against Python slicing of the file's bytes, through a
raw ``http.client`` connection (which sends paths as given, ``..`` included); fsspec's and s3fs's
requests are counted in the servers' own logs.
"""

from __future__ import annotations

import dataclasses
import email.utils
import http.client
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.server_fixtures import S3Bucket
from tests.helpers.servers import HTTPRangeServer, Request, S3Server

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

pytestmark = pytest.mark.network

SIZE = 1000


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    url_root: str, method: str, path: str, headers: dict[str, str] | None = None
) -> Answer:
    """One request with the path sent exactly as given (no client-side normalisation)."""
    host, port = url_root.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return Answer(response.status, dict(response.getheaders()), body)
    finally:
        connection.close()


@pytest.fixture
def data_folder(tmp_path: Path) -> tuple[Path, bytes]:
    """A folder with a 1000-byte file ``a.bin`` of distinct-ish bytes, an empty file and a
    subfolder; a secret file beside the folder (outside what is served)."""
    folder = tmp_path / "served"
    (folder / "sub").mkdir(parents=True)
    data = os.urandom(SIZE)
    (folder / "a.bin").write_bytes(data)
    (folder / "empty.bin").write_bytes(b"")
    (folder / "sub" / "b.bin").write_bytes(b"inner")
    (tmp_path / "secret.bin").write_bytes(b"secret")
    (tmp_path / "served-sibling").mkdir()
    (tmp_path / "served-sibling" / "c.bin").write_bytes(b"sibling")
    return folder, data


class ServedFile(NamedTuple):
    """``a.bin`` of :func:`data_folder`, served over HTTP."""

    url: str
    path: str
    """The URL's path on the server (what its log records)."""
    data: bytes
    file: Path


@pytest.fixture
def served_file(
    http_server: HTTPRangeServer, serve_http: Callable[[Path], str], data_folder: tuple[Path, bytes]
) -> ServedFile:
    folder, data = data_folder
    url = serve_http(folder) + "/a.bin"
    return ServedFile(url, url.removeprefix(http_server.url), data, folder / "a.bin")


def expected_range(header: str, size: int) -> tuple[int, slice | None]:
    """Status and slice of a single ``bytes=`` range, by RFC 9110's rules (Python slicing)."""
    first, last = header.removeprefix("bytes=").split("-")
    if first == "":
        n = int(last)
        return (416, None) if n == 0 or size == 0 else (206, slice(-n, None))
    start = int(first)
    if start >= size:
        return 416, None
    return 206, slice(start, None if last == "" else int(last) + 1)


# ---------------------------------------------------------------------------------------------
# HTTP: byte ranges, HEAD, 404


ranges = st.one_of(
    st.tuples(st.integers(0, SIZE + 20), st.integers(0, 3 * SIZE)).map(
        lambda t: f"bytes={t[0]}-{t[0] + t[1]}"
    ),
    st.integers(0, SIZE + 20).map(lambda a: f"bytes={a}-"),
    st.integers(0, SIZE + 20).map(lambda n: f"bytes=-{n}"),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(header=ranges)
def test_a_range_answers_the_slice_of_the_file(
    http_server: HTTPRangeServer, served_file: ServedFile, header: str
) -> None:
    path, data = served_file.path, served_file.data
    http_server.log.clear()
    answer = raw_request(http_server.url, "GET", path, {"Range": header})
    status, part = expected_range(header, len(data))
    assert answer.status == status
    if part is None:
        assert answer.body == b""
        assert answer.headers["Content-Range"] == f"bytes */{len(data)}"
    else:
        body = data[part]
        start = part.indices(len(data))[0]
        assert answer.body == body
        assert answer.headers["Content-Length"] == str(len(body))
        assert answer.headers["Content-Range"] == f"bytes {start}-{start + len(body) - 1}/{SIZE}"
    # in_flight left out: the previous example's answer may still be finishing.
    [request] = http_server.log.requests
    assert dataclasses.replace(request, in_flight=1) == Request(
        "GET", path, "", header, status, len(answer.body), 0.0, 1
    )


@pytest.mark.parametrize(
    ("name", "header"),
    [("a.bin", f"bytes={SIZE}-"), ("a.bin", f"bytes={SIZE}-{SIZE + 5}"), ("a.bin", "bytes=-0"),
     ("empty.bin", "bytes=0-"), ("empty.bin", "bytes=-1")],
)  # fmt: skip
def test_an_unsatisfiable_range_is_416(
    http_server: HTTPRangeServer,
    serve_http: Callable[[Path], str],
    data_folder: tuple[Path, bytes],
    name: str,
    header: str,
) -> None:
    folder, _ = data_folder
    path = serve_http(folder).removeprefix(http_server.url) + f"/{name}"
    answer = raw_request(http_server.url, "GET", path, {"Range": header})
    size = (folder / name).stat().st_size
    assert (answer.status, answer.body) == (416, b"")
    assert answer.headers["Content-Range"] == f"bytes */{size}"
    assert [(r.status, r.range) for r in http_server.log.requests] == [(416, header)]


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-6", "bytes=5-3", "items=0-5", "bytes=-", "bytes=a-b"]
)
def test_several_ranges_or_an_invalid_one_get_the_whole_file(
    http_server: HTTPRangeServer, served_file: ServedFile, header: str
) -> None:
    answer = raw_request(http_server.url, "GET", served_file.path, {"Range": header})
    assert (answer.status, answer.body) == (200, served_file.data)
    assert "Content-Range" not in answer.headers
    assert [(r.status, r.range, r.body_bytes) for r in http_server.log.requests] == [
        (200, header, SIZE)
    ]


def test_head_tells_size_etag_and_date_without_a_body(
    http_server: HTTPRangeServer, served_file: ServedFile
) -> None:
    path = served_file.path
    first = raw_request(http_server.url, "HEAD", path)
    assert first.status == 200
    assert first.body == b""
    assert first.headers["Content-Length"] == str(SIZE)
    assert first.headers["Accept-Ranges"] == "bytes"
    modified = email.utils.parsedate_to_datetime(first.headers["Last-Modified"]).timestamp()
    assert modified == int(served_file.file.stat().st_mtime)
    # A HEAD with a range tells the range's length; a file that changed has another ETag.
    ranged = raw_request(http_server.url, "HEAD", path, {"Range": "bytes=10-19"})
    assert (ranged.status, ranged.headers["Content-Length"], ranged.body) == (206, "10", b"")
    assert ranged.headers["ETag"] == first.headers["ETag"]
    served_file.file.write_bytes(b"shorter")
    again = raw_request(http_server.url, "HEAD", path)
    assert again.headers["Content-Length"] == "7"
    assert again.headers["ETag"] != first.headers["ETag"]
    assert [(r.method, r.status, r.body_bytes) for r in http_server.log.requests] == [
        ("HEAD", 200, 0),
        ("HEAD", 206, 0),
        ("HEAD", 200, 0),
    ]


def test_folders_missing_files_and_escapes_are_404(
    http_server: HTTPRangeServer, serve_http: Callable[[Path], str], data_folder: tuple[Path, bytes]
) -> None:
    folder, _ = data_folder
    (folder / "out").symlink_to(folder.parent / "secret.bin")
    name = serve_http(folder).removeprefix(http_server.url)
    sub = raw_request(http_server.url, "GET", f"{name}/sub/b.bin")
    assert (sub.status, sub.body) == (200, b"inner")
    paths = [
        f"{name}",
        f"{name}/",
        f"{name}/sub",
        f"{name}/sub/",
        f"{name}/missing.bin",
        f"{name}/../secret.bin",
        f"{name}/sub/../../secret.bin",
        f"{name}/%2e%2e/secret.bin",
        f"{name}/..%2fsecret.bin",
        f"{name}/../served-sibling/c.bin",
        f"{name}/out",
        "/not-mounted/a.bin",
        "/",
    ]
    for path in paths:
        for method in ("GET", "HEAD"):
            answer = raw_request(http_server.url, method, path)
            assert (answer.status, answer.body) == (404, b""), (method, path)
    assert [r.status for r in http_server.log.requests] == [200] + [404] * 2 * len(paths)


def test_a_folder_is_served_until_the_test_ends(
    http_server: HTTPRangeServer, tmp_path: Path
) -> None:
    (tmp_path / "x.bin").write_bytes(b"x")
    url = http_server.mount("private-mount", tmp_path)
    path = url.removeprefix(http_server.url) + "/x.bin"
    try:
        assert raw_request(http_server.url, "GET", path).body == b"x"
    finally:
        http_server.unmount("private-mount")
    assert raw_request(http_server.url, "GET", path).status == 404
    with pytest.raises(ValueError, match="not a mount name"):
        http_server.mount("a/b", tmp_path)
    with pytest.raises(NotADirectoryError, match=r"x\.bin"):
        http_server.mount("file", tmp_path / "x.bin")


def test_a_client_hanging_up_mid_body_is_no_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Larger than what the sockets buffer, so that the server is still writing when it goes.
    (tmp_path / "big.bin").write_bytes(bytes(32 << 20))
    server = HTTPRangeServer()
    try:
        path = server.mount("m", tmp_path).removeprefix(server.url) + "/big.bin"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        assert (response.status, response.read(10)) == (200, bytes(10))
        connection.close()
        assert raw_request(server.url, "GET", path, {"Range": "bytes=0-9"}).body == bytes(10)
    finally:
        server.close()  # joins the threads: the first one has met the hang-up by now
    assert [(r.status, r.body_bytes) for r in server.log.requests] == [(200, 32 << 20), (206, 10)]
    assert capsys.readouterr().err == ""


def test_the_delay_is_slept_and_recorded(
    http_server: HTTPRangeServer, served_file: ServedFile
) -> None:
    path = served_file.path
    http_server.log.delay = 0.02
    raw_request(http_server.url, "HEAD", path)
    http_server.log.delay = 0.0
    raw_request(http_server.url, "HEAD", path)
    assert [r.delay for r in http_server.log.requests] == [0.02, 0.0]


# ---------------------------------------------------------------------------------------------
# HTTP: what fsspec's HTTPFileSystem asks


@pytest.fixture
def http_fs() -> Any:
    return fsspec.filesystem("http", skip_instance_cache=True)


def test_fsspec_http_cat_file_is_one_ranged_get(
    http_server: HTTPRangeServer, served_file: ServedFile, http_fs: Any
) -> None:
    url, data = served_file.url, served_file.data
    path = url.removeprefix(http_server.url)
    assert http_fs.cat_file(url, 10, 20) == data[10:20]
    assert http_server.log.requests == [Request("GET", path, "", "bytes=10-19", 206, 10, 0.0, 1)]


def test_fsspec_http_cat_ranges_is_one_get_per_range(
    http_server: HTTPRangeServer, served_file: ServedFile, http_fs: Any
) -> None:
    url, data = served_file.url, served_file.data
    starts, ends = [0, 100, 500, 990], [10, 300, 501, 1000]
    assert http_fs.cat_ranges([url] * 4, starts, ends) == [
        data[a:b] for a, b in zip(starts, ends, strict=True)
    ]
    requests = http_server.log.requests
    assert all((r.method, r.status) == ("GET", 206) for r in requests)
    assert sorted(str(r.range) for r in requests) == sorted(
        f"bytes={a}-{b - 1}" for a, b in zip(starts, ends, strict=True)
    )


def test_fsspec_http_cat_ranges_are_all_in_flight_at_once(
    http_server: HTTPRangeServer, served_file: ServedFile, http_fs: Any
) -> None:
    # The delay holds each answer long enough for every request of the burst to arrive; a
    # backlog too small for the burst (socketserver's default of 5) drops connections, which
    # the client retries only later, so that fewer are in flight at once.
    url, data = served_file.url, served_file.data
    http_server.log.delay = 0.5
    starts = list(range(0, 960, 30))
    assert http_fs.cat_ranges([url] * 32, starts, [a + 5 for a in starts]) == [
        data[a : a + 5] for a in starts
    ]
    requests = http_server.log.requests
    assert len(requests) == 32
    assert max(r.in_flight for r in requests) == 32


def test_fsspec_http_info_is_one_head_and_open_reads_ranges(
    http_server: HTTPRangeServer, served_file: ServedFile, http_fs: Any
) -> None:
    url, data = served_file.url, served_file.data
    assert http_fs.info(url)["size"] == SIZE
    assert [(r.method, r.range) for r in http_server.log.requests] == [("HEAD", None)]
    http_server.log.clear()
    with http_fs.open(url, block_size=64) as f:
        f.seek(500)
        assert f.read(10) == data[500:510]
        f.seek(900)
        assert f.read(20) == data[900:920]
    requests = http_server.log.requests
    assert [r.method for r in requests] == ["HEAD", "GET", "GET"]
    assert all(r.status == 206 and r.range is not None for r in requests[1:])
    assert sum(r.body_bytes for r in requests) < 300


def test_fsspec_http_cannot_list_a_folder(
    http_server: HTTPRangeServer,
    serve_http: Callable[[Path], str],
    data_folder: tuple[Path, bytes],
    http_fs: Any,
) -> None:
    folder, _ = data_folder
    url = serve_http(folder)
    with pytest.raises(FileNotFoundError):
        http_fs.ls(url + "/")
    assert {r.status for r in http_server.log.requests} == {404}


# ---------------------------------------------------------------------------------------------
# S3


def test_s3_put_get_and_list(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    local = tmp_path / "ds"
    (local / "sub").mkdir(parents=True)
    files = {"0000.h5": os.urandom(300), "stack_metadata.json": b"{}", "sub/x": b"x"}
    for name, content in files.items():
        (local / name).write_bytes(content)
    url = s3_bucket.upload(local, "deep/ds")
    assert url == f"s3://{s3_bucket.name}/deep/ds"
    assert s3_bucket.log.requests == []
    fs = s3_bucket.fs
    assert sorted(fs.find(url)) == sorted(f"{s3_bucket.name}/deep/ds/{n}" for n in files)
    fs.invalidate_cache()  # s3fs 2024.6 lists "sub" twice from what find() cached
    assert sorted(fs.ls(url, detail=False)) == sorted(
        f"{s3_bucket.name}/deep/ds/{n}" for n in ("0000.h5", "stack_metadata.json", "sub")
    )
    for name, content in files.items():
        with fsspec.open(f"{url}/{name}", "rb", **s3_bucket.storage_options) as f:
            assert f.read() == content
    assert {r.path.split("/")[1] for r in s3_bucket.log.requests} == {s3_bucket.name}


def test_s3_range_get_is_one_request_with_the_range(s3_bucket: S3Bucket) -> None:
    data = os.urandom(SIZE)
    key = f"{s3_bucket.name}/a.bin"
    s3_bucket.fs.pipe_file(key, data)
    s3_bucket.log.clear()
    assert s3_bucket.fs.cat_file(key, start=10, end=20) == data[10:20]
    assert s3_bucket.log.requests == [Request("GET", f"/{key}", "", "bytes=10-19", 206, 10, 0.0, 1)]


def test_s3_info_cat_ranges_and_open_requests(s3_bucket: S3Bucket) -> None:
    data = os.urandom(SIZE)
    key = f"{s3_bucket.name}/a.bin"
    s3_bucket.fs.pipe_file(key, data)
    fs = s3_bucket.fs
    fs.invalidate_cache()
    s3_bucket.log.clear()
    assert fs.info(key)["size"] == SIZE
    assert [(r.method, r.path) for r in s3_bucket.log.requests] == [("HEAD", f"/{key}")]
    s3_bucket.log.clear()
    starts, ends = [0, 100, 990], [10, 300, 1000]
    assert fs.cat_ranges([key] * 3, starts, ends) == [
        data[a:b] for a, b in zip(starts, ends, strict=True)
    ]
    assert sorted((r.method, r.status, r.range) for r in s3_bucket.log.requests) == sorted(
        ("GET", 206, f"bytes={a}-{b - 1}") for a, b in zip(starts, ends, strict=True)
    )
    fs.invalidate_cache()
    s3_bucket.log.clear()
    with fs.open(key, block_size=64) as f:
        f.seek(500)
        assert f.read(10) == data[500:510]
    assert [(r.method, r.status) for r in s3_bucket.log.requests] == [("HEAD", 200), ("GET", 206)]


def test_s3_delay_is_recorded(s3_bucket: S3Bucket) -> None:
    s3_bucket.log.delay = 0.02
    s3_bucket.fs.pipe_file(f"{s3_bucket.name}/x", b"x")
    assert {r.delay for r in s3_bucket.log.requests} == {0.02}


@pytest.fixture
def hostile_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings that would send an S3 client elsewhere (all to 127.0.0.1's closed port 9, or to
    nothing at all), set before the server fixtures run: those must clear them."""
    config = tmp_path / "aws-config"
    config.write_text("[default]\nendpoint_url = http://127.0.0.1:9\nregion = mars-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")


def test_s3_clients_ignore_the_environment(hostile_environment: None, s3_bucket: S3Bucket) -> None:
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **s3_bucket.storage_options)
    fs.pipe_file(f"{s3_bucket.name}/x", b"x")
    assert fs.cat_file(f"{s3_bucket.name}/x", start=0, end=1) == b"x"
    assert [r.method for r in s3_bucket.log.requests] == ["PUT", "GET"]


# ---------------------------------------------------------------------------------------------
# Shutdown


def test_closing_the_http_server_ends_its_threads_despite_open_connections(
    tmp_path: Path,
) -> None:
    (tmp_path / "x.bin").write_bytes(b"x")
    before = set(threading.enumerate())
    server = HTTPRangeServer()
    path = server.mount("m", tmp_path).removeprefix(server.url) + "/x.bin"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("GET", path)
        assert connection.getresponse().read() == b"x"  # the connection stays open (keep-alive)
        assert len(set(threading.enumerate()) - before) == 2  # serving, and the connection's
        server.close()
        assert set(threading.enumerate()) - before == set()
    finally:
        connection.close()


def test_closing_the_s3_server_ends_its_threads_despite_open_connections() -> None:
    # werkzeug closes each connection after its answer, so the open one here is a client that
    # has sent nothing yet: its handler thread waits for a request line.
    before = set(threading.enumerate())
    server = S3Server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        for _ in range(1000):  # until the server has accepted it (at most about 10 s)
            if len(set(threading.enumerate()) - before) == 2:  # serving, and the connection's
                break
            time.sleep(0.01)
        assert len(set(threading.enumerate()) - before) == 2
        server.close()
        assert set(threading.enumerate()) - before == set()
        assert client.recv(1) == b""  # the server closed it
