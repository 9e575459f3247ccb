"""Crash stress: many more SIGKILLed writers than the test suite runs.

The same trials as ``tests/test_crash.py`` (see ``tests/helpers/crash.py``), repeated:

* ``SplitDatasetWriter``: one dataset; each trial resumes it (``append=True``) and appends
  frames until killed with SIGKILL after a random delay. After every kill: the dataset opens,
  every frame reads back bit-exact, no committed frame is lost, ``verify`` finds nothing but
  (at most) the block being renamed when the kill came; the next trial resumes.
* ``to_split_dataset(..., overwrite=True)``: each trial replaces the dataset with a new version
  and is killed; afterwards the folder is exactly the old or the new version, nothing else is
  visible, and the next write removes the killed writers' staging folders.

Run from the repository root::

    python stress/crash_stress.py [--stream 300] [--store 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository, for the tests package

from tests.helpers import crash as cs

_CHAIN = 25


def stress_stream(zygote: cs.Zygote, base: Path, trials: int, rng: random.Random) -> dict:
    """Chains of ``_CHAIN`` kill-and-resume trials, each chain on a fresh dataset (every check
    reads the whole dataset back, so one ever-growing chain would cost quadratic time)."""
    zygote.run("stream", folder=str(base / "warm-up"), n_frames=58)  # loads the codecs
    start = time.perf_counter()
    zygote.run("stream", folder=str(base / "warm-up"), n_frames=58)
    duration = time.perf_counter() - start
    done = killed = frames = 0
    chain = 0
    while done < trials:
        chain += 1
        state = cs.StreamState(base / f"stream{chain}")
        for _ in range(min(_CHAIN, trials - done)):
            state.trials += 1
            state.kills += zygote.run(
                "stream",
                kill_after=rng.uniform(0, duration),
                folder=str(state.folder),
                n_frames=58,
            )
            cs.check_stream(state)
        zygote.run("stream", folder=str(state.folder), n_frames=7)  # resumes to the end
        cs.check_stream(state)
        done += state.trials
        killed += state.kills
        frames += state.frames
    return {"trials": done, "killed": killed, "chains": chain, "frames checked at the end": frames}


def stress_store(zygote: cs.Zygote, base: Path, trials: int, rng: random.Random) -> dict:
    folder = base / "store" / "dataset"
    zygote.run("store", folder=str(folder), version=0)
    start = time.perf_counter()
    zygote.run("store", folder=str(folder), version=0)
    duration = time.perf_counter() - start
    current, kills, old, new = 0, 0, 0, 0
    for version in range(1, trials + 1):
        killed = zygote.run(
            "store", kill_after=rng.uniform(0, duration), folder=str(folder), version=version
        )
        kills += killed
        found = cs.check_store(folder, {current, version})
        old += found == current
        new += found == version
        current = found
    zygote.run("store", folder=str(folder), version=10**6)
    cs.check_store(folder, {10**6})
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != "dataset"]
    assert not leftovers, leftovers
    return {"trials": trials, "killed": kills, "old version": old, "new version": new}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", type=int, default=300, help="stream writer trials")
    parser.add_argument("--store", type=int, default=150, help="to_split_dataset trials")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, cs.Zygote() as zygote:
        stream = stress_stream(zygote, Path(tmp), args.stream, rng)
        print("SplitDatasetWriter:", stream, flush=True)
        store = stress_store(zygote, Path(tmp), args.store, rng)
        print("to_split_dataset:  ", store, flush=True)
    print(f"all checks passed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
