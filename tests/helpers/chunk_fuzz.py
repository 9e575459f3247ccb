"""Damaged chunk indexes and Blosc headers, each read in a fresh process.

A dataset is written by the package's own writer with small chunks (several per block); a
*mutant* is a copy of it whose first block file has a few random bytes changed inside the chunk
index entries (size, filter mask, chunk coordinates, address) or inside the chunks' Blosc headers
and block-start tables. Each mutant is read in its own process, forked from a warm *zygote* that
has only imported the package (a segfault or a hang then ends that child alone, and the heap it
crashes on is a fresh process's): ``ds[...]``, ``ds.to_dask().compute()`` and ``verify`` must all
give the numpy oracle, or all report the damage (``BlockError`` naming the block, and a verify
problem).

Used by ``tests/test_chunk_index.py`` (a few hundred mutants) and ``stress/fuzz_chunks.py``
(thousands).
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import splitds_dask as sd
from splitds_dask._storage import block_file

SHAPE = (8, 40, 50)
BLOCK = (4, 40, 50)
# One chunk per frame: 4 chunks in each of the 2 block files.
CHUNK_BYTES = 40 * 50 * 2
BLOSC_HEADER = 16

# What a child reports by its exit status.
EQUAL, ERROR, WRONG, DISAGREE, OTHER = 0, 10, 20, 21, 22
OUTCOMES = {
    EQUAL: "read-equal",
    ERROR: "BlockError",
    WRONG: "wrong data",
    DISAGREE: "disagreement",
    OTHER: "other exception",
}


def oracle() -> np.ndarray:
    """The array every mutant was made from: compressible, every frame different."""
    rng = np.random.default_rng(11)
    ramp = np.indices(SHAPE).sum(axis=0) % 97
    return (ramp * 13 + rng.integers(0, 5, SHAPE)).astype(np.uint16)


@contextmanager
def small_chunks() -> Iterator[None]:
    """The package's writer, with chunks of one frame."""
    saved = block_file._CHUNK_BYTES
    block_file._CHUNK_BYTES = CHUNK_BYTES
    try:
        yield
    finally:
        block_file._CHUNK_BYTES = saved


def write_source(folder: Path) -> None:
    with small_chunks():
        sd.to_split_dataset(oracle(), folder, block_shape=BLOCK)


@dataclass(frozen=True)
class IndexEntry:
    """One chunk as the file stores it: its index entry's place and what the entry says."""

    number: int
    entry: int  # file offset of the packed (size, mask, coordinates..., address) entry
    offset: int
    size: int
    mask: int

    @property
    def size_at(self) -> int:
        return self.entry

    @property
    def mask_at(self) -> int:
        return self.entry + 4

    def address_at(self, rank: int) -> int:
        return self.entry + 8 + 8 * (rank + 1)

    def entry_length(self, rank: int) -> int:
        return 8 + 8 * (rank + 1) + 8


