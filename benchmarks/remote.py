"""Reading a split dataset from S3 against its peers: zarr 3 and h5py over fsspec files.

The S3 server (moto, tests/helpers/servers.py) runs on 127.0.0.1 in a process of its own, so
that its CPU work does not share the GIL with the client being timed; it records every request
and can delay each answer (standing in for a real store's latency). The client asks it for its
request log and sets its delay over the server process's stdin and stdout.

One movie (t x z x y x uint16, calcium-imaging-like) is written three ways on the server:

- **ours**: ``sd.to_split_dataset(movie, "s3://...", block_shape=...)`` as the package writes
  it (Blosc lz4, byte shuffle, its default level; HDF5 chunks of about 1 MiB);
- **zarr**: zarr 3, one chunk per block, the same Blosc codec and level;
- **h5py-fsspec** reads ours' block files as a user would: ``h5py.File(fs.open(path, "rb"))``
  for each file it needs, with fsspec's default cache settings, per read (s3fs: readahead in
  blocks of 50 MiB, so its first read brings the whole block file in one request; the listing
  cache of the filesystem, filled when the files were listed, spares it a HEAD per file).

Rows: the full read ``ds[...]``; one time point ``ds[t]`` (the mean over several ``t``, one per
block), cold (ours: the process's chunk maps, the block sizes listed at opening and the
chunk-map sidecar forgotten first, as in a process that did not open the dataset, so the
block's map is fetched: the sidecar, or the block's HDF5 index where there is none), cold in
the opening process (the chunk maps forgotten; the sizes and the sidecar fetched at opening
kept) and warm; the dask mean over time (threaded scheduler), cold and warm. The peers
keep no state between reads, so their cold and warm rows are the same reads. Each call is timed
``--repeat`` times after one untimed warm-up, round-robin over ours and the peers; the table
shows the best time. Every result is checked against the movie in memory.

    python benchmarks/remote.py                       # 64 x 8 x 256 x 256 (67 MB), 0 and 20 ms
    python benchmarks/remote.py --delays 0.02 --repeat 3 --json remote.json
    python benchmarks/remote.py --delays 0.02 --bandwidth 100   # and 100 MB/s per answer
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench"
PEERS = ("ours", "zarr", "h5py-fsspec")
# The targets: our speedup over each peer (peer time / our time), on every row.
TARGETS = {"zarr": 1.0, "h5py-fsspec": 3.0}
# --wrong PEER (hidden, for tests/test_benchmarks.py): that peer's answers are changed, to show
# that the check of every result stops the run.
_WRONG: str | None = None


# --------------------------------------------------------------------------------------------
# The server process


def serve() -> int:
    """Run the S3 server; answer commands on stdin (one JSON line out per command line in)."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers.servers import S3Server

    server = S3Server()
    throttle = _Throttle(server._server.app)  # outside the recorder: its log is unchanged
    server._server.app = throttle
    print(json.dumps(server.storage_options()), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "delay":
            server.log.delay = float(argument)
            answer: Any = "ok"
        elif command == "bandwidth":
            throttle.rate = float(argument)
            answer = "ok"
        elif command == "clear":
            server.log.clear()
            answer = "ok"
        elif command == "log":
            answer = [[r.method, r.path, r.query, r.body_bytes] for r in server.log.requests]
        elif command == "quit":
            break
        else:
            answer = f"unknown command {command!r}"
        print(json.dumps(answer), flush=True)
    server.close()
    return 0


class _Throttle:
    """WSGI middleware: each answer's body waits ``len(body) / rate`` seconds before it goes out
    (``rate`` in bytes per second, 0 for none), for a store's bandwidth per connection."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self.rate = 0.0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        body = list(self._app(environ, start_response))
        if self.rate > 0:
            time.sleep(sum(len(part) for part in body) / self.rate)
        return body


@dataclass(frozen=True)
class Counts:
    """Requests one call made, by kind, and the body bytes they returned."""

    get: int
    head: int
    list: int
    bytes: int

    @property
    def total(self) -> int:
        return self.get + self.head + self.list

    def __str__(self) -> str:
        kinds = [f"{n} {k}" for k, n in (("GET", self.get), ("HEAD", self.head)) if n]
        kinds += [f"{self.list} LIST"] if self.list else []
        return f"{self.total} ({', '.join(kinds)})" if kinds else "0"


class ServerProcess:
    """The S3 server in a child process, driven over its stdin and stdout."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.storage_options: dict[str, Any] = json.loads(self._readline())

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the S3 server process ended")
        return line

    def _ask(self, command: str) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return json.loads(self._readline())

    def set_delay(self, seconds: float) -> None:
        self._ask(f"delay {seconds}")

    def clear(self) -> None:
        self._ask("clear")

    def set_bandwidth(self, mb_per_s: float) -> None:
        self._ask(f"bandwidth {mb_per_s * 1e6}")

    def counts(self) -> Counts:
        get = head = listing = size = 0
        for method, path, query, body in self._ask("log"):
            size += body
            if method == "HEAD":
                head += 1
            elif method == "GET" and ("list-type" in query or path.strip("/").count("/") == 0):
                listing += 1  # a GET of the bucket itself lists it
            elif method == "GET":
                get += 1
        return Counts(get, head, listing, size)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self._ask("quit")
        self._proc.wait(timeout=30)


def _isolate_environment() -> None:
    """Clients reach 127.0.0.1 only: no AWS variable, config file or proxy."""
    for name in list(os.environ):
        if name.upper().startswith("AWS_") or name.upper().endswith("_PROXY"):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["NO_PROXY"] = "127.0.0.1"


# --------------------------------------------------------------------------------------------
# Data


def make_movie(shape: tuple[int, int, int, int], seed: int = 0) -> np.ndarray:
    """A calcium-imaging-like movie: a smooth, dimmer-with-depth tissue background, cells that
    flicker, Poisson shot noise; uint16 around a camera offset of 100."""
    t, z, y, x = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, y), np.linspace(-1, 1, x), indexing="ij")
    tissue = np.exp(-(yy**2 + xx**2) * 1.5)
    depth = np.linspace(1.0, 0.5, z)[:, None, None]
    cells = np.zeros((z, y, x))
    n_cells = max(1, y * x // 400)
    centres = rng.integers(0, [z, y, x], size=(n_cells, 3))
    for cz, cy, cx in centres:
        cells[cz, max(0, cy - 2) : cy + 3, max(0, cx - 2) : cx + 3] += 1.0
    activity = rng.gamma(0.5, 1.0, size=(t, 1, 1, 1))
    lam = 20 + 150 * tissue * depth + 60 * cells * activity
    movie = rng.poisson(lam).astype(np.uint16)
    movie += 100
    return movie


@dataclass(frozen=True)
class Stores:
    ours: str
    zarr: str
    block_paths: list[str]  # the block files of ours, as s3fs paths
    key: str
    block_frames: int
    codec: dict[str, Any]

    @staticmethod
    def filesystem(options: dict[str, Any]) -> Any:
        """An s3fs filesystem of its own: what it lists stays out of the readers' (s3fs keeps
        listings, and answers sizes from them)."""
        import fsspec

        return fsspec.filesystem("s3", skip_instance_cache=True, **options)


def write_stores(movie: np.ndarray, block_frames: int, options: dict[str, Any]) -> Stores:
    import h5py
    import zarr
    from zarr.codecs import BloscCodec

    import splitds_dask as sd

    fs = Stores.filesystem(options)
    fs.mkdir(BUCKET)
    ours_url = f"s3://{BUCKET}/ours"
    sd.to_split_dataset(movie, ours_url, block_shape=block_frames, storage_options=options)
    block_paths = sorted(p for p in fs.ls(f"{BUCKET}/ours") if p.endswith(".h5"))
    # The codec the package wrote (HDF5 Blosc filter 32001: ..., level, shuffle, compressor).
    with fs.open(block_paths[0], "rb") as f, h5py.File(f, "r") as h:
        (key,) = list(h)
        cd_values = h[key]._filters["32001"]
    level, shuffle, compressor = cd_values[4], cd_values[5], cd_values[6]
    cname = {0: "blosclz", 1: "lz4", 2: "lz4hc", 4: "zlib", 5: "zstd"}[compressor]
    codec = {"cname": cname, "clevel": int(level), "shuffle": ["noshuffle", "shuffle"][shuffle]}
    zarr_url = f"s3://{BUCKET}/movie.zarr"
    arr = zarr.create_array(
        zarr_url,
        shape=movie.shape,
        dtype=movie.dtype,
        chunks=(block_frames, *movie.shape[1:]),
        compressors=[BloscCodec(typesize=movie.dtype.itemsize, **codec)],
        storage_options=options,
    )
    arr[...] = movie
    return Stores(ours_url, zarr_url, block_paths, key, block_frames, codec)


# --------------------------------------------------------------------------------------------
# The readers


class Peer:
    """One way of reading the movie: full read, one time point, dask mean."""

    def full(self) -> np.ndarray:
        raise NotImplementedError

    def point(self, t: int) -> np.ndarray:
        raise NotImplementedError

    def mean(self) -> np.ndarray:
        raise NotImplementedError

    def forget(self, *, opening: bool = False) -> None:
        """Drop what a first read of a block caches (the cold rows); ``opening``: only what
        the process that opened the dataset would not know yet."""


class Ours(Peer):
    def __init__(self, stores: Stores, options: dict[str, Any]) -> None:
        import splitds_dask as sd

        self.ds = sd.SplitDataset(stores.ours, storage_options=options)

    def full(self) -> np.ndarray:
        return self.ds[...]

    def point(self, t: int) -> np.ndarray:
        return self.ds[t]

    def mean(self) -> np.ndarray:
        return self.ds.to_dask().mean(axis=0).compute(scheduler="threads")

    def forget(self, *, opening: bool = False) -> None:
        from splitds_dask._remote.chunkmaps import SIDECARS
        from splitds_dask._remote.sizes import BLOCK_SIZES
        from splitds_dask._storage.blosc import CHUNK_MAPS

        CHUNK_MAPS.clear()
        if not opening:
            # What opening gave (the listed sizes, the chunk-map sidecar): as a process that
            # did not open it.
            BLOCK_SIZES.clear()
            SIDECARS.clear()


class Zarr(Peer):
    def __init__(self, stores: Stores, options: dict[str, Any]) -> None:
        import zarr

        self.arr = zarr.open_array(stores.zarr, mode="r", storage_options=options)

    def full(self) -> np.ndarray:
        return self.arr[...]

    def point(self, t: int) -> np.ndarray:
        return self.arr[t]

    def mean(self) -> np.ndarray:
        import dask.array as da

        # from_array, not from_zarr: dask's array-expr mode has no from_zarr.
        x = da.from_array(self.arr, chunks=self.arr.chunks, asarray=False)
        return x.mean(axis=0).compute(scheduler="threads")


class H5pyFsspec(Peer):
    """What a user writes: open each block file it needs with h5py over an fsspec file."""

    def __init__(self, stores: Stores, options: dict[str, Any], shape: tuple[int, ...]) -> None:
        self.fs = stores.filesystem(options)
        # Its listing cache, filled here, spares it a HEAD per file opened.
        self.fs.ls(stores.ours.removeprefix("s3://"))
        self.paths = stores.block_paths
        self.key = stores.key
        self.frames = stores.block_frames
        self.shape = shape

    def _read(self, path: str, index: Any) -> np.ndarray:
        import h5py

        with self.fs.open(path, "rb") as f, h5py.File(f, "r") as h:
            return np.asarray(h[self.key][index])

    def full(self) -> np.ndarray:
        out = np.empty(self.shape, np.uint16)
        for i, path in enumerate(self.paths):
            out[i * self.frames : (i + 1) * self.frames] = self._read(path, ...)
        return out

    def point(self, t: int) -> np.ndarray:
        return self._read(self.paths[t // self.frames], t % self.frames)

    def mean(self) -> np.ndarray:
        import dask.array as da

        # One chunk per block file, each read by its own task (from_array, which both of dask's
        # modes have: array-expr mode has no from_delayed).
        blocks = _BlockFiles(self)
        x = da.from_array(
            blocks,
            chunks=(self.frames, *self.shape[1:]),
            asarray=True,
            meta=np.empty((0,) * blocks.ndim, blocks.dtype),  # no read to learn it
        )
        return x.mean(axis=0).compute(scheduler="threads")


class _BlockFiles:
    """The h5py-over-fsspec peer's block files as one array, read a chunk (a block) at a time."""

    def __init__(self, peer: Any) -> None:
        self.peer = peer
        self.shape = tuple(peer.shape)
        self.dtype = np.dtype(np.uint16)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        first = key[0] if key and isinstance(key[0], slice) else slice(None)
        start = first.start or 0
        index = start // self.peer.frames
        block = self.peer._read(self.peer.paths[index], ...)
        offset = index * self.peer.frames
        stop = self.shape[0] if first.stop is None else first.stop
        return block[(slice(start - offset, stop - offset), *key[1:])]


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Timing:
    """Best-of-N seconds of one peer on one row (averaged over the row's time points), and the
    requests of one call."""

    seconds: float
    samples: list[float]
    requests: Counts


@dataclass
class Row:
    name: str
    nbytes: int
    calls: int  # reads per measured call (time points averaged)
    results: dict[str, Timing] = field(default_factory=dict)

    def speedup(self, peer: str) -> float:
        return self.results[peer].seconds / self.results["ours"].seconds


def _check(name: str, peer: str, got: np.ndarray, expected: np.ndarray) -> None:
    ok = got.shape == expected.shape and (
        np.allclose(got, expected) if got.dtype.kind == "f" else np.array_equal(got, expected)
    )
    if not ok:
        raise SystemExit(f"{peer}, {name}: the result differs from the movie written")


def measure_row(
    name: str,
    server: ServerProcess,
    peers: dict[str, Peer],
    calls: list[Callable[[Peer], np.ndarray]],
    expected: list[np.ndarray],
    *,
    repeat: int,
    cold: str | None,
) -> Row:
    """Time ``calls`` (one per time point, or one) of every peer: warm-up, then ``repeat``
    rounds; each call's result checked, its requests counted (the server's log)."""
    row = Row(name, expected[0].nbytes, len(calls))
    samples: dict[str, list[list[float]]] = {p: [[] for _ in calls] for p in peers}
    counts: dict[str, list[Counts]] = {p: [Counts(0, 0, 0, 0)] * len(calls) for p in peers}
    for round_ in range(repeat + 1):  # round 0: the warm-up, untimed
        for i, call in enumerate(calls):
            for peer_name, peer in peers.items():
                if cold is not None:
                    peer.forget(opening=cold == "opening")
                server.clear()
                start = time.perf_counter()
                got = call(peer)
                elapsed = time.perf_counter() - start
                counted = server.counts()
                if peer_name == _WRONG:
                    got = got + 1
                _check(name, peer_name, got, expected[i])
                if round_:
                    samples[peer_name][i].append(elapsed)
                    counts[peer_name][i] = counted
    for peer_name in peers:
        best = [min(s) for s in samples[peer_name][: len(calls)]]
        per_call = counts[peer_name]
        row.results[peer_name] = Timing(
            seconds=statistics.fmean(best),
            samples=[statistics.fmean(s) for s in zip(*samples[peer_name], strict=True)],
            requests=Counts(
                *(
                    round(statistics.fmean(getattr(c, k) for c in per_call))
                    for k in ("get", "head", "list", "bytes")
                )
            ),
        )
    return row


# The cold rows: a process that did not open the dataset (a worker: no chunk map, listed size
# or sidecar), then the process that opened it (its sizes and sidecar known, no chunk map).
_COLDNESS = (("fresh", "cold"), ("opening", "cold in the opening process"), (None, "warm"))


def run_delay(
    server: ServerProcess,
    peers: dict[str, Peer],
    movie: np.ndarray,
    points: list[int],
    *,
    repeat: int,
    delay: float,
) -> list[Row]:
    server.set_delay(delay)
    mean = movie.mean(axis=0)
    rows = [
        measure_row(
            "full read `ds[...]`",
            server,
            peers,
            [lambda p: p.full()],
            [movie],
            repeat=repeat,
            cold=None,
        )
    ]
    point_calls = [lambda p, t=t: p.point(t) for t in points]
    point_expected = [movie[t] for t in points]
    for cold, label in _COLDNESS:
        rows.append(
            measure_row(
                f"one time point `ds[t]`, {label}",
                server,
                peers,
                point_calls,
                point_expected,
                repeat=repeat,
                cold=cold,
            )
        )
    for cold, label in _COLDNESS:
        row = measure_row(
            f"dask mean over t, {label}",
            server,
            peers,
            [lambda p: p.mean()],
            [mean],
            repeat=repeat,
            cold=cold,
        )
        row.nbytes = movie.nbytes
        rows.append(row)
    server.set_delay(0)
    return rows


# --------------------------------------------------------------------------------------------
# Reporting


def _cell(row: Row, peer: str) -> str:
    timing = row.results[peer]
    mb_s = row.nbytes / timing.seconds / 1e6
    moved = timing.requests.bytes / 1e6
    return f"{timing.seconds * 1e3:.1f} ms, {mb_s:.0f} MB/s, {timing.requests}, {moved:.2f} MB in"


def _ratio(row: Row, peer: str) -> str:
    value = row.speedup(peer)
    target = TARGETS[peer]
    return f"{value:.2f}x" + ("" if value >= target else f" (below {target:.0f}x)")


def table(rows: list[Row]) -> str:
    lines = [
        "| read | ours | zarr | h5py-fsspec | zarr / ours | h5py-fsspec / ours |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [_cell(row, p) for p in PEERS] + [_ratio(row, p) for p in TARGETS]
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64, help="t (default 64)")
    parser.add_argument("--planes", type=int, default=8, help="z (default 8)")
    parser.add_argument("--height", type=int, default=256, help="y (default 256)")
    parser.add_argument("--width", type=int, default=256, help="x (default 256)")
    parser.add_argument("--block-frames", type=int, default=8, help="t per block (default 8)")
    parser.add_argument("--points", type=int, default=4, help="time points averaged (default 4)")
    parser.add_argument("--repeat", type=int, default=5, help="timed rounds; best of (default 5)")
    parser.add_argument(
        "--delays", default="0,0.02", help="seconds added to each request, comma-separated"
    )
    parser.add_argument(
        "--bandwidth",
        type=float,
        default=0,
        help="MB/s of each answer's body (a store's bandwidth per connection; default: none)",
    )
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--wrong", choices=PEERS, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@contextlib.contextmanager
def _server() -> Iterator[ServerProcess]:
    server = ServerProcess()
    try:
        yield server
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.serve:
        return serve()
    global _WRONG
    _WRONG = args.wrong
    _isolate_environment()
    shape = (args.frames, args.planes, args.height, args.width)
    n_blocks = -(-args.frames // args.block_frames)
    # One time point per block (its middle frame), spread over the movie.
    step = max(1, n_blocks // max(1, args.points))
    points = [
        min(args.frames - 1, b * args.block_frames + args.block_frames // 2)
        for b in range(0, n_blocks, step)
    ][: args.points]
    movie = make_movie(shape)
    delays = [float(d) for d in args.delays.split(",") if d.strip()]
    print("generated the movie; writing it to the S3 server", file=sys.stderr)
    with _server() as server:
        options = server.storage_options
        stores = write_stores(movie, args.block_frames, options)
        server.set_bandwidth(args.bandwidth)
        peers: dict[str, Peer] = {
            "ours": Ours(stores, options),
            "zarr": Zarr(stores, options),
            "h5py-fsspec": H5pyFsspec(stores, options, shape),
        }
        listing = stores.filesystem(options).ls(f"{BUCKET}/ours", detail=True)
        stored = sum(int(entry["size"]) for entry in listing)
        results = {}
        for delay in delays:
            print(f"measuring, {delay * 1e3:g} ms per request", file=sys.stderr)
            results[delay] = run_delay(
                server, peers, movie, points, repeat=args.repeat, delay=delay
            )
    import dask
    import fsspec
    import h5py
    import s3fs
    import zarr

    import splitds_dask as sd

    versions = {m.__name__: m.__version__ for m in (sd, zarr, h5py, fsspec, s3fs, dask, np)}
    bandwidth = f"answers' bodies at {args.bandwidth:g} MB/s each; " if args.bandwidth else ""
    print(
        f"Movie (t, z, y, x) = {shape} uint16 ({movie.nbytes / 1e6:.0f} MB, "
        f"{stored / 1e6:.0f} MB stored, {movie.nbytes / stored:.2f}x), {n_blocks} blocks of "
        f"{args.block_frames} frames; Blosc {stores.codec['cname']} level "
        f"{stores.codec['clevel']} {stores.codec['shuffle']}; zarr: one chunk per block, the "
        f"same codec. Time points {points}. Best of {args.repeat} after a warm-up; {bandwidth}"
        f"{os.cpu_count()} cores. Cells: time, MB/s (uncompressed), requests per read, bytes "
        "received per read. "
        "Speedups: peer time / our time (targets: >= 1x zarr, >= 3x h5py-fsspec).\n"
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + "\n"
    )
    for delay, rows in results.items():
        print(f"\n**{delay * 1e3:g} ms added per request**\n")
        print(table(rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "shape": shape,
                    "block_frames": args.block_frames,
                    "points": points,
                    "repeat": args.repeat,
                    "bandwidth_mb_s": args.bandwidth,
                    "stored_bytes": stored,
                    "codec": stores.codec,
                    "versions": versions,
                    "delays": {
                        str(delay): [
                            {
                                "row": row.name,
                                "nbytes": row.nbytes,
                                "results": {
                                    p: {
                                        **{k: v for k, v in asdict(t).items() if k != "requests"},
                                        "requests": {
                                            **asdict(t.requests),
                                            "total": t.requests.total,
                                        },
                                    }
                                    for p, t in row.results.items()
                                },
                                "speedups": {p: row.speedup(p) for p in TARGETS},
                            }
                            for row in rows
                        ]
                        for delay, rows in results.items()
                    },
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
