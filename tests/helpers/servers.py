"""Object stores on 127.0.0.1 for the remote-storage tests, each counting what it is asked.

Two servers, both started in a thread of the test process and both bound to 127.0.0.1 only:

- :class:`S3Server`: the S3 API of moto's server mode (its WSGI application, served by
  werkzeug's threaded server), wrapped in a middleware that records every request.
- :class:`HTTPRangeServer`: a read-only file server on the standard library's
  ``ThreadingHTTPServer`` that answers single byte ranges (``Range: bytes=a-b``, ``a-``, ``-n``)
  like an object store: no directory listings, so a reader cannot lean on them.

Each keeps a :class:`RequestLog` of :class:`Request` records (method, path, query, Range header,
status, body bytes, delay, requests in flight) written *before* the answer goes out, so a client
that has its answer finds its request in the log. ``delay`` (seconds, default 0) is slept before each answer, to
stand in for a real store's latency in benchmarks; each record says how long it was delayed.
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import socket
import socketserver
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "ACCESS_KEY",
    "Arrival",
    "HOST",
    "SECRET_KEY",
    "HTTPRangeServer",
    "Request",
    "RequestLog",
    "S3Server",
    "ByteRange",
    "parse_range",
    "upload_folder",
]

HOST = "127.0.0.1"
# Credentials moto accepts (it checks none); the tests never hold real ones.
ACCESS_KEY = "splitds-test-key"
SECRET_KEY = "splitds-test-secret"

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Request:
    """One request a server answered.

    Attributes
    ----------
    method : str
        ``GET``, ``HEAD``, ``PUT``, ...
    path : str
        The URL path, percent-decoded, without the query (for S3: ``/bucket/key``).
    query : str
        The raw query string ("" when none).
    range : str or None
        The ``Range`` header as sent, or None.
    status : int
        The status code of the answer.
    body_bytes : int
        Bytes of body the answer announced (its ``Content-Length``; 0 for HEAD): a client that
        hangs up early receives fewer.
    delay : float
        Seconds slept before answering.
    in_flight : int
        Requests the server was answering when this one arrived, itself included: how many a
        client keeps in flight at once. (Answering ends when the HTTP server has sent the body,
        and when moto has made its answer, before werkzeug sends it.)
    """

    method: str
    path: str
    query: str
    range: str | None
    status: int
    body_bytes: int
    delay: float
    in_flight: int


class Arrival(NamedTuple):
    """What a request met on arrival: the delay it sleeps, and how many requests (itself
    included) the server was answering at once."""

    delay: float
    in_flight: int


class RequestLog:
    """Thread-safe list of the :class:`Request` records of one server, plus its delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []
        self._in_flight = 0
        self.delay = 0.0

    @contextlib.contextmanager
    def arrival(self) -> Iterator[Arrival]:
        """Count a request in flight while it is answered; sleep the delay first.

        The delay is read once, so that the record tells what was slept.
        """
        with self._lock:
            self._in_flight += 1
            in_flight = self._in_flight
        try:
            delay = self.delay
            if delay > 0:
                time.sleep(delay)
            yield Arrival(delay=delay, in_flight=in_flight)
        finally:
            with self._lock:
                self._in_flight -= 1

    def add(self, request: Request) -> None:
        """Append one record."""
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[Request]:
        """A copy of the records so far, in the order the answers started."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget the records so far."""
        with self._lock:
            self._requests.clear()

    def of(self, method: str | None = None, path: str | None = None) -> list[Request]:
        """The records with this method and/or path."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]


class _ClosesConnections(socketserver.ThreadingMixIn):
    """A threading server that can end the threads of its open connections.

    A keep-alive connection, or a client that has not finished its request, keeps its handler
    thread reading: :meth:`close_connections` shuts those sockets, which ends the reads, and
    joins the threads.
    """

    daemon_threads = True  # never keeps the interpreter alive, whatever happens

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._handlers: dict[threading.Thread, socket.socket] = {}
        self._handlers_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered before it starts, so that close_connections cannot miss a starting thread.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"connection-{client_address[1]}",
            daemon=True,
        )
        with self._handlers_lock:
            self._handlers[thread] = request
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._handlers_lock:
                self._handlers.pop(threading.current_thread(), None)

    def close_connections(self, *, timeout: float = 30.0) -> None:
        """Shut every open connection and join its thread (RuntimeError past ``timeout``)."""
        with self._handlers_lock:
            handlers = dict(self._handlers)
        for connection in handlers.values():
            with contextlib.suppress(OSError):  # already closed by its handler
                connection.shutdown(socket.SHUT_RDWR)
        for thread in handlers:
            thread.join(timeout)
        alive = [thread.name for thread in handlers if thread.is_alive()]
        if alive:
            raise RuntimeError(
                f"threads still serving {timeout} s after their sockets shut: {alive}"
            )


class _ServerThread:
    """A socketserver served by one thread; :meth:`close` stops it and joins every thread."""

    def __init__(self, server: socketserver.BaseServer, name: str) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        if isinstance(self._server, _ClosesConnections):
            self._server.close_connections()


# --------------------------------------------------------------------------------------------
# S3: moto's WSGI application behind a recording middleware


class _Recorder:
    """WSGI middleware: sleep the delay, then record each request when its answer starts."""

    def __init__(self, app: Callable[..., Iterable[bytes]], log: RequestLog) -> None:
        self._app = app
        self._log = log

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        with self._log.arrival() as arrival:
            return self._app(environ, self._recording(environ, start_response, arrival))

    def _recording(
        self, environ: dict[str, Any], start_response: Callable[..., Any], arrival: Arrival
    ) -> Callable[..., Any]:
        method = environ["REQUEST_METHOD"]

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], *args: Any
        ) -> Any:
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            self._log.add(
                Request(
                    method=method,
                    path=_wsgi_path(environ),
                    query=environ.get("QUERY_STRING", ""),
                    range=environ.get("HTTP_RANGE"),
                    status=int(status.split()[0]),
                    body_bytes=0 if method == "HEAD" else length,
                    delay=arrival.delay,
                    in_flight=arrival.in_flight,
                )
            )
            return start_response(status, headers, *args)

        return recording_start_response


def _wsgi_path(environ: dict[str, Any]) -> str:
    """The decoded URL path of a WSGI request (PEP 3333 carries it as latin-1 text)."""
    raw = environ.get("PATH_INFO", "")
    return raw.encode("latin-1").decode("utf-8", "replace")


class S3Server:
    """moto's S3 API on 127.0.0.1 (a free port), recording every request.

    Parameters
    ----------
    port : int
        0 (the default) for a free port.

    Attributes
    ----------
    endpoint_url : str
        ``http://127.0.0.1:PORT``.
    log : RequestLog
        The requests answered; set ``log.delay`` to delay each answer.
    """

    def __init__(self, *, port: int = 0) -> None:
        # Imported here: moto is a test dependency that only these servers need.
        import moto.server
        from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

        # moto's own handler keeps underscores in S3 metadata headers (werkzeug's drops them).
        handler_base: type[WSGIRequestHandler] = getattr(
            moto.server, "MotoRequestHandler", WSGIRequestHandler
        )

        class QuietHandler(handler_base):  # type: ignore[misc,valid-type]
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # the RequestLog records requests; werkzeug's line per request is noise

        class Server(_ClosesConnections, ThreadedWSGIServer):
            pass

        self.log = RequestLog()
        app = _Recorder(
            moto.server.DomainDispatcherApplication(moto.server.create_backend_app), self.log
        )
        self._server = Server(HOST, port, app, handler=QuietHandler)
        self.port: int = self._server.server_address[1]
        self.endpoint_url = f"http://{HOST}:{self.port}"
        self._thread = _ServerThread(self._server, name=f"s3-server-{self.port}")

    def storage_options(self) -> dict[str, Any]:
        """Options for ``s3fs.S3FileSystem`` (and fsspec URLs) that reach this server only."""
        return {
            "key": ACCESS_KEY,
            "secret": SECRET_KEY,
            "client_kwargs": {"endpoint_url": self.endpoint_url},
        }

    def filesystem(self) -> Any:
        """A new (uncached) ``s3fs.S3FileSystem`` on this server."""
        import s3fs  # type: ignore[import-untyped]

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options())

    def close(self) -> None:
        """Stop serving and join every thread of the server."""
        self._thread.close()


def upload_folder(fs: Any, local: Path | str, remote: str) -> list[str]:
    """Upload the files of a local folder (a split dataset) under ``remote`` (``bucket/prefix``).

    Returns the uploaded keys (``bucket/prefix/name``), sorted. Subfolders are uploaded too.
    """
    local = Path(local)
    if not local.is_dir():
        raise NotADirectoryError(f"{local}: not a folder to upload")
    remote = remote.removeprefix("s3://").rstrip("/")
    # A trailing separator on the source puts its contents (not the folder) under ``remote``.
    fs.put(f"{local}{os.sep}", remote, recursive=True)
    return sorted(
        f"{remote}/{p.relative_to(local).as_posix()}" for p in local.rglob("*") if p.is_file()
    )


# --------------------------------------------------------------------------------------------
# HTTP: a read-only object server with byte ranges


@dataclass(frozen=True)
class ByteRange:
    """Satisfiable byte range: ``start`` to ``stop`` (exclusive), within a file of ``size``."""

    start: int
    stop: int
    size: int

    @property
    def content_range(self) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{self.size}"


class Unsatisfiable(Exception):
    """A single byte range that selects nothing of the file (answered 416)."""


_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The byte range that a ``Range`` header selects from a file of ``size`` bytes.

    None means "send the whole file with 200": no header, a header that is not one valid
    ``bytes=`` range (ignored, as RFC 9110 allows), or a list of several ranges (ignored, as S3
    does). Raises :class:`Unsatisfiable` for a valid single range that selects no byte.
    """
    if header is None:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(0, size - n), size, size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable(header)
    stop = size if last == "" else min(size, int(last) + 1)
    return ByteRange(start, stop, size)