def index_entries(path: Path, key: str = "stack_3D") -> list[IndexEntry]:
    """Every chunk of ``path`` with the place of its version-1 B-tree key in the file.

    The key is found by its packed fields: chunk size and filter mask (uint32), the chunk's
    coordinates and a trailing 0 (uint64), then the chunk's address (uint64).
    """
    raw = path.read_bytes()
    entries = []
    with h5py.File(path, "r") as f:
        dsid = f[key].id
        strides = [1] * dsid.rank
        chunks = f[key].chunks
        grid = [-(-n // c) for n, c in zip(f[key].shape, chunks, strict=True)]
        for axis in range(dsid.rank - 2, -1, -1):
            strides[axis] = strides[axis + 1] * grid[axis + 1]
        for i in range(dsid.get_num_chunks()):
            info = dsid.get_chunk_info(i)
            packed = (
                struct.pack("<II", info.size, info.filter_mask)
                + b"".join(struct.pack("<Q", o) for o in (*info.chunk_offset, 0))
                + struct.pack("<Q", info.byte_offset)
            )
            assert raw.count(packed) == 1, "index entry not found exactly once"
            number = sum(
                o // c * s for o, c, s in zip(info.chunk_offset, chunks, strides, strict=True)
            )
            entries.append(
                IndexEntry(number, raw.find(packed), info.byte_offset, info.size, info.filter_mask)
            )
    return sorted(entries, key=lambda e: e.number)


def patch(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def _targets(path: Path) -> list[tuple[int, int]]:
    """The byte ranges a mutant changes: index entries, Blosc headers, block-start tables."""
    ranges = []
    for e in index_entries(path):
        ranges.append((e.entry, e.entry_length(len(SHAPE))))
        ranges.append((e.offset, BLOSC_HEADER))
        with open(path, "rb") as f:
            f.seek(e.offset)
            header = f.read(BLOSC_HEADER)
        nbytes, blocksize = struct.unpack_from("<ii", header, 4)
        if not header[2] & 0x2:  # not stored raw: a table of block starts follows
            ranges.append((e.offset + BLOSC_HEADER, 4 * -(-nbytes // blocksize)))
    return ranges


class Mutator:
    """Makes seeded mutants of one source dataset: mutant ``i`` is the same for every run."""

    def __init__(self, source: Path, seed: int) -> None:
        self.source = source
        self.seed = seed
        self.targets = _targets(source / "0000.h5")

    def make(self, i: int, folder: Path) -> str:
        """Write mutant ``i`` to ``folder``; returns what was changed."""
        rng = random.Random(f"{self.seed}:{i}")
        shutil.copytree(self.source, folder)
        start, length = rng.choice(self.targets)
        path = folder / "0000.h5"
        changes = []
        with open(path, "r+b") as f:
            for _ in range(rng.choice((1, 1, 2, 3))):
                at = start + rng.randrange(length)
                f.seek(at)
                old = f.read(1)[0]
                new = old ^ (1 << rng.randrange(8)) if rng.random() < 0.5 else rng.randrange(256)
                f.seek(at)
                f.write(bytes([new]))
                changes.append(f"{at}:{old:02x}->{new:02x}")
        return " ".join(changes)


def check_mutant(folder: str, *, threads: bool = True) -> int:
    """Child: read the mutant every way; the exit status says how it went."""
    expected = oracle()
    results = []
    reads = [lambda ds: ds[...], lambda ds: ds.to_dask().compute(scheduler="sync")]
    if threads:
        reads.append(lambda ds: ds.to_dask().compute(scheduler="threads"))
    for read in reads:
        try:
            ds = sd.SplitDataset(folder)
            results.append(("data", read(ds)))
        except sd.BlockError as exc:
            results.append(("error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported as its own outcome
            print(f"{folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return OTHER
    # verify runs dask tasks: on threads only where the reads above may (a forked child would
    # inherit the zygote's thread pool without its threads).
    problems = sd.verify(folder, scheduler="threads" if threads else "sync")
    kinds = {kind for kind, _ in results}
    if kinds == {"data"}:
        if not all(np.array_equal(data, expected) for _, data in results):
            return WRONG
        return EQUAL if not problems else DISAGREE
    if kinds == {"error"} and problems:
        return ERROR
    print(f"{folder}: {[k for k, _ in results]}, verify: {problems}", file=sys.stderr)
    return DISAGREE


_ZYGOTE = r"""
import os, sys, time
sys.path.insert(0, sys.argv[1])  # the repository, for the tests package
import dask.array, h5py, hdf5plugin, numpy, splitds_dask
from tests.helpers import chunk_fuzz as cf

timeout = float(sys.argv[2])
# Warm up on the sound dataset (lazy imports, codec set-up), but not with dask's threaded
# scheduler, whose pool a forked child would inherit without its threads. (The package's own
# read pool is forgotten in a forked child.)
import dask.threaded
assert cf.check_mutant(sys.argv[3], threads=False) == cf.EQUAL
from splitds_dask._storage.blosc import CHUNK_MAPS
CHUNK_MAPS.clear()
for line in sys.stdin:
    folder = line.strip()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os._exit(cf.check_mutant(folder))
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            status = -1
            break
        time.sleep(0.002)
    print(status, flush=True)
"""


class Zygote:
    """A warm interpreter that checks each mutant in a child of its own."""

    def __init__(self, source: Path, timeout: float) -> None:
        env = dict(os.environ)
        src = str(Path(sd.__file__).parents[1])
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        env["OMP_NUM_THREADS"] = "1"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _ZYGOTE,
                str(Path(__file__).parents[2]),
                str(timeout),
                str(source),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def check(self, folder: Path) -> str:
        """The outcome of one mutant: an OUTCOMES value, ``signal N`` or ``hang``."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{folder}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote process died")
        status = int(line)
        if status == -1:
            return "hang"
        if os.WIFSIGNALED(status):
            return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
        return OUTCOMES.get(os.WEXITSTATUS(status), f"exit {os.WEXITSTATUS(status)}")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@dataclass
class Report:
    counts: Counter[str]
    bad: list[tuple[int, str, str]]  # mutant, outcome, what was changed

    def summary(self) -> str:
        return json.dumps(dict(sorted(self.counts.items())))


def run(work: Path, n: int, *, seed: int = 0, processes: int = 2, timeout: float = 60.0) -> Report:
    """Make and check ``n`` mutants, ``processes`` at a time, each in a fresh child process."""
    source = work / "source"
    write_source(source)
    mutator = Mutator(source, seed)
    todo: queue.Queue[int] = queue.Queue()
    for i in range(n):
        todo.put(i)
    counts: Counter[str] = Counter()
    bad: list[tuple[int, str, str]] = []
    lock = threading.Lock()

    def worker() -> None:
        zygote = Zygote(source, timeout)
        try:
            while True:
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                folder = work / f"mutant-{i}"
                change = mutator.make(i, folder)
                outcome = zygote.check(folder)
                shutil.rmtree(folder)
                with lock:
                    counts[outcome] += 1
                    if outcome not in ("read-equal", "BlockError"):
                        bad.append((i, outcome, change))
        finally:
            zygote.close()

    threads = [threading.Thread(target=worker) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Report(counts, sorted(bad))
