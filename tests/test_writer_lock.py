"""One writer at a time per folder, whichever writer it is; a replaced dataset survives until its
replacement is complete; a killed writer loses nothing that was published.

Real writers in real separate processes, real SIGKILL; frames counted against numpy.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._storage.lock import WriterLock, WriterLockedError, lock_path
from tests.helpers.cli import package_env, splitds_command
from tests.helpers.timeouts import TIMEOUT

FRAME = (6, 8)
BLOCK = 4


def _frames(start: int, stop: int, *, seed: int = 0) -> np.ndarray:
    """Frames ``start .. stop-1``: every frame distinct (its number in every pixel, plus seed)."""
    index = np.arange(start, stop, dtype=np.uint16)[:, None, None] + np.uint16(seed * 1000)
    return np.broadcast_to(index, (stop - start, *FRAME)).copy()


# A writer in its own process: opens the folder, appends `first` frames, flushes and reports;
# then waits for a line on stdin before appending `rest` more frames and closing (or for a
# SIGKILL). Prints one JSON line per step.
_WRITER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import splitds_dask as sd
    from splitds_dask._storage.lock import WriterLockedError

    folder, first, rest, seed, overwrite, block = sys.argv[1:7]
    first, rest, seed, block = int(first), int(rest), int(seed), int(block)
    FRAME = (6, 8)

    def frames(start, stop):
        index = np.arange(start, stop, dtype=np.uint16)[:, None, None] + np.uint16(seed * 1000)
        return np.broadcast_to(index, (stop - start, *FRAME)).copy()

    try:
        w = sd.SplitDatasetWriter(folder, frame_shape=FRAME, dtype="uint16", block_length=block,
                                  overwrite=overwrite == "1")
    except WriterLockedError as exc:
        print(json.dumps({"refused": str(exc), "holder": exc.pid}), flush=True)
        sys.exit(0)
    for frame in frames(0, first):
        w.append(frame)
    w.flush()
    print(json.dumps({"opened": True, "frames": first}), flush=True)
    sys.stdin.readline()
    for frame in frames(first, first + rest):
        w.append(frame)
    w.close()
    print(json.dumps({"closed": first + rest}), flush=True)
    """
)


class _Writer:
    """A :data:`_WRITER` process."""

    def __init__(
        self,
        folder: Path,
        *,
        first: int,
        rest: int = 0,
        seed: int = 0,
        overwrite: bool = False,
        block: int = BLOCK,
    ) -> None:
        args = [str(folder), str(first), str(rest), str(seed), "1" if overwrite else "0"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, *args, str(block)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=package_env(),
        )

    def report(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.communicate(timeout=TIMEOUT)
        return json.loads(line)

    def finish(self) -> dict:
        out, err = self.proc.communicate("go\n", timeout=TIMEOUT)
        assert self.proc.returncode == 0, err
        return json.loads(out.splitlines()[-1]) if out.strip() else {}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)
        assert self.proc.returncode == -signal.SIGKILL


def _read(folder: Path) -> np.ndarray:
    return np.asarray(sd.SplitDataset(folder)[...])


def _write(writer: str, path: Path, **options: object) -> None:
    """Start writing frames of shape ``FRAME`` to ``path`` with one of the writers."""
    if writer == "store":
        sd.to_split_dataset(np.zeros((4, *FRAME), np.uint8), path, **options)
    elif writer == "stream":
        sd.SplitDatasetWriter(path, frame_shape=FRAME, dtype="uint8", block_length=2, **options)
    else:
        from splitds_dask._cli.sources import open_source
        from splitds_dask._cli.targets import write_array

        assert not options.keys() - {"overwrite"}
        source = open_source(str(path.with_name("real")))
        write_array(source, str(path), overwrite=bool(options.get("overwrite")))


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# --- the lock itself --------------------------------------------------------------------------


def test_the_lock_is_held_once_and_names_its_holder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    with WriterLock(folder) as lock:
        assert lock.held
        assert lock_path(folder).is_file()  # beside the folder, not inside it
        assert not folder.exists()
        with pytest.raises(WriterLockedError, match=rf"another writer \(process {os.getpid()}\)"):
            WriterLock(folder)
        with pytest.raises(BlockingIOError) as info:  # also catchable as OSError
            WriterLock(tmp_path / "link" / ".." / "data")
        assert info.value.pid == os.getpid()
        copy = pickle.loads(pickle.dumps(lock))
        assert not copy.held  # a copy sent to another process holds nothing
    assert not lock.held
    assert _hidden(tmp_path) == [], "the holder deletes the lock file"
    WriterLock(folder).release()  # free again