class _RangeHandler(BaseHTTPRequestHandler):
    """GET and HEAD of the files under the server's mounts; single byte ranges."""

    protocol_version = "HTTP/1.1"  # keep-alive, as clients of object stores expect
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the RequestLog records requests; a line per request on stderr is noise

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _answer(self, *, head: bool) -> None:
        with self.server.log.arrival() as arrival:
            self._answer_arrived(arrival, head=head)

    def _answer_arrived(self, arrival: Arrival, *, head: bool) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        range_header = self.headers.get("Range")

        def record(status: int, body_bytes: int) -> None:
            self.server.log.add(
                Request(
                    method=self.command,
                    path=path,
                    query=split.query,
                    range=range_header,
                    status=int(status),
                    body_bytes=0 if head else body_bytes,
                    delay=arrival.delay,
                    in_flight=arrival.in_flight,
                )
            )

        file = self.server.resolve(path)
        if file is None:
            record(404, 0)
            self._send_empty(HTTPStatus.NOT_FOUND)
            return
        stat = file.stat()
        size = stat.st_size
        try:
            selected = parse_range(range_header, size)
        except Unsatisfiable:
            record(416, 0)
            self._send_empty(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, {"Content-Range": f"bytes */{size}"}
            )
            return
        start, stop = (0, size) if selected is None else (selected.start, selected.stop)
        status = HTTPStatus.OK if selected is None else HTTPStatus.PARTIAL_CONTENT
        record(int(status), stop - start)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(stop - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{size:x}-{stat.st_mtime_ns:x}"')
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        if selected is not None:
            self.send_header("Content-Range", selected.content_range)
        self.end_headers()
        if head:
            return
        with open(file, "rb") as fh:
            fh.seek(start)
            remaining = stop - start
            try:
                while remaining:
                    data = fh.read(min(_CHUNK, remaining))
                    if not data:  # the file shrank meanwhile: the client sees a short body
                        self.close_connection = True
                        break
                    self.wfile.write(data)
                    remaining -= len(data)
            except (BrokenPipeError, ConnectionResetError):
                # The client hung up before the end (fsspec's exists() reads only the headers
                # of a GET): not the server's error, and no traceback on stderr.
                self.close_connection = True

    def _send_empty(self, status: HTTPStatus, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _HTTPServer(_ClosesConnections, ThreadingHTTPServer):
    """The HTTP server with its mounts (name -> folder) and its request log."""

    # socketserver's default backlog of 5 drops the connections of a burst of parallel
    # requests (fsspec's cat_ranges), which the clients retry only after a second.
    request_queue_size = 128

    def __init__(self, port: int) -> None:
        self.log = RequestLog()
        self.mounts: dict[str, Path] = {}
        self.mounts_lock = threading.Lock()
        super().__init__((HOST, port), _RangeHandler)

    def resolve(self, url_path: str) -> Path | None:
        """The regular file that a decoded URL path names, or None (missing, a folder, or
        outside its mount's folder)."""
        name, _, rest = url_path.lstrip("/").partition("/")
        with self.mounts_lock:
            root = self.mounts.get(name)
        if root is None or not rest:
            return None
        candidate = (root / rest).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate


class HTTPRangeServer:
    """A read-only HTTP object server on 127.0.0.1 (a free port), recording every request.

    Folders are served under a name each (:meth:`mount`): ``http://127.0.0.1:PORT/NAME/FILE``.
    Only regular files inside a mounted folder are served; a folder, a missing file or a path
    that leaves the folder (``..``, a symbolic link out) is 404. A single byte range is
    answered 206 with ``Content-Range``; an unsatisfiable one 416; several ranges at once are
    ignored (200 with the whole file, as S3 does).

    Parameters
    ----------
    port : int
        0 (the default) for a free port.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:PORT``.
    log : RequestLog
        The requests answered; set ``log.delay`` to delay each answer.
    """

    def __init__(self, *, port: int = 0) -> None:
        self._server = _HTTPServer(port)
        self.port: int = self._server.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self.log = self._server.log
        self._thread = _ServerThread(self._server, name=f"http-server-{self.port}")

    def mount(self, name: str, folder: Path | str) -> str:
        """Serve ``folder`` (read-only) at ``/name/``; return its URL (without a final slash)."""
        if not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"{name!r}: not a mount name (one non-empty path segment)")
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise NotADirectoryError(f"{folder}: not a folder to serve")
        with self._server.mounts_lock:
            self._server.mounts[name] = folder
        return f"{self.url}/{urllib.parse.quote(name)}"

    def unmount(self, name: str) -> None:
        """Stop serving the folder mounted at ``name``."""
        with self._server.mounts_lock:
            self._server.mounts.pop(name, None)

    def close(self) -> None:
        """Stop serving and join every thread of the server."""
        self._thread.close()
