"""Writers killed with SIGKILL at random points leave data that opens, reads back bit-exact and
can be resumed (stream) or is entirely the old or the new version (``to_split_dataset``).

The kills are real: a separate process, killed by the kernel mid-write (see ``tests.helpers.crash``).
``stress/crash_stress.py`` runs the same trials many more times.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from tests.helpers import crash as cs

STREAM_TRIALS = 24
STORE_TRIALS = 12
STREAM_FRAMES = 58  # per resumed run: not whole blocks, so resuming completes a short block


@pytest.fixture(scope="module")
def zygote():
    with cs.Zygote() as z:
        yield z


def _timed(zygote: cs.Zygote, kind: str, **args: object) -> float:
    """Duration of a complete run (the second one: the first in a process loads the codecs)."""
    durations = []
    for _ in range(2):
        start = time.perf_counter()
        assert not zygote.run(kind, **args)
        durations.append(time.perf_counter() - start)
    return durations[-1]


def _kill_times(duration: float, seed: int):
    """Random kill delays in [0, duration); after each run that ended on its own, a bit shorter."""
    rng = random.Random(seed)
    scale = 1.0
    while True:
        finished = yield rng.uniform(0, scale * duration)
        if finished:
            scale *= 0.8


@pytest.mark.slow
@pytest.mark.subprocess
def test_stream_writer_killed_at_random_points(tmp_path: Path, zygote: cs.Zygote) -> None:
    state = cs.StreamState(tmp_path / "run")
    # Complete runs, to calibrate the kill times to this machine's speed.
    duration = _timed(zygote, "stream", folder=str(state.folder), n_frames=STREAM_FRAMES)
    assert cs.check_stream(state) == 2 * STREAM_FRAMES
    delays = _kill_times(duration, seed=4)
    delay = next(delays)
    while state.kills < STREAM_TRIALS and state.trials < 3 * STREAM_TRIALS:
        state.trials += 1
        killed = zygote.run(
            "stream", kill_after=delay, folder=str(state.folder), n_frames=STREAM_FRAMES
        )
        state.kills += killed
        cs.check_stream(state)
        delay = delays.send(not killed)
    assert state.kills == STREAM_TRIALS
    # Kills landed at different points: the committed length differs between trials.
    assert len(set(np.diff(state.seen))) > 3
    # The metadata is the commit: a block the last kill left between the metadata and its rename
    # (full, or the short last block of a close) is not shown yet (IncompleteDatasetWarning),
    # but resuming completes it, and a block staged before the metadata is dropped.
    committed = json.loads((state.folder / "stack_metadata.json").read_text())["shape_full"][0]
    assert committed - state.frames in range(cs.BLOCK_LENGTH + 1)
    zygote.run("stream", folder=str(state.folder), n_frames=7)
    assert cs.check_stream(state) == committed + 7
    names = sorted(p.name for p in state.folder.iterdir())
    ds = sd.SplitDataset(state.folder)
    assert names == sorted([*ds.block_names, "stack_metadata.json"]), "leftovers after resuming"


@pytest.mark.slow
@pytest.mark.subprocess
def test_to_split_dataset_killed_at_random_points(tmp_path: Path, zygote: cs.Zygote) -> None:
    folder = tmp_path / "experiment" / "dataset"
    duration = _timed(zygote, "store", folder=str(folder), version=0)
    assert cs.check_store(folder, {0}) == 0
    delays = _kill_times(duration, seed=5)
    delay = next(delays)
    current, kills, version = 0, 0, 0
    while kills < STORE_TRIALS and version < 3 * STORE_TRIALS:
        version += 1
        killed = zygote.run("store", kill_after=delay, folder=str(folder), version=version)
        kills += killed
        found = cs.check_store(folder, {current, version})
        if not killed:
            assert found == version
        current = found
        delay = delays.send(not killed)
    assert kills == STORE_TRIALS
    # The next write removes what the killed writers left (their owners are dead).
    assert not zygote.run("store", folder=str(folder), version=99)
    assert cs.check_store(folder, {99}) == 99
    assert [p.name for p in folder.parent.iterdir()] == ["dataset"], "staging left behind"


@pytest.mark.slow
@pytest.mark.subprocess
def test_replacing_stream_writer_killed_at_random_points(tmp_path: Path, zygote: cs.Zygote) -> None:
    """``SplitDatasetWriter(overwrite=True)`` killed anywhere: the folder holds the previous
    dataset whole (killed before the first block of the new one) or the new one's completed
    blocks; no frame that was published is lost."""
    folder = tmp_path / "run"
    n_frames = 3 * cs.BLOCK_LENGTH + 2
    duration = _timed(zygote, "stream_replace", folder=str(folder), version=0, n_frames=n_frames)
    previous = cs.versioned_frames(0, 0, n_frames)
    delays = _kill_times(duration, seed=6)
    delay = next(delays)
    outcomes = {"old kept": 0, "new, partly": 0, "new, whole": 0}
    kills, version = 0, 0
    while kills < STORE_TRIALS and version < 3 * STORE_TRIALS:
        version += 1
        killed = zygote.run(
            "stream_replace",
            kill_after=delay,
            folder=str(folder),
            version=version,
            n_frames=n_frames,
        )
        kills += killed
        with warnings.catch_warnings():
            # Killed between a later block's metadata and its rename: the frames on disk.
            warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
            found = np.asarray(sd.SplitDataset(folder)[...])
        new = cs.versioned_frames(version, 0, len(found))
        delay = delays.send(not killed)
        if found.shape == previous.shape and np.array_equal(found, previous):
            assert killed, "a writer that was not killed replaced nothing"
            outcomes["old kept"] += 1
            continue
        np.testing.assert_array_equal(found, new, strict=True)
        assert len(found) % cs.BLOCK_LENGTH == 0 or len(found) == n_frames
        assert len(found) > 0, "the new dataset replaced the old one before its first block"
        outcomes["new, whole" if len(found) == n_frames else "new, partly"] += 1
        previous = found
    assert kills == STORE_TRIALS
    print(outcomes)
    assert outcomes["old kept"] > 0, outcomes  # some kills fell before the first block
    assert not zygote.run("stream_replace", folder=str(folder), version=99, n_frames=n_frames)
    np.testing.assert_array_equal(
        sd.SplitDataset(folder)[...], cs.versioned_frames(99, 0, n_frames), strict=True
    )
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "staging or lock left behind"


def test_overwrite_keeps_the_old_dataset_until_the_new_one_is_complete(tmp_path: Path) -> None:
    import dask
    import dask.array as da

    old = sd.to_split_dataset(np.arange(40, dtype=np.int32).reshape(10, 4), tmp_path / "d", 5)
    seen = []

    def observe(block: np.ndarray) -> np.ndarray:
        # While the new dataset is being computed, the old one opens and reads as before.
        seen.append(np.array_equal(sd.SplitDataset(tmp_path / "d")[...], old[...]))
        return block

    new = da.zeros((10, 4), dtype=np.int32, chunks=5).map_blocks(observe)
    with dask.config.set(scheduler="sync"):
        sd.to_split_dataset(new, tmp_path / "d", overwrite=True)
    assert seen
    assert all(seen)
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "d")[...], 0)


def test_a_failing_write_leaves_the_old_dataset_and_no_staging(tmp_path: Path) -> None:
    import dask.array as da

    sd.to_split_dataset(np.ones((10, 4), np.uint8), tmp_path / "d", 5)

    def fail(block: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[0]["chunk-location"][0] == 1:
            raise OSError("disk full")
        return block

    with pytest.raises(OSError, match="disk full"):
        sd.to_split_dataset(
            da.zeros((10, 4), np.uint8, chunks=5).map_blocks(fail, dtype=np.uint8),
            tmp_path / "d",
            overwrite=True,
        )
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "d")[...], 1)
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_never_deletes_a_folder_that_is_not_a_split_dataset(tmp_path: Path, overwrite) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "0000.h5").write_bytes(b"my own file, not a block")
    with pytest.raises(FileExistsError, match="not a split dataset"):
        sd.to_split_dataset(np.ones(3), folder, overwrite=overwrite)
    assert (folder / "0000.h5").read_bytes() == b"my own file, not a block"