def test_a_link_to_the_folder_shares_its_lock(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with WriterLock(tmp_path / "real"), pytest.raises(WriterLockedError):
        WriterLock(tmp_path / "link")


_COUNTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from splitds_dask._storage.lock import WriterLock, WriterLockedError

    folder, counter, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    done = 0
    while done < rounds:
        try:
            lock = WriterLock(folder)
        except WriterLockedError:
            continue
        value = int(counter.read_text())  # read, yield, write: lost updates if held twice
        time.sleep(0)
        counter.write_text(str(value + 1))
        lock.release()
        done += 1
    """
)


@pytest.mark.subprocess
@pytest.mark.parametrize("n_processes", [3])
def test_processes_racing_for_the_lock_never_hold_it_together(
    tmp_path: Path, n_processes: int
) -> None:
    """The lock file is deleted and recreated all the time: no update may be lost."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    rounds = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER, str(tmp_path / "data"), str(counter), str(rounds)],
            env=package_env(),
        )
        for _ in range(n_processes)
    ]
    for proc in procs:
        assert proc.wait(timeout=TIMEOUT) == 0
    assert int(counter.read_text()) == n_processes * rounds
    assert _hidden(tmp_path) == []


# --- writers refused while another writes -----------------------------------------------------


@pytest.mark.subprocess
def test_a_live_stream_writer_refuses_every_other_writer(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    sd.to_split_dataset(np.ones((3, *FRAME), np.uint16), tmp_path / "other", (1,))
    writer = _Writer(folder, first=10, rest=10)
    assert writer.report() == {"opened": True, "frames": 10}
    pid = writer.proc.pid
    holder = rf"another writer \(process {pid}\)"
    with pytest.raises(WriterLockedError, match=holder) as info:
        sd.to_split_dataset(np.zeros((5, *FRAME), np.uint16), folder, (2,), overwrite=True)
    assert info.value.pid == pid
    with pytest.raises(WriterLockedError, match=holder):
        sd.to_split_dataset(np.zeros((5, *FRAME)), folder, overwrite=True, compute=False)
    with pytest.raises(WriterLockedError, match=holder):
        sd.SplitDatasetWriter(folder, frame_shape=FRAME, dtype="uint16", block_length=2,
                              overwrite=True)  # fmt: skip
    with pytest.raises(WriterLockedError, match=holder):
        sd.SplitDatasetWriter(folder, append=True)
    with pytest.raises(WriterLockedError, match=holder):
        sd.save_to_split_dataset(np.zeros((4, *FRAME)), folder, block_size=2)
    with pytest.raises(WriterLockedError, match=holder):
        sd.EmptySplitDataset(tmp_path, "run", shape_full=(4, *FRAME), shape_block=(2, *FRAME))
    convert = subprocess.run(
        [*splitds_command(), "convert", str(tmp_path / "other"), str(folder), "--overwrite"],
        check=False,
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=TIMEOUT,
    )
    assert convert.returncode == 1
    assert len(convert.stderr.strip().splitlines()) == 1, convert.stderr
    assert str(folder) in convert.stderr
    assert f"process {pid}" in convert.stderr
    assert writer.finish() == {"closed": 20}
    np.testing.assert_array_equal(_read(folder), _frames(0, 20), strict=True)  # 0 frames lost
    assert _hidden(tmp_path) == []


@pytest.mark.subprocess
def test_two_stream_writers_started_together_one_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    writers = [_Writer(folder, first=6, rest=14, seed=seed) for seed in (1, 2)]
    reports = [w.report() for w in writers]
    opened = [i for i, r in enumerate(reports) if "opened" in r]
    refused = [i for i, r in enumerate(reports) if "refused" in r]
    assert len(opened) == 1, reports
    assert len(refused) == 1, reports
    winner, loser = writers[opened[0]], writers[refused[0]]
    assert reports[refused[0]]["holder"] == winner.proc.pid
    assert loser.finish() == {}
    assert winner.finish() == {"closed": 20}
    seed = (1, 2)[opened[0]]
    np.testing.assert_array_equal(_read(folder), _frames(0, 20, seed=seed), strict=True)


def test_a_deferred_store_is_refused_at_publish_while_a_writer_holds_the_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    with sd.SplitDatasetWriter(folder, frame_shape=FRAME, dtype="uint16", block_length=2) as w:
        w.append(_frames(0, 4))
    delayed = sd.to_split_dataset(np.zeros((6, *FRAME), np.uint16), folder, (3,), overwrite=True,
                                  compute=False)  # fmt: skip
    with sd.SplitDatasetWriter(folder, append=True) as w:
        with pytest.raises(WriterLockedError):
            delayed.compute()
        w.append(_frames(4, 7))
    np.testing.assert_array_equal(_read(folder), _frames(0, 7), strict=True)
    assert _hidden(tmp_path) == [], "the refused store's staging folder is removed"
    # Once the writer is done, a new store may run.
    sd.to_split_dataset(np.zeros((6, *FRAME), np.uint16), folder, (3,), overwrite=True)
    np.testing.assert_array_equal(_read(folder), np.zeros((6, *FRAME), np.uint16), strict=True)


# --- overwrite keeps the old dataset until the new one has data --------------------------------


@pytest.mark.subprocess
@pytest.mark.parametrize(("first", "published"), [(0, 0), (3, 0), (4, 4), (9, 8)])
def test_a_replacing_stream_writer_killed_loses_nothing(
    tmp_path: Path, first: int, published: int
) -> None:
    """Killed before its first block, the replacement leaves the old dataset whole; after it,
    the folder holds every block the new writer completed."""
    folder = tmp_path / "run"
    old = _frames(0, 10, seed=5)
    sd.to_split_dataset(old, folder, (3,))
    writer = _Writer(folder, first=first, rest=5, overwrite=True)
    assert writer.report() == {"opened": True, "frames": first}
    writer.kill()
    if published == 0:
        np.testing.assert_array_equal(_read(folder), old, strict=True)  # 0 frames lost
    else:
        np.testing.assert_array_equal(_read(folder), _frames(0, published), strict=True)
    # The next writer cleans up what the killed one left and replaces the folder again.
    with sd.SplitDatasetWriter(
        folder, frame_shape=FRAME, dtype="uint16", block_length=BLOCK, overwrite=True
    ) as w:
        w.append(_frames(0, 6, seed=3))
    np.testing.assert_array_equal(_read(folder), _frames(0, 6, seed=3), strict=True)
    assert _hidden(tmp_path) == []


def test_a_replacing_stream_writer_that_fails_before_its_first_block_keeps_the_old(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "run"
    old = _frames(0, 5, seed=5)
    sd.to_split_dataset(old, folder, (2,))
    w = sd.SplitDatasetWriter(folder, frame_shape=FRAME, dtype="uint8", block_length=4,
                              overwrite=True)  # fmt: skip
    with pytest.raises(TypeError):
        w.append(np.zeros(FRAME, np.float64))
    w.close()  # no frame: an empty dataset replaces the old one
    assert sd.SplitDataset(folder).shape == (0, *FRAME)
    sd.to_split_dataset(old, folder, (2,), overwrite=True)
    w = sd.SplitDatasetWriter(
        folder, frame_shape=FRAME, dtype="uint16", block_length=4, overwrite=True
    )
    w.append(_frames(0, 2))
    with pytest.raises(ValueError, match="frames of shape"):
        w.append(np.zeros((3, 3), np.uint16))
    w.close()
    # The two frames buffered before the error were written by close(): a complete new dataset.
    np.testing.assert_array_equal(_read(folder), _frames(0, 2), strict=True)
    assert _hidden(tmp_path) == []


# --- symbolic links ---------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["store", "stream", "convert"])
def test_a_symlink_is_never_replaced(tmp_path: Path, snapshot, writer: str) -> None:
    real = tmp_path / "real"
    old = _frames(0, 5)
    sd.to_split_dataset(old, real, (2,))
    link = tmp_path / "link"
    link.symlink_to(real)
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError, match=r"link is a symbolic link to .*real; pass"):
        _write(writer, link, overwrite=True)
    assert snapshot(tmp_path) == before
    assert link.is_symlink()
    np.testing.assert_array_equal(_read(link), old, strict=True)
    # Appending through the link is not replacing it.
    with sd.SplitDatasetWriter(link, append=True) as w:
        w.append(_frames(5, 7))
    np.testing.assert_array_equal(_read(real), _frames(0, 7), strict=True)


# --- errors keep their type -------------------------------------------------------------------

_FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys
    import numpy as np
    import splitds_dask as sd

    # A file size limit: write() fails with EFBIG, as it fails with ENOSPC on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    kind, folder = sys.argv[1:3]
    data = np.random.default_rng(0).integers(0, 65535, (12, 256, 256), dtype=np.uint16)
    try:
        if kind == "stream":
            w = sd.SplitDatasetWriter(folder, frame_shape=(256, 256), dtype="uint16",
                                      block_length=4, compression=None)
            w.append(data)
            w.close()
        elif kind == "store":
            sd.to_split_dataset(data, folder, 4, compression=None)
        else:
            sd.save_to_split_dataset(data, folder, block_size=4, compression=None)
    except Exception as exc:
        print(json.dumps({"types": [c.__name__ for c in type(exc).__mro__],
                          "errno": getattr(exc, "errno", None), "message": str(exc)}))
    """
)


@pytest.mark.subprocess
@pytest.mark.parametrize("kind", ["stream", "store", "compat"])
def test_a_full_disk_is_an_oserror_with_its_errno(tmp_path: Path, kind: str) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, kind, str(tmp_path / "out")],
        check=False,
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr
    error = json.loads(run.stdout)
    assert "OSError" in error["types"], error
    assert "RuntimeError" not in error["types"], error
    assert error["errno"] == 27, error  # EFBIG
    assert "File too large" in error["message"]
    assert "decrement" not in run.stderr, run.stderr
    assert not (tmp_path / "out" / "stack_metadata.json").exists()


# --- options checked when given ---------------------------------------------------------------

_BAD_OPTIONS = [
    ({"compression": "bogus"}, ValueError, "unknown compression 'bogus'"),
    ({"compression": "blosc:bogus"}, ValueError, "no blosc compressor 'bogus'"),
    ({"compression": 3}, TypeError, "compression must be a name"),
    ({"compression_level": 10}, ValueError, "level 10 is out of range \\(0 to 9\\)"),
    ({"compression_level": -1}, ValueError, "level -1 is out of range"),
    ({"compression": "bzip2", "compression_level": 0}, ValueError, "out of range \\(1 to 9\\)"),
    ({"compression": "zstd", "compression_level": 23}, ValueError, "out of range \\(0 to 22\\)"),
    ({"compression_level": 2.0}, TypeError, "compression_level must be an integer"),
    ({"data_key": "data"}, ValueError, "data_key 'data' would not be found by readers"),
    ({"data_key": "group/stack"}, ValueError, "would not be found by readers"),
    ({"data_key": 4}, TypeError, "data_key must be a string"),
]


@pytest.mark.parametrize(("options", "error", "message"), _BAD_OPTIONS)
@pytest.mark.parametrize("writer", ["store", "stream"])
def test_bad_options_are_refused_before_anything_is_written(
    tmp_path: Path, writer: str, options: dict, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        _write(writer, tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("block_shape", "error"),
    [(2.0, ValueError), ((2.0,), ValueError), ((2, 1.5), ValueError), (0, ValueError),
     (True, ValueError), ("2", TypeError), ({2: 1}, TypeError)],
)  # fmt: skip
def test_block_shapes_must_be_positive_integers(tmp_path: Path, block_shape, error) -> None:
    with pytest.raises(error, match=r"block shape must be a positive integer or a sequence"):
        sd.to_split_dataset(np.zeros((4, 2)), tmp_path / "out", block_shape)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "block_shape", [2, np.int64(2), (np.int32(2), None), [2, 1], np.array([2, 1])]
)
def test_integer_block_shapes_of_any_kind_are_accepted(tmp_path: Path, block_shape) -> None:
    data = np.arange(8).reshape(4, 2)
    ds = sd.to_split_dataset(data, tmp_path / "out", block_shape)
    assert ds.shape_block[0] == 2
    np.testing.assert_array_equal(ds[...], data, strict=True)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [("block_length", 2.5, TypeError), ("block_length", 0, ValueError),
     ("frame_shape", (2.0,), TypeError), ("frame_shape", 3, TypeError),
     ("max_pending", 0, ValueError)],
)  # fmt: skip
def test_stream_shapes_must_be_integers(tmp_path: Path, name: str, value, error) -> None:
    options = {"frame_shape": (2,), "dtype": "uint8", "block_length": 2, name: value}
    with pytest.raises(error, match=name):
        sd.SplitDatasetWriter(tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["stack", "stack_2D", "stack_5D", "my_stack", "stackdata"])
@pytest.mark.parametrize("writer", ["store", "stream"])
def test_every_accepted_data_key_reads_back(tmp_path: Path, writer: str, key: str) -> None:
    data = np.arange(24, dtype=np.int32).reshape(6, 4)
    if writer == "store":
        sd.to_split_dataset(data, tmp_path / "out", (4,), data_key=key)
    else:
        with sd.SplitDatasetWriter(
            tmp_path / "out", frame_shape=(4,), dtype="int32", block_length=4, data_key=key
        ) as w:
            w.append(data)
    ds = sd.SplitDataset(tmp_path / "out")
    assert ds.data_key == key
    np.testing.assert_array_equal(ds[...], data, strict=True)
