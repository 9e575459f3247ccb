"""Chunk-index and Blosc-header fuzzing: many more mutants than the test suite reads.

The same mutants and checks as ``tests/test_chunk_index.py`` (see ``tests/helpers/chunk_fuzz.py``):
a dataset written by the package with 4 chunks per block; each mutant changes 1-3 random bytes of
one block file inside a chunk index entry, a Blosc header or a Blosc block-start table, and is read
in its own process (forked from a warm interpreter) by ``ds[...]``, ``to_dask()`` with the sync
and threaded schedulers, and ``verify``. Every mutant must read the original array everywhere, or
be refused everywhere (``BlockError`` and a verify problem); a signal, a hang, wrong data or a
disagreement between the paths is a failure.

Run from the repository root::

    python stress/fuzz_chunks.py [--mutants 5000] [--processes 2] [--seed 0] [--timeout 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the repository, for the tests package

from tests.helpers import chunk_fuzz as cf

_FAILURES = ("wrong data", "disagreement", "other exception", "hang")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        report = cf.run(
            Path(work),
            args.mutants,
            seed=args.seed,
            processes=args.processes,
            timeout=args.timeout,
        )
    wall = time.perf_counter() - start
    counts = report.counts
    signals = sum(n for outcome, n in counts.items() if outcome.startswith("signal"))
    print(f"mutants:      {sum(counts.values())}")
    print(f"read-equal:   {counts['read-equal']}")
    print(f"BlockError:   {counts['BlockError']}")
    print(f"signals:      {signals}")
    print(f"hangs:        {counts['hang']}")
    print(f"wrong data:   {counts['wrong data']}")
    print(f"disagreement: {counts['disagreement']}")
    print(f"other:        {counts['other exception']}")
    print(f"all outcomes: {report.summary()}")
    print(f"wall time:    {wall:.0f} s ({args.processes} processes, seed {args.seed})")
    for mutant, outcome, change in report.bad:
        print(f"  mutant {mutant}: {outcome} ({change})")
    return 1 if report.bad else 0


if __name__ == "__main__":
    sys.exit(main())
