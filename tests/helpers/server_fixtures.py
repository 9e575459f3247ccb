"""Fixtures of the object stores on 127.0.0.1 (tests/helpers/servers.py), a pytest plugin.

- ``s3_server`` (session): the :class:`~tests.helpers.servers.S3Server`.
- ``s3_bucket`` (function): a fresh, empty bucket on it, as an :class:`S3Bucket`.
- ``http_server`` (session): the :class:`~tests.helpers.servers.HTTPRangeServer`.
- ``serve_http`` (function): ``serve_http(folder) -> url``, the folder served read-only.

The function-scoped ones start with an empty request log and no delay, and put both back
afterwards; they also clear the environment of whatever could send a client elsewhere than
127.0.0.1 (AWS variables, the AWS config and credentials files, proxies). Every test that uses
one of them must carry the ``network`` marker (tests/conftest.py checks it, and lists
them: a new server fixture goes there too).

Example::

    @pytest.mark.network
    def test_reads_remotely(s3_bucket, serve_http, tmp_path, write_plain):
        write_plain(tmp_path / "ds", array, (10, None, None))
        url = s3_bucket.upload(tmp_path / "ds", "ds")  # "s3://BUCKET/ds"; log cleared
        ...  # open url with storage_options=s3_bucket.storage_options
        gets = s3_bucket.log.of("GET")  # Request records: method, path, range, ...
        base = serve_http(tmp_path / "ds")  # "http://127.0.0.1:PORT/NAME"
        ...  # open base + "/0000.h5", or the folder URL base
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.servers import HTTPRangeServer, RequestLog, S3Server, upload_folder

__all__ = ["S3Bucket", "isolate_environment"]

_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")

_serial = itertools.count()


def isolate_environment(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """No AWS variable, config or credentials file, nor proxy: clients reach 127.0.0.1 only."""
    for name in list(os.environ):
        if name.upper().startswith("AWS_") or name.upper() in _PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


def _fresh(log: RequestLog) -> None:
    log.clear()
    log.delay = 0.0


@dataclass
class S3Bucket:
    """A bucket of the test's own on the S3 server.

    Attributes
    ----------
    name : str
        The bucket's name.
    url : str
        ``s3://name``.
    storage_options : dict
        Options for s3fs / ``fsspec.open(url, **storage_options)`` that reach the server.
    fs : s3fs.S3FileSystem
        A filesystem of its own (not fsspec's cached instance) on the server.
    log : RequestLog
        The server's request log (cleared once the bucket exists).
    """

    name: str
    url: str
    storage_options: dict[str, Any]
    fs: Any
    log: RequestLog

    def upload(self, local: Path | str, prefix: str = "") -> str:
        """Upload a local folder's files under ``prefix``; return its URL ``s3://name/prefix``.

        Clears the request log afterwards, so that a test counts its own reads only.
        """
        remote = f"{self.name}/{prefix.strip('/')}".rstrip("/")
        upload_folder(self.fs, local, remote)
        self.fs.invalidate_cache()
        self.log.clear()
        return f"s3://{remote}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 API on 127.0.0.1 for the whole session, recording every request."""
    server = S3Server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Bucket]:
    """A fresh, empty bucket; the request log is empty and the delay 0 when the test starts."""
    isolate_environment(monkeypatch, tmp_path_factory.mktemp("aws-home"))
    name = f"splitds-{os.getpid()}-{next(_serial)}"
    fs = s3_server.filesystem()
    fs.mkdir(name)
    _fresh(s3_server.log)
    yield S3Bucket(
        name=name,
        url=f"s3://{name}",
        storage_options=s3_server.storage_options(),
        fs=fs,
        log=s3_server.log,
    )
    _fresh(s3_server.log)
    with contextlib.suppress(FileNotFoundError):  # unless the test removed it
        fs.rm(name, recursive=True)  # the objects live in the server's memory until removed
    s3_server.log.clear()


@pytest.fixture(scope="session")
def http_server() -> Iterator[HTTPRangeServer]:
    """The read-only HTTP object server on 127.0.0.1 for the whole session."""
    server = HTTPRangeServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def serve_http(
    http_server: HTTPRangeServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[Path | str], str]]:
    """``serve_http(folder) -> url``: the folder served read-only (``url + "/0000.h5"``, ...)
    until the test ends. The request log is empty and the delay 0 when the test starts."""
    isolate_environment(monkeypatch, tmp_path_factory.mktemp("aws-home"))
    names: list[str] = []

    def serve(folder: Path | str) -> str:
        names.append(f"d{os.getpid()}-{next(_serial)}")
        return http_server.mount(names[-1], folder)

    _fresh(http_server.log)
    yield serve
    for name in names:
        http_server.unmount(name)
    _fresh(http_server.log)
