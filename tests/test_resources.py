"""Memory in proportion to the files present, and one-line errors, for hostile folders.

Each case is a real folder in ``tmp_path``: a stray block file with a far-out number, metadata
nested 100,000 deep, a block file of a few KB declaring a (1, 10^6, 10^6) array. Every action
runs in a fresh subprocess (a crash or a hang is seen, not suffered by the test run) under a
wrapper process that reports the action's peak resident memory (``ru_maxrss`` of its one
child) and caps its address space, so that a regression fails the test instead of the machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import pytest

from tests.helpers.cli import package_env, splitds_command
from tests.helpers.timeouts import TIMEOUT

pytestmark = pytest.mark.subprocess

# Opening, `splitds info` and the napari reader peak near 130 MB (the imports) on every case
# here; before bounding, the same cases asked for 931 GiB, 3.4 GB and 1.82 TiB.
PEAK_LIMIT = 500 * 2**20
# The wrapper's cap on the child's address space: far above what any case needs, far below
# what an unbounded allocation asks.
ADDRESS_SPACE = 8 * 2**30

_WRAPPER = """
import json, resource, subprocess, sys
def cap():
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2)
proc = subprocess.run(sys.argv[3:], capture_output=True, text=True, preexec_fn=cap,
                      timeout=float(sys.argv[2]))
print(json.dumps({
    "code": proc.returncode, "out": proc.stdout, "err": proc.stderr,
    "peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
}))
"""


class Outcome(NamedTuple):
    code: int
    out: str
    err: str
    peak: int  # bytes


def run_measured(*argv: str) -> Outcome:
    """Run ``argv`` in a fresh process; its exit code, output and peak resident memory."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, str(ADDRESS_SPACE), str(TIMEOUT), *argv],
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=TIMEOUT + 30,
        check=True,
    )
    return Outcome(**json.loads(proc.stdout))


def python(code: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code, *args)


# --- the hostile folders --------------------------------------------------------------------


def _dataset(root: Path, n: int = 40, first: int = 1) -> Path:
    root.mkdir()
    for i in range(n):
        with h5py.File(root / f"{i + first:04d}.h5", "w") as f:
            f["stack_3D"] = np.full((2, 4, 4), i, np.uint16)
    metadata = {"shape_full": [2 * n, 4, 4], "shape_block": [2, 4, 4]}
    (root / "stack_metadata.json").write_text(json.dumps(metadata))
    return root


def _with_stray(name: str, *, legacy: bool = False) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        root = _dataset(tmp_path / "stray")
        if legacy:  # no json: the metadata would come from the last block file
            (root / "stack_metadata.json").unlink()
        shutil.copy(root / "0001.h5", root / name)
        return root

    return make


def _deep_metadata(tmp_path: Path) -> Path:
    root = _dataset(tmp_path / "deep")
    depth = 100_000
    text = '{"shape_full": [80, 4, 4], "shape_block": [2, 4, 4], "x": '
    (root / "stack_metadata.json").write_text(text + "[" * depth + "]" * depth + "}")
    return root


def _huge_block(tmp_path: Path) -> Path:
    """One block file of a few KB declaring a (1, 10^6, 10^6) uint16 array (1.8 TiB)."""
    root = tmp_path / "huge"
    root.mkdir()
    with h5py.File(root / "0000.h5", "w") as f:
        dset = f.create_dataset(
            "stack_3D", shape=(1, 10**6, 10**6), dtype=np.uint16, chunks=(1, 64, 64)
        )
        dset[0, 500_000:500_002, 500_000:500_002] = 7  # one chunk written, in the middle
    assert (root / "0000.h5").stat().st_size < 100_000
    shape = [1, 10**6, 10**6]
    (root / "stack_metadata.json").write_text(
        json.dumps({"shape_full": shape, "shape_block": shape})
    )
    return root


class Case(NamedTuple):
    make: Callable[[Path], Path]
    fragments: tuple[str, ...]  # what the one-line error says (empty: no error)


STRAY = "does not belong to it"
CASES = {
    "stray-12-digits": Case(
        _with_stray("999999999999.h5"),
        ("0001.h5 .. 0040.h5 and 999999999999.h5", "jump from 40 to 999999999999", STRAY),
    ),
    "stray-9-digits": Case(
        _with_stray("100000000.h5"), ("jump from 40 to 100000000", "100000000.h5", STRAY)
    ),
    "stray-25-digits": Case(
        _with_stray("1234567890123456789012345.h5"),
        ("jump from 40 to 1234567890123456789012345", STRAY),
    ),
    "stray-legacy": Case(
        _with_stray("999999999999.h5", legacy=True), ("0040.h5 and 999999999999.h5", STRAY)
    ),
    "deep-metadata": Case(_deep_metadata, ("stack_metadata.json", "nests too deep")),
    "huge-block": Case(_huge_block, ()),
}


# --- opening --------------------------------------------------------------------------------

OPEN = """
import sys
import splitds_dask as sd
try:
    ds = sd.SplitDataset(sys.argv[1])
except sd.SplitDatasetError as exc:
    print(type(exc).__name__, exc)
else:
    print("opened", ds.shape)
"""


