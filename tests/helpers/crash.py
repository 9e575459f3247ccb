"""Killing writers with SIGKILL at random points, and checking what they leave.

A *zygote* subprocess imports the package once, then forks one child per trial; the test kills
that child with SIGKILL after a random delay. Forking from a warm process makes a trial cost
milliseconds instead of the second an interpreter start with dask takes, so the suite can afford
many real kills. The child is a real, separate process killed by the kernel, exactly like a
crashed acquisition program; only the interpreter start-up is shared.

Used by ``tests/test_crash.py`` (moderate trial counts) and ``stress/crash_stress.py``
(many more).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import splitds_dask as sd
from tests.helpers.timeouts import TIMEOUT

FRAME_SHAPE = (4, 48, 64)
BLOCK_LENGTH = 5
STORE_SHAPE = (60, 4, 48, 64)
STORE_BLOCK = 6

_ZYGOTE = r"""
import json, os, sys, warnings
import numpy as np
import splitds_dask as sd
sys.path.insert(0, sys.argv[1])  # the repository, for the tests package
from tests.helpers import crash as cs

for line in sys.stdin:
    task = json.loads(line)
    if task["kind"] == "reap":
        _, status = os.waitpid(task["pid"], 0)
        print(json.dumps({"status": status}), flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        try:
            getattr(cs, "run_" + task["kind"])(**task["args"])
            os._exit(0)
        except BaseException as exc:
            print("child failed:", repr(exc), file=sys.stderr, flush=True)
            os._exit(3)
    print(json.dumps({"pid": pid}), flush=True)
"""


def frames(start: int, stop: int) -> np.ndarray:
    """Frames ``start .. stop-1`` of the test movie: every frame distinct, compressible."""
    base = np.random.default_rng(0).integers(0, 4096, FRAME_SHAPE, dtype=np.uint16)
    index = np.arange(start, stop, dtype=np.uint32)[:, None, None, None]
    return ((base + index * 7919) % 65536).astype(np.uint16)


def store_data(version: int) -> np.ndarray:
    """The array that ``to_split_dataset`` trial ``version`` writes."""
    return np.random.default_rng(version).integers(0, 65535, STORE_SHAPE, dtype=np.uint16)


def run_stream(folder: str, n_frames: int, frame_interval: float = 0.0) -> None:
    """Child: resume the dataset at ``folder`` and append ``n_frames`` frames, one at a time
    (every ``frame_interval`` seconds, like a camera, if given)."""
    with sd.SplitDatasetWriter(
        folder, append=True, frame_shape=FRAME_SHAPE, dtype="uint16", block_length=BLOCK_LENGTH
    ) as writer:
        start = writer.n_frames
        for frame in frames(start, start + n_frames):
            writer.append(frame)
            if frame_interval:
                time.sleep(frame_interval)


def versioned_frames(version: int, start: int, stop: int) -> np.ndarray:
    """Frames ``start .. stop-1`` of movie ``version``: distinct from every other version's."""
    return ((frames(start, stop).astype(np.uint32) + version * 104729) % 65536).astype(np.uint16)


def run_stream_replace(folder: str, version: int, n_frames: int) -> None:
    """Child: replace the dataset at ``folder`` with ``n_frames`` frames of movie ``version``,
    appended one at a time by a ``SplitDatasetWriter(overwrite=True)``."""
    with sd.SplitDatasetWriter(
        folder,
        overwrite=True,
        frame_shape=FRAME_SHAPE,
        dtype="uint16",
        block_length=BLOCK_LENGTH,
    ) as writer:
        for frame in versioned_frames(version, 0, n_frames):
            writer.append(frame)


def run_store(folder: str, version: int) -> None:
    """Child: replace the dataset at ``folder`` by version ``version``."""
    sd.to_split_dataset(store_data(version), folder, block_shape=STORE_BLOCK, overwrite=True)


class Zygote:
    """A warm interpreter that forks writer children on request."""

    def __init__(self) -> None:
        env = dict(os.environ)
        src = str(Path(sd.__file__).parents[1])
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, str(Path(__file__).parents[2])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def _ask(self, message: dict) -> dict:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote process died")
        return json.loads(line)

    def start(self, kind: str, **args: object) -> int:
        return self._ask({"kind": kind, "args": args})["pid"]

    def reap(self, pid: int) -> int:
        """Wait for the child; returns its wait status."""
        return self._ask({"kind": "reap", "pid": pid})["status"]

    def run(self, kind: str, *, kill_after: float | None = None, **args: object) -> bool:
        """Run one child; SIGKILL it after ``kill_after`` seconds. True if it was killed."""
        pid = self.start(kind, **args)
        if kill_after is not None:
            time.sleep(kill_after)
            os.kill(pid, signal.SIGKILL)  # a zombie until reaped: the pid cannot be reused
        status = self.reap(pid)
        if os.WIFSIGNALED(status):
            assert os.WTERMSIG(status) == signal.SIGKILL
            return True
        assert os.WEXITSTATUS(status) == 0, f"{kind} child failed (status {status})"
        return False

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def __enter__(self) -> Zygote:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_BLOCK_NAME = re.compile(r"^[0-9]+\.h5$")


@dataclass
class StreamState:
    """What a chain of killed and resumed stream writers has committed so far."""

    folder: Path
    frames: int = 0
    kills: int = 0
    trials: int = 0
    seen: list[int] = field(default_factory=list)


def check_stream(state: StreamState) -> int:
    """The folder opens, holds exactly the frames of the movie, never fewer than before."""
    folder = state.folder
    if not folder.exists():  # killed before it made the folder
        assert state.frames == 0, "a committed dataset disappeared"
        return 0
    if not (folder / "stack_metadata.json").exists():
        # Killed before its first block: nothing was committed, nothing may claim to be.
        assert state.frames == 0, "a committed dataset lost its metadata"
        assert not [n for n in os.listdir(folder) if _BLOCK_NAME.match(n)]
        return 0
    with warnings.catch_warnings():
        # Killed between the metadata and the rename of a block: the block is not there yet.
        warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
        ds = sd.SplitDataset(folder)
    assert all(_BLOCK_NAME.match(name) for name in ds.block_names), ds.block_names
    n = ds.shape[0]
    assert n >= state.frames, f"committed frames lost: {state.frames} -> {n}"
    data = ds[...]
    expected = frames(0, n)
    assert data.shape == expected.shape
    assert np.array_equal(data, expected), "a block read back different data"
    problems = sd.verify(folder)
    assert not [p for p in problems if p.kind != "incomplete"], problems
    state.frames = n
    state.seen.append(n)
    return n


def check_store(folder: Path, versions: set[int]) -> int:
    """The folder opens as exactly one complete version, and nothing else is visible beside it."""
    ds = sd.SplitDataset(folder)
    data = ds[...]
    matches = [v for v in versions if np.array_equal(data, store_data(v))]
    assert len(matches) == 1, "the dataset is neither the old nor the new version"
    visible = [p.name for p in folder.parent.iterdir() if not p.name.startswith(".")]
    assert visible == [folder.name], visible
    assert not sd.verify(folder)
    return matches[0]