@pytest.mark.parametrize("case", list(CASES))
def test_opening_costs_what_the_files_hold(tmp_path: Path, case: str) -> None:
    make, fragments = CASES[case]
    root = make(tmp_path)
    run = run_measured(*python(OPEN, str(root)))
    assert run.code == 0, run.err
    assert run.peak < PEAK_LIMIT, run
    if fragments:
        assert run.out.split()[0] in ("NotASplitDatasetError", "MetadataError"), run.out
        for fragment in fragments:
            assert fragment in run.out
    else:
        assert run.out.strip() == "opened (1, 1000000, 1000000)"


# --- napari ---------------------------------------------------------------------------------

NAPARI = """
import sys
import numpy as np
from splitds_dask._integrations.napari import napari_get_reader
((data, kwargs, kind),) = napari_get_reader(sys.argv[1])(sys.argv[1])
print(kind, tuple(data.shape), kwargs["contrast_limits"])
if sys.argv[1].endswith(".h5"):  # read on demand: a window reads only the window
    print(np.asarray(data[0, 499_999:500_003, 499_999:500_003]).tolist())
"""


@pytest.mark.parametrize("what", ["folder", "block-file"])
def test_napari_reader_samples_a_huge_declared_block(tmp_path: Path, what: str) -> None:
    root = _huge_block(tmp_path)
    path = root if what == "folder" else root / "0000.h5"
    run = run_measured(*python(NAPARI, str(path)))
    assert run.code == 0, run.err
    assert run.peak < PEAK_LIMIT, run
    lines = run.out.splitlines()
    assert lines[0] == "image (1, 1000000, 1000000) (0.0, 7.0)"  # the centre window is read
    if what == "block-file":
        window = np.zeros((4, 4), int)
        window[1:3, 1:3] = 7
        assert json.loads(lines[1]) == window.tolist()


WINDOW = """
import sys
import numpy as np
import splitds_dask as sd
x = sd.SplitDataset(sys.argv[1]).to_dask()
print(np.asarray(x[0, 499_999:500_003, 499_999:500_003].compute()).tolist())
"""


# In array-expr mode dask itself slices a from_array chunk only after reading it whole; the
# package moves the slice into the read (splitds_dask._daskmodes.from_reader).
@pytest.mark.parametrize("array_expr", [False, True])
def test_a_window_of_a_huge_block_reads_only_the_window(tmp_path: Path, array_expr: bool) -> None:
    root = _huge_block(tmp_path)
    run = run_measured(
        "env", f"DASK_ARRAY__QUERY_PLANNING={array_expr}", *python(WINDOW, str(root))
    )
    assert run.code == 0, run.err[-2000:]
    assert run.peak < PEAK_LIMIT, run
    window = np.zeros((4, 4), int)
    window[1:3, 1:3] = 7
    assert json.loads(run.out) == window.tolist()


# --- the command line -----------------------------------------------------------------------

COMMANDS = {
    "info": lambda root, out: ("info", str(root)),
    "info-json": lambda root, out: ("info", str(root), "--json"),
    "verify": lambda root, out: ("verify", str(root)),
    "convert": lambda root, out: ("convert", str(root), str(out / "copy.npy")),
    "project": lambda root, out: ("project", str(root), str(out / "max.npy"), "--stat", "max"),
}


# verify of the huge block is left out: it decompresses all 10^6 chunks the block declares
# (about 80 s in a bounded amount of memory), which is time, not memory.
COMMAND_CASES = [
    (case, command)
    for case in CASES
    for command in COMMANDS
    if (case, command) != ("huge-block", "verify")
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "command"), COMMAND_CASES)
def test_every_command_fails_in_one_line(tmp_path: Path, case: str, command: str) -> None:
    make, fragments = CASES[case]
    root = make(tmp_path)
    (tmp_path / "out").mkdir()
    run = run_measured(*splitds_command(), *COMMANDS[command](root, tmp_path / "out"))
    lines = run.err.strip().splitlines()
    if case == "huge-block" and command.startswith("info"):
        assert run.code == 0, run.err  # a valid dataset, whatever its size: nothing to read
        assert run.peak < PEAK_LIMIT, run
        return
    assert run.code == 1, run
    assert "Traceback" not in run.err
    if command == "verify":  # a report: each problem one line on stdout, then a summary
        assert not run.err, run.err
        lines = run.out.strip().splitlines()
        assert len(lines) == 2, run.out
        assert lines[0].startswith("dataset: "), lines
        assert lines[1] == f"{root}: 1 problem(s)"
    else:
        assert len(lines) == 1, run.err
        assert lines[0].startswith("splitds: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0]
    if fragments:  # refused at opening
        assert run.peak < PEAK_LIMIT, run
    else:  # asked to compute the whole 1.8 TiB: refused for lack of memory, in one line
        assert "memory" in lines[0].lower(), lines


def test_debug_variable_keeps_the_traceback(tmp_path: Path) -> None:
    root = _huge_block(tmp_path)
    argv = (*splitds_command(), "project", str(root), str(tmp_path / "max.npy"))
    quiet = run_measured(*argv)
    assert quiet.code == 1
    assert quiet.err.count("\n") == 1
    assert "SPLITDS_DEBUG=1" in quiet.err
    loud = run_measured("env", "SPLITDS_DEBUG=1", *argv)
    assert loud.code == 1
    assert "Traceback" in loud.err
    assert "MemoryError" in loud.err.strip().splitlines()[-1]
